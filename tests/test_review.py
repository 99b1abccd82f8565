"""Regression tests for the core-loop defects an adversarial review found (issue 8), and
for what ``destroy()`` shows its close callbacks (``ctx.destroying``). Each test failed on
the code before the fixes. Real sockets, loopback only."""

from __future__ import annotations

import array
import contextlib
import logging
import os
import select
import socket
import tracemalloc
from typing import Any

import pytest

from lwspy import Context, Reason, SmdClass, Wsi, WsiState
from lwspy.roles import raw_skt
from tests.conftest import FakeClock, Recorder, service_until
from tests.helpers import LOOP4, Reader, pattern, reset, tcp_pair, watchdog

# -- severe: destroy() from a close callback; ctx.wsis inside RAW_CLOSE --------------------


@pytest.mark.parametrize("reason", [Reason.RAW_CLOSE, Reason.WSI_DESTROY])
def test_destroy_from_a_close_callback_returns(reason: Reason) -> None:
    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is reason:
            ctx.destroy()

    rec = Recorder("p", on)
    ours, peer = tcp_pair()
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with watchdog(10), peer:
        wsi = ctx.adopt_socket(ours)
        ctx.adopt_socket(socket.socket())  # a second wsi that destroy() must still close
        wsi.close("bye")
    assert ctx.destroyed
    assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]


def test_destroy_from_client_connection_error_returns() -> None:
    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is Reason.CLIENT_CONNECTION_ERROR:
            ctx.destroy()

    rec = Recorder("p", on)
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with socket.socket() as closed, watchdog(10):
        closed.bind((LOOP4, 0))
        wsi = ctx.connect(LOOP4, closed.getsockname()[1])
        ctx.run()  # returns: the context is destroyed
    assert ctx.destroyed
    assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["connect refused"]


def test_a_wsi_is_not_listed_inside_its_own_raw_close() -> None:
    # "stop when the last connection is gone"
    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is Reason.RAW_CLOSE:
            seen.append(list(ctx.wsis))
            if not ctx.wsis:
                ctx.stop()

    seen: list[list[Wsi]] = []
    rec = Recorder("p", on)
    ours, peer = tcp_pair()
    with Context(protocols=[rec.protocol], netlink=False) as ctx, watchdog(10):
        ctx.adopt_socket(ours)
        peer.close()
        ctx.run()
    assert seen == [[]]


# -- severe: close() delivers what write() accepted ----------------------------------------


@pytest.mark.parametrize("how", ["close", "return 1"])
def test_close_after_write_delivers_everything_though_peer_data_is_unread(how: str) -> None:
    body = pattern(4 << 20)

    def on(wsi: Wsi | None, r: Reason, data: Any) -> int:
        # RAW_ADOPT comes before the peer's bytes are read: they stay unread
        if r is Reason.RAW_ADOPT and wsi is not None:
            assert wsi.write(body) == len(body)
            if how == "close":
                wsi.close("done")
            return 0 if how == "close" else 1
        return 0

    rec = Recorder("p", on)
    ours, peer = tcp_pair()
    peer.sendall(b"q" * 5000)
    reader = Reader(peer)
    with Context(protocols=[rec.protocol], netlink=False) as ctx, watchdog(30), peer:
        reader.start()
        wsi = ctx.adopt_socket(ours)
        service_until(ctx, lambda: not reader.is_alive())
        # the shut-down socket closes when the peer has ended its stream too
        peer.close()
        service_until(ctx, lambda: len(ctx.pt.fds) == 1)  # the wake fd only
    assert reader.error is None
    assert len(reader.data) == len(body)
    assert bytes(reader.data) == body
    assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]


def test_a_shut_down_socket_reads_a_lot_of_unread_data_then_closes_at_eof() -> None:
    ours, peer = tcp_pair()
    peer.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < 8 << 20:
            sent += peer.send(b"u" * 65536)
    peer.setblocking(True)
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx, watchdog(30), peer:
        wsi = ctx.adopt_socket(ours)
        wsi.write(b"reply")
        wsi.close("done")  # RAW_CLOSE now; the socket is shut down, not closed yet
        assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
        assert wsi not in ctx.wsis and len(ctx.pt.fds) == 2
        assert peer.recv(100) == b"reply"
        assert peer.recv(100) == b""  # our FIN
        peer.shutdown(socket.SHUT_WR)
        service_until(ctx, lambda: len(ctx.pt.fds) == 1)


