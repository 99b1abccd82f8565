"""A reset that comes while a connect is still completing: the connect won, the answer the
server sent before its reset is delivered, then the close says "peer reset".

The server here is hostile on purpose: it accepts, writes its whole answer and resets
(SO_LINGER 0) before the client's loop has looked at its connecting socket, so the loop
sees the connect's completion and the reset in one pass. The order is made, not hoped
for: the attempt's socket starts in one pass (timers run after the select), the server
does its part, the test waits until the kernel has the reset (POLLHUP), and only then
does the loop look. Linux then reports the connect's SO_ERROR as ECONNRESET (a reset
before the connect completed would be ECONNREFUSED) while the answer is still queued.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import time
from array import array
from collections.abc import Iterator

import pytest

from lwspy import CaoResult, Context, CpdResult, HttpResponse, Reason, Wsi, WsiState
from lwspy.core.client import ATTEMPT
from tests.conftest import Recorder, service_until

ANSWER = b"HTTP/1.1 204 No Content\r\n\r\n"
SIOCOUTQ = 0x5411  # bytes sent and not yet acknowledged
REQUEST = b"GET / HTTP/1.1\r\n\r\n"


def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
    raise exc


@pytest.fixture
def lsock() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as s:
        s.settimeout(5)
        yield s


def attempt_socket(ctx: Context) -> socket.socket:
    """Service until a connect attempt's socket exists (the loop has not looked at it)."""
    service_until(ctx, lambda: any(w.role is ATTEMPT for w in ctx.pt.fds.values()))
    [sock] = [w.sock for w in ctx.pt.fds.values() if w.role is ATTEMPT and w.sock is not None]
    return sock


def answer_and_reset(
    lsock: socket.socket, client: socket.socket, answer: bytes, fin_first: bool = False
) -> None:
    """Accept, send ``answer`` (and a FIN), reset; return once the client's kernel has the
    reset."""
    conn, _ = lsock.accept()
    conn.sendall(answer)
    outq = array("i", [0])
    for _ in range(500):  # until the client's kernel has acknowledged all of it
        fcntl.ioctl(conn.fileno(), SIOCOUTQ, outq)
        if not outq[0]:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the answer never reached the client's receive queue")
    if fin_first:
        conn.shutdown(socket.SHUT_WR)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    poll = select.poll()
    poll.register(client, select.POLLIN)
    for _ in range(500):
        if any(ev & select.POLLHUP for _, ev in poll.poll(10)):
            return
    raise AssertionError("the reset never arrived")


class SoErrorBeforeTheReset(socket.socket):
    """A socket whose SO_ERROR reads 0: the reset arrives just after the loop read it (the
    kernel keeps the error for the next call, as it does when the reset comes later)."""

    def getsockopt(self, level: int, option: int, *args: int) -> int | bytes:  # type: ignore[override]
        if (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR):
            return 0
        return super().getsockopt(level, option, *args)


def start_attempt(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, window: str, host: str, port: int, **kw: object
) -> tuple[Wsi, socket.socket]:
    with monkeypatch.context() as m:
        if window == "after SO_ERROR":
            m.setattr(socket, "socket", SoErrorBeforeTheReset)
        wsi = ctx.connect(host, port, **kw)  # type: ignore[arg-type]
        return wsi, attempt_socket(ctx)


