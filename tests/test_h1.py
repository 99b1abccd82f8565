"""The HTTP client (ctx.http_get) against real servers on loopback, and h11 as reference."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwspy import Context, HttpResponse, Protocol, Reason, Wsi
from lwspy.roles.h1 import split_url
from tests.conftest import service_until
from tests.httpfake import HttpFake, answer, close_after, endless_body, huge_headers, reset


def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
    raise exc


@pytest.fixture
def ctx() -> Iterator[Context]:
    with Context(netlink=False, on_callback_error=reraise) as c:
        c.service(0)  # the start-up steps: the timers left are the test's
        yield c


def get(ctx: Context, url: str, **kw: Any) -> HttpResponse:
    got: list[HttpResponse] = []
    ctx.http_get(url, got.append, **kw)
    service_until(ctx, lambda: bool(got))
    for _ in range(5):  # nothing more comes
        ctx.service(1)
    assert len(got) == 1
    return got[0]


def idle(ctx: Context) -> tuple[int, int]:
    """(fds the loop watches, live timers): what a finished request must leave as it was."""
    return len(ctx.pt.fds), len(ctx.pt.suls)


def settle(ctx: Context, before: tuple[int, int]) -> None:
    service_until(ctx, lambda: idle(ctx) == before and not ctx.wsis, passes=200)


def test_204_and_conmon(ctx: Context) -> None:
    srv = HttpFake(answer(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"))
    try:
        before = idle(ctx)
        resp = get(ctx, srv.url())
        assert (resp.status, resp.reason, resp.error, resp.bad_response) == (
            204,
            "No Content",
            None,
            False,
        )
        assert resp.ok and resp.header("X-A") == "1" and resp.header("missing") is None
        assert resp.body == b""
        assert resp.conmon is not None
        assert resp.conmon.protocol_specific == {"http": {"response": 204}}
        assert resp.conmon.txn_resp_us > 0 and resp.conmon.sockconn_us >= 0
        assert resp.caos and resp.caos[0].address == "127.0.0.1"
        settle(ctx, before)
    finally:
        srv.close()


def test_the_request_is_a_plain_get(ctx: Context) -> None:
    seen: list[bytes] = []
    ready = threading.Event()

    def record(conn: socket.socket) -> None:
        from tests.httpfake import read_request

        seen.append(read_request(conn))
        ready.set()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

    srv = HttpFake(record)
    try:
        extra = [("X-Probe", "yes"), ("Accept", "text/*"), ("Connection", "keep-alive")]
        resp = get(ctx, srv.url("/a/b?c=d"), headers=extra)
        assert resp.status == 200 and resp.body == b"hi"
        server = h11.Connection(h11.SERVER)
        server.receive_data(seen[0])
        req = server.next_event()
        assert isinstance(req, h11.Request)
        assert (req.method, req.target) == (b"GET", b"/a/b?c=d")
        headers = dict(req.headers)
        assert headers[b"host"] == f"127.0.0.1:{srv.port}".encode()
        assert headers[b"connection"] == b"close"
        assert headers[b"x-probe"] == b"yes" and headers[b"accept"] == b"text/*"
        assert [k for k, _ in req.headers].count(b"accept") == 1
        assert [k for k, _ in req.headers].count(b"connection") == 1
    finally:
        srv.close()


@pytest.mark.parametrize(
    ("behaviour", "status", "error", "bad"),
    [
        (answer(b"HTTP/1.1 302 Found\r\nLocation: http://p.test/\r\n\r\n"), 302, None, False),
        (answer(b"HTTP/1.0 200 OK\r\n\r\n<html>login</html>"), 200, None, False),
        (answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), None, "bad response", True),
        (close_after(b"HTTP/1.1 200 OK\r\nContent-Ty"), None, "closed mid-response", True),
        (close_after(b""), None, "closed without a response", False),
        (close_after(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), 200, "closed", True),
        (huge_headers, None, "bad response", True),
        (endless_body, 200, "body too large", False),
        (reset, None, "peer reset", False),
    ],
)
def test_what_the_server_sends_ends_in_a_response(
    ctx: Context, behaviour: Any, status: int | None, error: str | None, bad: bool
) -> None:
    srv = HttpFake(behaviour)
    try:
        before = idle(ctx)
        resp = get(ctx, srv.url(), max_body=100_000, timeout=10)
        assert resp.status == status
        assert (resp.error or "").startswith(error or "") and (resp.error is None) == (
            error is None
        )
        assert resp.bad_response is bad
        assert len(resp.body) <= 100_000
        settle(ctx, before)
    finally:
        srv.close()


def test_silence_times_out(ctx: Context) -> None:
    srv = HttpFake(None)
    try:
        before = idle(ctx)
        resp = get(ctx, srv.url(), timeout=0.2)
        assert (resp.status, resp.error, resp.bad_response) == (None, "timed out", False)
        settle(ctx, before)
    finally:
        srv.close()


def test_connect_refused(ctx: Context) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        resp = get(ctx, f"http://127.0.0.1:{port}/")
    assert (resp.status, resp.error) == (None, "connect refused")


def test_cancel_calls_nothing_and_leaks_nothing(ctx: Context) -> None:
    srv = HttpFake(None)
    try:
        before = idle(ctx)
        got: list[HttpResponse] = []
        req = ctx.http_get(srv.url(), got.append, timeout=5)
        assert "in flight" in repr(req)
        service_until(ctx, lambda: req.wsi.peer is not None)
        req.cancel()
        req.cancel()
        assert req.done and "done" in repr(req)
        settle(ctx, before)
        assert got == []
    finally:
        srv.close()


def test_destroy_ends_a_request_in_flight() -> None:
    srv = HttpFake(None)
    got: list[HttpResponse] = []
    try:
        ctx = Context(netlink=False)
        ctx.http_get(srv.url(), got.append, timeout=5)
        ctx.service(10)
        ctx.destroy()
        assert len(got) == 1 and got[0].error == "context destroyed"
    finally:
        srv.close()


def test_bad_arguments_raise(ctx: Context) -> None:
    def nop(resp: HttpResponse) -> None:
        pass

    for url in ("https://x.test/", "ftp://x.test/", "http:///", "http://x.test:99999/"):
        with pytest.raises(ValueError):
            ctx.http_get(url, nop)
    with pytest.raises(ValueError):
        ctx.http_get("http://bad host/", nop)
    with pytest.raises(TypeError):
        ctx.http_get(b"http://x.test/", nop)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ctx.http_get("http://x.test/", None)  # type: ignore[arg-type]
    for kw in ({"timeout": 0}, {"timeout": float("nan")}, {"max_body": -1}):
        with pytest.raises(ValueError):
            ctx.http_get("http://x.test/", nop, **kw)  # type: ignore[arg-type]
    for kw in ({"timeout": "1"}, {"max_head": 1.5}, {"headers": [("a", 1)]}):
        with pytest.raises(TypeError):
            ctx.http_get("http://x.test/", nop, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ctx.http_get("http://x.test/", nop, headers=[("Bad Name", "v")])
    assert ctx.wsis == []


def test_split_url() -> None:
    assert split_url("http://A.test") == ("a.test", 80, "/")
    assert split_url("http://[2001:db8::1]:81/x?y") == ("2001:db8::1", 81, "/x?y")
    with pytest.raises(ValueError):
        split_url("http://u@x.test/")


# -- h11 as the reference: hypothesis-made responses from h11's server side ------------

_TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda s: s not in ("content-length", "transfer-encoding", "connection")
)
_VALUE = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ./:;=", max_size=40).map(str.strip)


class Served:
    """A lwspy listener in the same context that answers each request with ``self.raw``."""

    def __init__(self, ctx: Context) -> None:
        self.raw = b""
        self.close = True

        def cb(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
            if wsi is not None and reason is Reason.RAW_RX:
                wsi.write(self.raw)
                return 1 if self.close else 0
            return 0

        vh = ctx.create_vhost("srv", port=0, iface="127.0.0.1", protocols=[Protocol("s", cb)])
        self.url = f"http://127.0.0.1:{vh.port}/"


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 301, 302, 304, 400, 404, 500, 511]),
    headers=st.lists(st.tuples(_TOKEN, _VALUE), max_size=6),
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "close"]),
)
def test_responses_made_by_h11_parse_back(
    status: int, headers: list[tuple[str, str]], body: bytes, framing: str
) -> None:
    no_body = status in (204, 304)
    if no_body:
        body = b""
    extra: list[tuple[str, str]] = []
    if framing == "length" and not no_body:
        extra = [("Content-Length", str(len(body)))]
    elif framing == "chunked" and not no_body:
        extra = [("Transfer-Encoding", "chunked")]
    server = h11.Connection(h11.SERVER)
    # An HTTP/1.0 request makes h11's server delimit the body by its close.
    version = b"1.0" if framing == "close" else b"1.1"
    server.receive_data(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    server.next_event()
    raw = server.send(h11.Response(status_code=status, headers=headers + extra)) or b""
    if body:
        raw += server.send(h11.Data(data=body)) or b""
    raw += server.send(h11.EndOfMessage()) or b""
    with Context(netlink=False, on_callback_error=reraise) as ctx:
        served = Served(ctx)
        served.raw = raw
        resp = get(ctx, served.url, max_body=4096)
    assert resp.error is None, resp.error
    assert resp.status == status and resp.body == body
    for name, value in headers:
        assert (name, value) in resp.headers


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda head, tail: head + tail,
            st.sampled_from(
                [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 204 x\r\n", b"HTTP/1.0 302 Found\r\n"]
            ),
            st.binary(max_size=500),
        ),
    )
)
def test_random_bytes_never_raise_out_of_the_loop(raw: bytes) -> None:
    with Context(netlink=False, on_callback_error=reraise) as ctx:
        served = Served(ctx)
        served.raw = raw
        resp = get(ctx, served.url, max_body=1000, timeout=5)
    # Whatever came, the request ended in a response: complete, or with a reason.
    assert resp.ok or resp.error
    assert resp.status is None or 100 <= resp.status <= 999
    if resp.status is None:
        assert resp.error is not None
        assert resp.bad_response == bool(raw)
    assert resp.error != "timed out"


def test_no_fd_leak_over_many_requests() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))  # the server's sockets are ours too
    srv = HttpFake(*[answer(b"HTTP/1.1 204 No Content\r\n\r\n")] * 20, None)
    try:
        with Context(netlink=False, on_callback_error=reraise) as ctx:
            for _ in range(20):
                assert get(ctx, srv.url()).status == 204
            assert get(ctx, srv.url(), timeout=0.1).error == "timed out"  # held by the server
    finally:
        srv.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_ipv6_literal_and_informational_responses() -> None:
    srv6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = srv6.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        from tests.httpfake import read_request

        conn, _ = srv6.accept()
        with conn:
            seen.append(read_request(conn))
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Context(netlink=False, on_callback_error=reraise) as ctx:
            resp = get(ctx, f"http://[::1]:{port}/")
        assert resp.status == 204 and resp.error is None
        assert f"Host: [::1]:{port}\r\n".encode() in seen[0]
    finally:
        thread.join(5)
        srv6.close()


def test_a_connection_closed_event_ends_the_response(ctx: Context) -> None:
    # h11 gives ConnectionClosed only once the server's side is done; the client never
    # asks for it, but an event it does not wait for must still end the request.
    srv = HttpFake(None)
    try:
        got: list[HttpResponse] = []
        req = ctx.http_get(srv.url(), got.append, timeout=5)
        service_until(ctx, lambda: req.wsi.peer is not None)
        req.wsi.conmon_take()  # the user took CONMON: nothing to fill

        class Closed:
            def next_event(self) -> object:
                return h11.ConnectionClosed()

        req._conn = Closed()  # type: ignore[assignment]
        req._received = 1
        req._events(h11)
        assert got[0].error == "closed mid-response" and got[0].bad_response
        assert got[0].conmon is None
    finally:
        srv.close()