def test_a_shut_down_socket_is_closed_after_timeout_secs(clock: FakeClock) -> None:
    ours, peer = tcp_pair()
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False, clock=clock, timeout_secs=5)
    with ctx, peer:
        wsi = ctx.adopt_socket(ours)
        peer.sendall(b"unread")  # something to read at the close: the shutdown and drain
        select.select([ours], [], [], 1.0)
        wsi.close("done")
        ctx.service(0)
        assert len(ctx.pt.fds) == 2  # the peer has not ended its stream
        clock.advance(5)
        ctx.service(0)
        assert len(ctx.pt.fds) == 1


def test_an_idle_socket_closes_at_once_with_a_fin(clock: FakeClock) -> None:
    # Nothing of ours unacknowledged, nothing to read: no shutdown and drain is needed.
    ours, peer = tcp_pair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False, clock=clock) as ctx, peer:
        wsi = ctx.adopt_socket(ours)
        wsi.write(b"last words")
        select.select([peer], [], [], 1.0)  # arrived (and so acknowledged: loopback)
        wsi.close()
        assert len(ctx.pt.fds) == 1 and ours.fileno() == -1
        assert peer.recv(100) == b"last words"
        assert peer.recv(100) == b""  # a FIN, not a reset


def test_a_close_during_destroy_reads_what_waits_so_that_it_is_a_fin() -> None:
    first, first_peer = tcp_pair()
    ours, peer = tcp_pair()
    wsis: list[Wsi] = []

    def on(wsi: Wsi | None, reason: Reason, data: Any) -> None:
        if reason is Reason.RAW_CLOSE and wsi is wsis[0]:
            wsis[1].close()  # a graceful close while destroy() runs: no loop to wait in

    rec = Recorder("p", on)
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with first_peer, peer:
        wsis += [ctx.adopt_socket(first), ctx.adopt_socket(ours)]
        wsis[1].write(b"bye")
        peer.sendall(b"unread")  # not idle: the shutdown path
        select.select([ours], [], [], 1.0)
        ctx.destroy()
        assert ours.fileno() == -1 and wsis[1].close_reason == "closed"
        assert peer.recv(100) == b"bye"
        assert peer.recv(100) == b""  # a FIN, not a reset


def test_idle_means_all_acknowledged_and_nothing_to_read() -> None:
    ours, peer = tcp_pair(peer_rcvbuf=4096)
    with ours, peer:
        ours.setblocking(False)
        assert raw_skt._idle(ours)
        peer.sendall(b"x")
        select.select([ours], [], [], 1.0)
        assert not raw_skt._idle(ours)  # a byte waits to be read
        assert ours.recv(1) == b"x" and raw_skt._idle(ours)
        with contextlib.suppress(BlockingIOError):
            while True:  # the peer reads nothing: its window fills, ours stays queued
                ours.send(b"y" * 65536)
        assert not raw_skt._idle(ours)  # sent, not acknowledged
        peer.close()
    with socket.socket() as never:
        assert raw_skt._idle(never)  # never connected: nothing of ours to lose
    with socket.create_server(("127.0.0.1", 0)) as listener:
        assert not raw_skt._idle(listener)  # no connection at all: the full path decides
    ours, peer = tcp_pair()
    with ours, peer:
        peer.shutdown(socket.SHUT_WR)
        select.select([ours], [], [], 1.0)
        assert raw_skt._idle(ours)  # the peer's end of stream: nothing more to read


def test_destroy_closes_shut_down_sockets_and_the_peer_still_gets_the_data() -> None:
    ours, peer = tcp_pair()
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with peer:
        wsi = ctx.adopt_socket(ours)
        peer.sendall(b"early")  # unread at the close: the shutdown path, not the idle one
        select.select([ours], [], [], 1.0)
        wsi.write(b"last words")
        wsi.close()
        peer.sendall(b"unread")
        before = len(ctx.pt.fds)
        ctx.destroy()
        assert before == 2
        assert peer.recv(100) == b"last words"
        assert peer.recv(100) == b""  # a FIN, not a reset


def test_close_of_a_reset_socket_closes_at_once() -> None:
    ours, peer = tcp_pair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi = ctx.adopt_socket(ours)
        reset(peer)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert wsi.close_reason == "peer reset"
        assert len(ctx.pt.fds) == 1