WINDOWS = ["SO_ERROR", "after SO_ERROR"]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("writes", ["no", "at connect", "early"])
@pytest.mark.parametrize("size", [len(ANSWER), 80_000], ids=["answer", "bulk"])
def test_a_raw_connect_reset_as_it_completes_wins_and_delivers_the_data(
    lsock: socket.socket, monkeypatch: pytest.MonkeyPatch, window: str, writes: bool, size: int
) -> None:
    data = (ANSWER * (size // len(ANSWER) + 1))[:size]

    def on(w: Wsi | None, r: Reason, d: object) -> int:
        if writes == "at connect" and r is Reason.RAW_CONNECTED and w is not None:
            w.write(REQUEST)  # fails: the socket was reset
        return 0

    rec = Recorder("p", on)
    with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
        port = lsock.getsockname()[1]
        wsi, sock = start_attempt(ctx, monkeypatch, window, "127.0.0.1", port, protocol="p")
        if writes == "early":  # buffered until the connect completes; its flush fails
            assert wsi.write(REQUEST) == len(REQUEST) and wsi.tx_pending == len(REQUEST)
        answer_and_reset(lsock, sock, data)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        got = rec.reasons(wsi)
        assert Reason.CLIENT_CONNECTION_ERROR not in got
        assert got[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
        assert got.count(Reason.RAW_CONNECTED) == 1
        assert got.index(Reason.RAW_CONNECTED) < got.index(Reason.RAW_RX)
        assert b"".join(rec.data(Reason.RAW_RX, wsi)) == data
        assert wsi.close_reason == "peer reset"
        assert wsi.peer == ("127.0.0.1", port)
        head = wsi.caos[0]
        assert head.result is CaoResult.WON and head.errno == 0
        assert head.connect_us > 0 and wsi.conmon is not None
        assert wsi.conmon.sockconn_us == head.connect_us
        assert wsi.conmon.peer == ("127.0.0.1", port)
        assert ctx.cao_db.stats(host="127.0.0.1").wins == 1
        assert len(ctx.pt.fds) == 1  # only the wake fd: no socket left open


@pytest.mark.parametrize("window", WINDOWS)
def test_an_answer_its_end_of_stream_and_a_reset_at_connect(
    lsock: socket.socket, monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    # The FIN came before the reset: SO_ERROR says EPIPE, and the stream had ended whole.
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
        port = lsock.getsockname()[1]
        wsi, sock = start_attempt(ctx, monkeypatch, window, "127.0.0.1", port, protocol="p")
        answer_and_reset(lsock, sock, ANSWER, fin_first=True)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert b"".join(rec.data(Reason.RAW_RX, wsi)) == ANSWER
        assert wsi.close_reason == "peer closed" and wsi.caos[0].result is CaoResult.WON


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [(ANSWER, 204, b""), (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello")],
)
def test_http_get_gets_the_answer_sent_before_a_reset_that_came_with_the_connect(
    lsock: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    window: str,
    answer: bytes,
    status: int,
    body: bytes,
) -> None:
    with Context(netlink=False, on_callback_error=reraise) as ctx:
        got: list[HttpResponse] = []
        port = lsock.getsockname()[1]
        with monkeypatch.context() as m:
            if window == "after SO_ERROR":
                m.setattr(socket, "socket", SoErrorBeforeTheReset)
            req = ctx.http_get(f"http://127.0.0.1:{port}/generate_204", got.append, timeout=5)
            sock = attempt_socket(ctx)
        answer_and_reset(lsock, sock, answer)
        service_until(ctx, lambda: bool(got))
        resp = got[0]
        assert (resp.error, resp.status, resp.body) == (None, status, body)
        assert resp.caos[0].result is CaoResult.WON and resp.conmon is not None
        assert resp.conmon.sockconn_us == resp.caos[0].connect_us > 0
        service_until(ctx, lambda: req.wsi.state is WsiState.CLOSED)
        assert len(ctx.pt.fds) == 1


def test_a_cpd_probe_answered_before_a_reset_at_connect_is_internet_ok(
    lsock: socket.socket,
) -> None:
    port = lsock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/generate_204"
    with Context(netlink=False, cpd_url=url, on_callback_error=reraise) as ctx:
        answer_and_reset(lsock, attempt_socket(ctx), ANSWER)
        service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
        assert ctx.cpd.result is CpdResult.INTERNET_OK


def test_a_reset_in_the_handshake_is_still_a_refused_attempt(lsock: socket.socket) -> None:
    # The other side of the line drawn above: a reset before the connect completed (a
    # closed port) is no win.
    port = lsock.getsockname()[1]
    lsock.close()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
        wsi = ctx.connect("127.0.0.1", port, protocol="p")
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR) == ["connect refused"]
        assert [c.result for c in wsi.caos] == [CaoResult.REFUSED]
