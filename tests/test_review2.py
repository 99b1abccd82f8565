"""Regression tests for what a second adversarial review of issues 8 and 9 found: datagram
boundaries in the write buffer, reading while a close flushes, ``destroy()`` from other
threads, inside a pass, under SystemExit, and what it delivers. Each test failed on the
code before the fixes. Real sockets, loopback only."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

import pytest

from lwspy import Context, Reason, SmdClass, Wsi, WsiState
from tests.conftest import Recorder, service_until
from tests.helpers import Reader, in_thread, pattern, tcp_pair, watchdog

# -- datagram boundaries: buffered small writes are never merged ---------------------------


def recv_all(sock: socket.socket) -> list[bytes]:
    """Every message (datagram or read) waiting on a non-blocking ``sock``."""
    got: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(sock.recv(1 << 17))
    return got


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_SEQPACKET])
def test_buffered_small_writes_on_a_packet_socket_stay_one_datagram_each(kind: int) -> None:
    rec = Recorder("p")
    ours, peer = socket.socketpair(socket.AF_UNIX, kind)
    sent = [b"%09d\n" % i for i in range(1000)]
    with Context(protocols=[rec.protocol], netlink=False) as ctx, peer:
        wsi = ctx.adopt_socket(ours)
        for d in sent:
            assert wsi.write(d) == 10
        assert wsi.tx_pending > 0  # the peer's queue filled up: the rest is buffered
        peer.setblocking(False)
        got: list[bytes] = []

        def more() -> bool:  # every byte arrived (in however many datagrams)
            got.extend(recv_all(peer))
            return sum(map(len, got)) >= 10_000

        service_until(ctx, more)
        assert got == sent
        assert wsi.state is WsiState.ESTABLISHED


def test_buffered_small_writes_on_a_packet_mode_pipe_stay_apart() -> None:
    rec = Recorder("p")
    r, w = os.pipe2(os.O_DIRECT | os.O_NONBLOCK)  # a packet pipe: one read per write
    sent = [b"%09d\n" % i for i in range(100)]
    try:
        with Context(protocols=[rec.protocol], netlink=False) as ctx:
            wsi = ctx.adopt_file(w)
            for d in sent:
                assert wsi.write(d) == 10
            assert wsi.tx_pending > 0  # the pipe holds 16 packets
            got: list[bytes] = []

            def more() -> bool:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        got.append(os.read(r, 4096))
                return sum(map(len, got)) >= 1000

            service_until(ctx, more)
            assert got == sent
    finally:
        os.close(r)


def test_byte_stream_tells_streams_from_packet_fds() -> None:
    from lwspy.roles.raw_file import byte_stream

    r, w = os.pipe()
    pr, pw = os.pipe2(os.O_DIRECT)
    master, slave = os.openpty()
    stream = socket.socketpair()
    dgram = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    null = os.open(os.devnull, os.O_WRONLY)
    try:

        def check(fd: int) -> bool:
            return byte_stream(fd, os.fstat(fd).st_mode)

        assert check(r) and check(w) and check(slave)
        assert check(stream[0].fileno())
        assert not check(pw) and not check(dgram[0].fileno()) and not check(null)
        assert stream[0].fileno() >= 0  # only looked at, not taken
    finally:
        for fd in (r, w, pr, pw, master, slave, null):
            os.close(fd)
        for s in (*stream, *dgram):
            s.close()


# -- close() reads (and discards) while it flushes -----------------------------------------


def test_close_keeps_reading_while_it_flushes_so_an_uploading_peer_gets_everything() -> None:
    body = pattern(2 << 20)
    upload = b"u" * (4 << 20)  # far more than the socket buffers hold
    rec = Recorder("p")
    with socket.create_server(("127.0.0.1", 0)) as lst:
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        peer.connect(lst.getsockname())
        ours, _ = lst.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    result: dict[str, Any] = {}

    def client() -> None:  # a simple client: its whole request first, then it reads
        try:
            peer.sendall(upload)
            peer.shutdown(socket.SHUT_WR)
            result["upload"] = "done"
        except OSError as e:
            result["upload"] = e
        reader = Reader(peer)
        reader.run()
        result["data"], result["error"] = bytes(reader.data), reader.error

    ctx = Context(protocols=[rec.protocol], netlink=False, timeout_secs=10)
    with ctx, peer, watchdog(60):
        wsi = ctx.adopt_socket(ours)
        assert wsi.write(body) == len(body)
        wsi.close("done")
        assert wsi.state is WsiState.CLOSING
        t = threading.Thread(target=client, daemon=True)
        t.start()
        service_until(ctx, lambda: not t.is_alive())
    assert result["upload"] == "done"
    assert result["error"] is None
    assert result["data"] == body
    assert wsi.close_reason == "done"
    assert Reason.RAW_RX not in rec.reasons(wsi)  # read, but never delivered after close()


# -- destroy() and stop() from another thread ----------------------------------------------


def test_destroy_from_another_thread_raises_and_names_the_ways() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx, watchdog(30):
        ctx.create_vhost("default", port=0, iface="127.0.0.1")
        exc = in_thread(ctx.destroy)
        assert isinstance(exc, RuntimeError)
        assert "ctx.call_from_thread(ctx.destroy)" in str(exc) and "ctx.stop()" in str(exc)
        assert not ctx.destroying and not ctx.destroyed
        assert Reason.PROTOCOL_DESTROY not in rec.reasons()
        # the way it names works: the loop destroys itself, and run() returns
        assert in_thread(lambda: ctx.call_from_thread(ctx.destroy)) is None
        ctx.run()
        assert ctx.destroyed
        assert in_thread(ctx.destroy) is None  # destroyed: idempotent from anywhere


def test_stop_from_another_thread_ends_run_and_the_with_block_then_destroys() -> None:
    rec = Recorder("p")
    with watchdog(30), Context(protocols=[rec.protocol], netlink=False) as ctx:
        ctx.create_vhost("default", port=0, iface="127.0.0.1")
        loop = threading.Thread(target=ctx.run)  # that thread is the loop's now
        loop.start()
        running = threading.Event()
        ctx.call_from_thread(running.set)
        assert running.wait(10)
        ctx.stop()  # from this thread, while the loop's thread sleeps in run()
        loop.join(10)
        assert not loop.is_alive()
    # leaving the block once the loop's thread has ended destroys the context
    assert ctx.destroyed
    assert rec.reasons()[-1] is Reason.PROTOCOL_DESTROY


# -- after destroy() inside a pass, nothing more runs in that pass -------------------------


def test_calls_queued_behind_a_destroying_call_from_thread_never_run() -> None:
    ctx = Context(netlink=False)
    seen: list[str] = []

    def worker() -> None:
        ctx.call_from_thread(ctx.destroy)
        ctx.call_from_thread(seen.append, "ran")
        ctx.call_from_thread(seen.append, "ran")

    assert in_thread(worker) is None
    ctx.service(0)
    assert ctx.destroyed
    assert seen == []
    assert not ctx._calls


def test_no_event_wait_cancelled_after_destroy_in_the_same_pass() -> None:
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False)
    ctx.service(0)

    def worker() -> None:
        ctx.cancel_service()
        ctx.call_from_thread(ctx.destroy)

    assert in_thread(worker) is None
    ctx.service(10)
    assert ctx.destroyed
    assert rec.reasons() == [Reason.PROTOCOL_INIT, Reason.PROTOCOL_DESTROY]


def test_an_event_wait_cancelled_callback_that_destroys_ends_the_round() -> None:
    def first(wsi: Wsi | None, reason: Reason, data: Any) -> None:
        if reason is Reason.EVENT_WAIT_CANCELLED:
            ctx.destroy()

    a, b = Recorder("a", first), Recorder("b")
    ctx = Context(protocols=[a.protocol, b.protocol], netlink=False)
    ctx.cancel_service()
    ctx.service(10)
    assert ctx.destroyed
    assert b.reasons() == [Reason.PROTOCOL_INIT, Reason.PROTOCOL_DESTROY]


def test_smd_delivers_nothing_after_destroy() -> None:
    got: list[bytes] = []
    ctx = Context(netlink=False)
    ctx.smd.register(lambda cls, ts, data: got.append(data), SmdClass.NETWORK)
    ctx.service(0)

    def bye() -> None:
        assert ctx.smd.post(SmdClass.NETWORK, b"posted before destroy")
        ctx.destroy()

    ctx.call_later(0, bye)
    ctx.service(0)
    assert ctx.destroyed
    assert got == []
    assert not ctx.smd.pending and ctx.smd.service() == 0
    assert ctx.smd.stats.posted == 1 and ctx.smd.stats.delivered == 0


def test_smd_callback_that_destroys_stops_the_batch() -> None:
    got: list[tuple[str, bytes]] = []
    ctx = Context(netlink=False)

    def first(cls: SmdClass, ts: float, data: bytes) -> None:
        got.append(("first", data))
        ctx.destroy()

    ctx.smd.register(first, SmdClass.NETWORK)
    ctx.smd.register(lambda cls, ts, data: got.append(("second", data)), SmdClass.NETWORK)
    ctx.service(0)
    ctx.smd.post(SmdClass.NETWORK, b"1")
    ctx.smd.post(SmdClass.NETWORK, b"2")
    ctx.service(0)
    assert ctx.destroyed
    assert got == [("first", b"1")]


def test_destroy_outside_service_drops_queued_smd_messages() -> None:
    got: list[bytes] = []
    ctx = Context(netlink=False)
    peer = ctx.smd.register(lambda cls, ts, data: got.append(data), SmdClass.SYSTEM_STATE)
    ctx.destroy()  # posts CONTEXT_DESTROYING to the listening peer, then closes the queue
    assert not ctx.smd.pending
    assert ctx.smd.service() == 0 and got == []
    assert "unregistered" in repr(peer)


# -- SystemExit / KeyboardInterrupt from a close callback during destroy() -----------------


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_a_base_exception_in_a_close_callback_does_not_stop_destroy(
    exc: type[BaseException],
) -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> None:
        if reason is Reason.RAW_CLOSE and ctx.destroying:
            raise exc(len(rec.data(Reason.RAW_CLOSE)))

    rec = Recorder("p", on)
    ctx = Context(protocols=[rec.protocol], netlink=False)
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        wsis = [ctx.adopt_socket(a) for a, _ in pairs]
        with pytest.raises(exc) as info:
            ctx.destroy()
        assert info.value.args == (1,)  # the first one, raised at the end
        assert ctx.destroyed and ctx.wsis == []
        for w in wsis:
            assert rec.reasons(w)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
        assert all(a.fileno() == -1 for a, _ in pairs)  # every fd released
        assert ctx.pt.wake_r == -1
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_sys_exit_in_raw_close_inside_a_with_block_closes_every_connection() -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> None:
        if reason is Reason.RAW_CLOSE:
            raise SystemExit(f"closed: {wsi.close_reason if wsi else None}")

    rec = Recorder("p", on)
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        with (
            pytest.raises(SystemExit),
            watchdog(30),
            Context(protocols=[rec.protocol], netlink=False) as ctx,
        ):
            for a, _ in pairs:
                ctx.adopt_socket(a)
            pairs[0][1].close()  # the first connection ends
            ctx.run()
        assert ctx.destroyed and ctx.wsis == []
        assert all(a.fileno() == -1 for a, _ in pairs)
        assert rec.reasons().count(Reason.WSI_DESTROY) == 4
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_base_exception_from_a_protocol_destroy_callback_still_releases_everything() -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> None:
        if reason is Reason.PROTOCOL_DESTROY:
            raise KeyboardInterrupt

    rec, other = Recorder("p", on), Recorder("q")
    ctx = Context(protocols=[rec.protocol, other.protocol], netlink=False)
    a, b = socket.socketpair()
    with b:
        ctx.adopt_socket(a)
        with pytest.raises(KeyboardInterrupt):
            ctx.destroy()
        assert ctx.destroyed and a.fileno() == -1 and ctx.pt.wake_r == -1
        assert other.reasons()[-1] is Reason.PROTOCOL_DESTROY  # the next protocol too


# -- what destroy() delivers ---------------------------------------------------------------


def read_to_end(peer: socket.socket) -> tuple[bytes, OSError | None]:
    peer.settimeout(10)
    reader = Reader(peer)
    reader.run()
    return bytes(reader.data), reader.error


def test_destroy_after_write_delivers_though_peer_data_is_unread() -> None:
    data = pattern(200_000)
    ours, peer = tcp_pair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with peer:
        wsi = ctx.adopt_socket(ours)
        peer.sendall(b"q" * 100)  # arrives, never read by lwspy
        assert wsi.write(data) == len(data)
        assert wsi.tx_pending == 0  # the kernel took every byte
        ctx.destroy()
        got, err = read_to_end(peer)
    assert err is None  # a FIN, not a reset
    assert got == data


def test_destroy_of_a_shut_down_socket_with_much_unread_still_delivers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as lst:
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        peer.connect(lst.getsockname())
        ours, _ = lst.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with peer:
        wsi = ctx.adopt_socket(ours)
        peer.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < 6 << 20:
                sent += peer.send(b"u" * 65536)
        peer.setblocking(True)
        assert sent > 2 << 20  # more than the shutdown phase reads in one go
        data = pattern(300_000)
        wsi.write(data)
        assert wsi.tx_pending == 0
        wsi.close("bye")  # the shutdown phase: RAW_CLOSE now, the socket lingers
        assert len(ctx.pt.fds) == 2
        ctx.destroy()
        got, err = read_to_end(peer)
    assert err is None
    assert got == data


def test_drain_stops_at_an_error_and_at_the_end_of_stream() -> None:
    from lwspy.roles.raw_skt import drain_queued

    unconnected = socket.socket()
    drain_queued(unconnected)  # ENOTCONN: nothing to read, no exception
    unconnected.close()
    ours, peer = tcp_pair()
    with ours:
        peer.sendall(b"x" * 1000)
        peer.close()
        ours.setblocking(False)
        drain_queued(ours)  # reads the 1000 bytes, then the end of stream
        assert ours.recv(10) == b""


def test_packet_sockets_are_closed_at_destroy_without_reading() -> None:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with peer, Context(protocols=[Recorder("p").protocol], netlink=False) as ctx:
        ctx.adopt_socket(ours)
        peer.send(b"unread")
    assert ours.fileno() == -1