# -- severe: a timer weeks away ------------------------------------------------------------


def test_a_timer_weeks_away_does_not_break_the_wait() -> None:
    with Context(netlink=False) as ctx:
        ctx.service(0)  # the context's own start-up timer
        ctx.call_later(30 * 86400, lambda: None)  # more than epoll's 2**31-1 ms
        ctx.cancel_service()  # the wake-up makes the pass return at once
        assert ctx.service() >= 1
        ctx.cancel_service()
        assert ctx.service(3e9) >= 1


def test_a_long_connect_timeout_does_not_break_the_wait() -> None:
    rec = Recorder("p")
    ctx = Context(protocols=[rec.protocol], netlink=False, connect_timeout_secs=1e8)
    with ctx, socket.create_server((LOOP4, 0)) as lst:
        wsi = ctx.connect(LOOP4, lst.getsockname()[1])
        service_until(ctx, lambda: wsi.state is not WsiState.PENDING)
        with watchdog(10):  # connecting: a pass waits on the connect timeout, 1e8 s away
            while wsi.state is not WsiState.ESTABLISHED:
                ctx.service()
    assert Reason.RAW_CONNECTED in rec.reasons(wsi)


# -- severe and other: what write() accepts and owns ---------------------------------------


def stalled(ctx: Context, rec: Recorder) -> tuple[Wsi, socket.socket]:
    """A wsi whose peer does not read yet, with a buffer already queued ahead."""
    ours, peer = tcp_pair(peer_rcvbuf=4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    wsi = ctx.adopt_socket(ours)
    head = pattern(1 << 20)
    wsi.write(head)
    assert wsi.tx_pending > 0
    return wsi, peer


def read_exactly(ctx: Context, peer: socket.socket, n: int) -> bytes:
    peer.setblocking(False)
    got = bytearray()

    def more() -> bool:
        with contextlib.suppress(BlockingIOError):
            while len(got) < n:
                chunk = peer.recv(1 << 20)
                if not chunk:
                    break
                got.extend(chunk)
        return len(got) >= n

    service_until(ctx, more)
    return bytes(got)


def test_write_of_a_non_contiguous_view_sends_its_bytes() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi, peer = stalled(ctx, rec)
        with peer:
            src = pattern(3000)
            strided = memoryview(src)[::2]
            assert not strided.c_contiguous and strided.readonly
            assert wsi.write(strided) == 1500
            got = read_exactly(ctx, peer, (1 << 20) + 1500)
            assert got[1 << 20 :] == src[::2]
            assert wsi.state is WsiState.ESTABLISHED


def test_write_owns_what_it_accepted_from_a_read_only_view_of_a_mutable_buffer() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi, peer = stalled(ctx, rec)
        with peer:
            small, large = bytearray(b"s" * 100), bytearray(b"L" * 20000)
            for buf in (small, large):
                view = memoryview(buf).toreadonly()
                assert wsi.write(view) == len(buf)
                view.release()
                buf[:] = b"X" * len(buf)  # the caller reuses its buffer
            got = read_exactly(ctx, peer, (1 << 20) + 20100)
            assert got[1 << 20 :] == b"s" * 100 + b"L" * 20000


def test_small_writes_are_coalesced_in_the_buffer() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi, peer = stalled(ctx, rec)
        with peer:
            piece = b"0123456789"
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(100_000):
                    wsi.write(piece)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            # 1,000,000 bytes buffered: they cost their bytes, not ~32 bytes each
            assert grown < 2 * 1_000_000
            got = read_exactly(ctx, peer, (1 << 20) + 1_000_000)
            assert got[1 << 20 :] == piece * 100_000


# -- others --------------------------------------------------------------------------------


def test_set_timeout_0_after_close_keeps_the_flush_bounded(clock: FakeClock) -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False, clock=clock, timeout_secs=5) as ctx:
        wsi, peer = stalled(ctx, rec)
        with peer:
            wsi.close("bye")
            assert wsi.state is WsiState.CLOSING
            wsi.set_timeout(0)
            clock.advance(5)
            ctx.service(0)
            assert wsi.state is WsiState.CLOSED
            assert wsi.close_reason == "bye"


def test_a_write_error_closes_from_the_loop_not_inside_write() -> None:
    seen: list[list[Reason]] = []

    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is Reason.TIMER and wsi is not None:
            assert wsi.write(b"x") == 0  # the peer reset us
            seen.append(rec.reasons(wsi))
            assert wsi.state is WsiState.CLOSING
            assert wsi.write(b"more") == 0

    rec = Recorder("p", on)
    ours, peer = tcp_pair()
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi = ctx.adopt_socket(ours)
        wsi._rx_on = False  # do not read the reset first: let write() meet it
        wsi._update_events()
        reset(peer)
        wsi.set_timer(0)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
    assert Reason.RAW_CLOSE not in seen[0]
    assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
    assert wsi.close_reason in ("peer reset", "peer closed")


def test_a_zero_length_datagram_is_a_datagram() -> None:
    rec = Recorder("p")
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with b, Context(protocols=[rec.protocol], netlink=False) as ctx:
        a.bind((LOOP4, 0))
        b.bind((LOOP4, 0))
        a.connect(b.getsockname())
        b.connect(a.getsockname())
        wsi = ctx.adopt_socket(a)
        b.send(b"")
        b.send(b"after")
        service_until(ctx, lambda: len(rec.data(Reason.RAW_RX)) == 2)
        assert rec.data(Reason.RAW_RX) == [b"", b"after"]
        assert wsi.state is WsiState.ESTABLISHED
        wsi.close()
        assert len(ctx.pt.fds) == 1


def test_an_absurd_ipv6_scope_id_is_refused_at_connect() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        hosts = ("fe80::1%" + "a" * 100, "fe80::1%é", "fe80::1%a b", "fe80::1%4294967296")
        wsis = [ctx.connect(host, 80) for host in hosts]  # errors from the loop, not here
        service_until(ctx, lambda: all(w.state is WsiState.CLOSED for w in wsis))
        for wsi in wsis:
            [why] = rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi)
            assert why.startswith("invalid IP address 'fe80::1%") and wsi.caos == []
        with pytest.raises(ValueError, match="no interface"):
            ctx.connect("::1", 80, iface="fe80::1%" + "b" * 40)


def test_resolver_errors_have_real_texts() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        unknown = ctx.connect("fe80::1%nosuchif0", 80)  # a plausible scope, no such link
        family = ctx.connect("::1", 80, iface="198.51.100.1")  # a v4 source for a v6 peer
        service_until(ctx, lambda: len(rec.data(Reason.CLIENT_CONNECTION_ERROR)) == 2)
    errors = rec.data(Reason.CLIENT_CONNECTION_ERROR, unknown)
    errors += rec.data(Reason.CLIENT_CONNECTION_ERROR, family)
    assert errors == [
        "bad address fe80::1%nosuchif0: name or service not known",
        "bind to 198.51.100.1: address family for hostname not supported",
    ]


@pytest.mark.parametrize("where", [Reason.WSI_CREATE, Reason.CONNECTING])
def test_on_callback_error_is_told_once_of_a_client_callback_exception(where: Reason) -> None:
    told: list[tuple[Wsi | None, Reason | None]] = []

    def handler(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
        told.append((wsi, reason))
        raise exc

    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is where:
            raise KeyError("boom")

    rec = Recorder("p", on)
    with (
        socket.socket() as closed,
        Context(protocols=[rec.protocol], netlink=False, on_callback_error=handler) as ctx,
    ):
        closed.bind((LOOP4, 0))
        wsi = ctx.connect(LOOP4, closed.getsockname()[1])
        with pytest.raises(KeyError, match="boom"):
            service_until(ctx, lambda: False, passes=20)
        assert told == [(wsi, where)]
        ctx.service(0)  # the loop goes on afterwards
        assert wsi.state is WsiState.CLOSED


def test_stop_before_run_is_not_forgotten() -> None:
    with Context(netlink=False) as ctx, watchdog(10):
        ctx.stop()
        ctx.run()  # returns at once
        ctx.call_later(0, ctx.stop)
        ctx.run()  # and the next run() runs again until its stop()


def test_the_default_vhost_keeps_the_context_protocols() -> None:
    a, b = Recorder("a"), Recorder("b")
    with Context(protocols=[a.protocol, b.protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4, protocols=[b.protocol])
        assert [p.name for p in vh.protocols] == ["b", "a"]
        assert vh.accept_protocol is b.protocol
        assert a.reasons() == [Reason.PROTOCOL_INIT]
        assert b.reasons() == [Reason.PROTOCOL_INIT]
        wsi = ctx.connect(LOOP4, 9, protocol="a")  # "a" is still a protocol of the vhost
        assert wsi.protocol is a.protocol
        extra = Recorder("extra")
        vh2 = ctx.create_vhost("other", protocols=[extra.protocol])
        assert extra.reasons() == [Reason.PROTOCOL_INIT] and vh2.protocols == [extra.protocol]
    assert a.reasons()[-1] is Reason.PROTOCOL_DESTROY


def test_the_default_vhost_gets_new_protocols_and_drops_one_it_replaces() -> None:
    a, b, new_a = Recorder("a"), Recorder("b"), Recorder("a")
    with Context(protocols=[a.protocol, b.protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", protocols=[new_a.protocol])
        assert vh.protocols == [new_a.protocol, b.protocol]
        assert a.reasons() == [Reason.PROTOCOL_INIT, Reason.PROTOCOL_DESTROY]
        assert new_a.reasons() == [Reason.PROTOCOL_INIT]
        assert b.reasons() == [Reason.PROTOCOL_INIT]


def test_smd_post_after_destroy_is_refused() -> None:
    ctx = Context(netlink=False)
    got: list[bytes] = []
    ctx.smd.register(lambda cls, ts, payload: got.append(payload), SmdClass.NETWORK)
    assert ctx.smd.post(SmdClass.NETWORK, b"before")
    ctx.destroy()
    assert ctx.smd.post(SmdClass.NETWORK, b"after") is False
    with pytest.raises(RuntimeError, match="closed"):
        ctx.smd.register(lambda cls, ts, payload: None, SmdClass.NETWORK)


def test_an_adopted_pipe_write_end_closes_as_peer_closed_when_the_reader_goes() -> None:
    rec = Recorder("p")
    r, w = os.pipe()
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi = ctx.adopt_file(w)
        ctx.service(0)
        assert wsi.state is WsiState.ESTABLISHED
        os.close(r)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
    assert wsi.close_reason == "peer closed"
    assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE_FILE, Reason.WSI_DESTROY]


# -- issue 9: what destroy() shows its close callbacks -------------------------------------


def test_close_callbacks_of_destroy_see_destroying_and_a_reconnect_timer_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fired: list[str] = []
    seen: list[tuple[bool, bool]] = []

    def on(wsi: Wsi | None, r: Reason, data: Any) -> None:
        if r is Reason.RAW_CLOSE:
            seen.append((ctx.destroying, ctx.destroyed))
            ctx.call_later(0, fired.append, "reconnect")  # the usual pattern
            ctx.sul(lambda: fired.append("sul")).schedule(0)
            if wsi is not None:
                wsi.set_timer(0)

    rec = Recorder("p", on)
    ours, peer = tcp_pair()
    ctx = Context(protocols=[rec.protocol], netlink=False)
    with peer, caplog.at_level(logging.ERROR, logger="lwspy"):
        ctx.adopt_socket(ours)
        assert not ctx.destroying
        ctx.destroy()
    assert seen == [(True, False)]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert fired == []
    assert ctx.destroying and ctx.destroyed
    with pytest.raises(RuntimeError, match="destroyed"):
        ctx.call_later(0, fired.append, "too late")


def test_write_takes_any_buffer_and_a_failing_one_is_closed_from_the_loop() -> None:
    rec = Recorder("p")
    ours, peer = tcp_pair()
    with Context(protocols=[rec.protocol], netlink=False) as ctx, peer:
        wsi = ctx.adopt_socket(ours)
        words = array.array("H", [0x4241, 0x4443])
        assert wsi.write(words) == 4  # cast to bytes, sent at once
        assert wsi.write(bytearray(b"ef")) == 2
        assert wsi.write(bytearray()) == 0
        assert read_exactly(ctx, peer, 6) == words.tobytes() + b"ef"
        wsi._rx_on = False  # do not read the reset first: let write() meet it
        wsi._update_events()
        reset(peer)
        assert wsi.write(bytearray(b"x")) == 0
        assert wsi.state is WsiState.CLOSING and Reason.RAW_CLOSE not in rec.reasons(wsi)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
    assert rec.reasons(wsi)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
