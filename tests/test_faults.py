"""Bad input and faults: raising callbacks, resets, half-close, EAGAIN, EINTR, a 64 MiB
transfer through a slow reader, EMFILE on accept, fd hygiene on destroy, bad arguments,
and the connect outcome rules. Real sockets, loopback only."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import resource
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lwspy import CaoResult, Context, Protocol, Reason, Wsi, WsiState
from tests.conftest import FakeClock, Recorder, service_until
from tests.dnsfake import FakeDns
from tests.helpers import LOOP4, open_fds, reset, tcp_pair, watchdog

# -- helpers ---------------------------------------------------------------------------


def closed_port(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A bound, non-listening socket: connects to its port are refused while it lives."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((LOOP4 if family == socket.AF_INET else "::1", 0))
    return s


def drain(ctx: Context, peer: socket.socket, want: int) -> bytes:
    """Service the loop while a non-blocking plain peer reads ``want`` bytes (or EOF)."""
    peer.setblocking(False)
    got = bytearray()
    idle = 0
    while len(got) < want and idle < 1000:  # give up after ~1000 empty waits
        ctx.service(0)
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            idle += 1
            select.select([peer], [], [], 0.01)
            continue
        if not chunk:
            break
        idle = 0
        got += chunk
    return bytes(got)


def server_wsi(ctx: Context, rec: Recorder, peer_local: Any) -> Wsi:
    """The accepted wsi whose peer is the given client address."""
    for w, r, _ in rec.events:
        if r is Reason.RAW_ADOPT and w is not None and w.peer == peer_local[:2]:
            return w
    raise AssertionError(f"no accepted wsi for {peer_local}")


def count(rec: Recorder, reason: Reason, wsi: Wsi | None = None) -> int:
    return rec.reasons(wsi).count(reason)


def wsi_events(rec: Recorder) -> list[tuple[Wsi | None, Reason, Any]]:
    """The recorded callbacks of wsis (not the context-level ones such as PROTOCOL_INIT)."""
    return [e for e in rec.events if e[0] is not None]


# -- 1. callbacks that raise -----------------------------------------------------------


def _echo(wsi: Wsi | None, reason: Reason, data: Any) -> int:
    if reason is Reason.RAW_RX and wsi is not None:
        wsi.write(data)
    return 0


@pytest.mark.parametrize("where", ["RAW_ADOPT", "RAW_RX", "RAW_WRITEABLE", "TIMER"])
def test_raising_callback_is_logged_closes_its_wsi_once_and_the_loop_goes_on(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad_reason = Reason[where]
    armed = [True]

    def srv_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if wsi is None:
            return 0
        if reason is Reason.RAW_ADOPT:
            wsi.callback_on_writable()
            wsi.set_timer(0)
        if reason is bad_reason and armed[0]:
            armed[0] = False
            raise ValueError(f"broken {where} handler")
        return _echo(wsi, reason, data)

    srv, cli = Recorder("srv", srv_on), Recorder("cli")
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            bad_cli = ctx.connect(LOOP4, vh.port, protocol="cli")
            service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(bad_cli))
            bad_cli.write(b"trigger")
            service_until(ctx, lambda: Reason.RAW_CLOSE in cli.reasons(bad_cli))
        assert bad_cli.close_reason == "peer closed"
        bad = server_wsi(ctx, srv, bad_cli.local)
        assert bad.state is WsiState.CLOSED
        assert bad.close_reason == "callback error"
        assert bad not in ctx.wsis

        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert errors[0].exc_info is not None
        assert errors[0].exc_info[0] is ValueError
        assert str(errors[0].exc_info[1]) == f"broken {where} handler"
        assert where in errors[0].getMessage()
        assert "Traceback" in caplog.text

        # The loop goes on: another connection works, the dead wsi hears nothing more.
        good = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(good))
        good.write(b"still alive")
        service_until(ctx, lambda: b"".join(cli.data(Reason.RAW_RX, good)) == b"still alive")
        for _ in range(3):
            ctx.service(10)
        assert count(srv, Reason.RAW_CLOSE, bad) == 1
        assert count(srv, Reason.WSI_DESTROY, bad) == 1
        assert srv.reasons(bad)[-2:] == [Reason.RAW_CLOSE, Reason.WSI_DESTROY]
    assert count(srv, Reason.RAW_CLOSE, bad) == 1


def test_raising_close_callback_still_destroys_the_wsi(caplog: pytest.LogCaptureFixture) -> None:
    def srv_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_CLOSE:
            raise RuntimeError("close handler broke")
        return _echo(wsi, reason, data)

    srv, cli = Recorder("srv", srv_on), Recorder("cli")
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        first = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(first))
        service_until(ctx, lambda: len(srv.data(Reason.RAW_ADOPT)) == 1)
        accepted = server_wsi(ctx, srv, first.local)
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            first.close("bye")
            service_until(ctx, lambda: Reason.WSI_DESTROY in srv.reasons(accepted))
        assert accepted.close_reason == "peer closed"  # not overwritten by the raise
        assert count(srv, Reason.RAW_CLOSE, accepted) == 1
        assert accepted not in ctx.wsis and ctx.pt.fds.get(accepted.fd) is not accepted
        (rec,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert rec.exc_info is not None and rec.exc_info[0] is RuntimeError
        assert "RAW_CLOSE" in rec.getMessage()

        second = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(second))
        second.write(b"ping")
        service_until(ctx, lambda: cli.data(Reason.RAW_RX, second) == [b"ping"])
    assert count(srv, Reason.RAW_CLOSE, accepted) == 1


def test_raising_user_factory_fails_that_wsi_only(caplog: pytest.LogCaptureFixture) -> None:
    fail = [True]

    def factory() -> dict[str, int]:
        if fail[0]:
            raise LookupError("no session slot")
        return {}

    srv = Recorder("srv", _echo)
    srv_proto = Protocol("srv", srv, user_factory=factory)
    cli = Recorder("cli")
    cli_proto = Protocol("cli", cli, user_factory=factory)
    with Context(protocols=[srv_proto, cli_proto]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            # A client connect whose user cannot be made ends in CLIENT_CONNECTION_ERROR,
            # from the loop.
            c = ctx.connect(LOOP4, vh.port, protocol="cli")
            assert wsi_events(cli) == []
            service_until(ctx, lambda: c.state is WsiState.CLOSED)
            assert cli.data(Reason.CLIENT_CONNECTION_ERROR, c) == ["callback error"]
            assert Reason.RAW_CONNECTED not in cli.reasons(c)
            assert c not in ctx.wsis

            # An accepted connection whose user cannot be made is closed, without
            # RAW_ADOPT and so without RAW_CLOSE; the peer sees end of stream.
            with socket.create_connection((LOOP4, vh.port)) as peer:
                assert drain(ctx, peer, 1) == b""  # end of stream
            assert srv.data(Reason.RAW_ADOPT) == []
            assert srv.data(Reason.RAW_CLOSE) == []
            assert ctx.wsis == []
        records = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(records) == 2
        for rec in records:
            assert rec.exc_info is not None and rec.exc_info[0] is LookupError
            assert "WSI_CREATE" in rec.getMessage()

        fail[0] = False
        ok = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(ok))
        ok.write(b"works")
        service_until(ctx, lambda: cli.data(Reason.RAW_RX, ok) == [b"works"])


def test_raising_timer_callback_is_logged_and_other_timers_still_fire(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Any, Any, BaseException]] = []
    fired: list[str] = []

    def boom() -> None:
        fired.append("boom")
        raise KeyError("timer broke")

    with Context(clock=clock, on_callback_error=lambda w, r, e: seen.append((w, r, e))) as ctx:
        ctx.call_later(1, fired.append, "before")
        ctx.call_later(2, boom)
        sul = ctx.sul(lambda: fired.append("sul"))
        sul.schedule(2)
        ctx.call_later(3, fired.append, "after")
        with caplog.at_level(logging.ERROR, logger="lwspy"):
            clock.advance(5)
            ctx.service(0)
        assert fired == ["before", "boom", "sul", "after"]
        (rec,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert rec.exc_info is not None and rec.exc_info[0] is KeyError
        assert "timer" in rec.getMessage()
        assert len(seen) == 1 and seen[0][:2] == (None, None)
        assert isinstance(seen[0][2], KeyError)
        ctx.call_later(1, fired.append, "later")
        clock.advance(1)
        ctx.service(0)
        assert fired[-1] == "later"


def test_raising_protocol_init_is_logged_and_the_context_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.PROTOCOL_INIT:
            raise OSError("init failed")
        return _echo(wsi, reason, data)

    srv, cli = Recorder("srv", on), Recorder("cli")
    with caplog.at_level(logging.ERROR, logger="lwspy"):
        ctx = Context(protocols=[srv.protocol, cli.protocol])
    with ctx:
        (rec,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert rec.exc_info is not None and rec.exc_info[0] is OSError
        assert "PROTOCOL_INIT" in rec.getMessage()
        vh = ctx.create_vhost("v", port=0, iface=LOOP4)
        assert vh.port is not None
        c = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(c))
        c.write(b"hi")
        service_until(ctx, lambda: cli.data(Reason.RAW_RX, c) == [b"hi"])


def test_reraise_from_protocol_init_leaves_no_fd_behind() -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.PROTOCOL_INIT:
            raise OSError("init failed")
        return 0

    def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
        raise exc

    before = open_fds()
    with pytest.raises(OSError, match="init failed"):
        Context(protocols=[Recorder("p", on).protocol], on_callback_error=reraise)
    assert open_fds() == before


def test_on_callback_error_gets_wsi_reason_exc_and_reraise_ends_service() -> None:
    seen: list[tuple[Wsi | None, Reason | None, BaseException]] = []

    def handler(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
        seen.append((wsi, reason, exc))
        if isinstance(exc, ZeroDivisionError):
            raise exc

    def srv_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_RX and data == b"div":
            return 1 // 0
        return _echo(wsi, reason, data)

    srv, cli = Recorder("srv", srv_on), Recorder("cli")
    with Context(protocols=[srv.protocol, cli.protocol], on_callback_error=handler) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        c = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(c))
        service_until(ctx, lambda: len(srv.data(Reason.RAW_ADOPT)) == 1)
        accepted = server_wsi(ctx, srv, c.local)
        c.write(b"div")
        with pytest.raises(ZeroDivisionError):
            for _ in range(200):
                ctx.service(50)
        assert len(seen) == 1
        wsi, reason, exc = seen[0]
        assert wsi is accepted and reason is Reason.RAW_RX
        assert isinstance(exc, ZeroDivisionError)
        # The handler ran after the wsi was closed and told: RAW_CLOSE once, gone.
        assert accepted.close_reason == "callback error"
        assert count(srv, Reason.RAW_CLOSE, accepted) == 1
        assert accepted not in ctx.wsis
        # service() can be called again, and the loop still works.
        service_until(ctx, lambda: Reason.RAW_CLOSE in cli.reasons(c))
        c2 = ctx.connect(LOOP4, vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(c2))
        c2.write(b"ok")
        service_until(ctx, lambda: cli.data(Reason.RAW_RX, c2) == [b"ok"])


def test_reraise_from_close_callback_does_not_leave_the_wsi_registered() -> None:
    def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
        raise exc

    def srv_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_CLOSE:
            raise RuntimeError("close handler broke")
        return 0

    before = open_fds()
    srv = Recorder("srv", srv_on)
    ctx = Context(protocols=[srv.protocol], on_callback_error=reraise)
    with watchdog(10):
        try:
            vh = ctx.create_vhost("default", port=0, iface=LOOP4)
            assert vh.port is not None
            with socket.create_connection((LOOP4, vh.port)):
                service_until(ctx, lambda: len(ctx.wsis) == 1)
                (accepted,) = ctx.wsis
            with pytest.raises(RuntimeError, match="close handler broke"):
                for _ in range(200):
                    ctx.service(50)
            assert accepted.state is WsiState.CLOSED
            assert accepted not in ctx.wsis
        finally:
            ctx.destroy()  # hung forever when the closed wsi stayed in ctx.wsis
    assert ctx.destroyed
    assert count(srv, Reason.RAW_CLOSE, accepted) == 1
    assert open_fds() == before


def test_events_for_a_wsi_closed_earlier_in_the_same_pass_are_not_delivered() -> None:
    """A callback closes another wsi whose fd is ready in the same pass and adopts a new
    pipe that reuses the freed fd number: the closed wsi hears nothing more, and the new
    wsi gets its own data."""
    rec_events: list[tuple[str, Reason, bytes | None]] = []
    wsis: dict[str, Wsi] = {}
    pipes: list[int] = []  # write ends we own

    def on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if wsi is None:
            return 0
        name = next(k for k, v in wsis.items() if v is wsi) if wsi in wsis.values() else "?"
        rec_events.append((name, reason, data))
        if reason is Reason.RAW_RX_FILE and "new" not in wsis:
            other = wsis["b" if name == "a" else "a"]
            freed = other.fd
            other.close("closed by peer wsi")
            r, w = os.pipe()
            if w == freed:  # another fd was free below it: move the write end off it
                w, old_w = os.dup(w), w
                os.close(old_w)
            if r != freed:  # make the reuse certain
                os.dup2(r, freed)
                os.close(r)
                r = freed
            pipes.append(w)
            os.write(w, b"for the new wsi")
            wsis["new"] = wsi.ctx.adopt_file(r, protocol="p")
        return 0

    proto = Protocol("p", lambda w, r, u, d: on(w, r, d))
    with Context(protocols=[proto]) as ctx:
        ra, wa = os.pipe()
        rb, wb = os.pipe()
        pipes += [wa, wb]
        try:
            wsis["a"] = ctx.adopt_file(ra, protocol="p")
            wsis["b"] = ctx.adopt_file(rb, protocol="p")
            os.write(wa, b"to a")
            os.write(wb, b"to b")
            service_until(ctx, lambda: "new" in wsis)
            for _ in range(5):
                ctx.service(10)
            closed = "b" if wsis["b"].state is WsiState.CLOSED else "a"
            after_close = [
                r
                for i, (n, r, _) in enumerate(rec_events)
                if n == closed
                and i > rec_events.index((closed, Reason.RAW_CLOSE_FILE, None))
                and r is not Reason.WSI_DESTROY
            ]
            assert after_close == []
            got = [d for n, r, d in rec_events if n == "new" and r is Reason.RAW_RX_FILE]
            assert got == [b"for the new wsi"]
        finally:
            for fd in pipes:
                os.close(fd)


# -- 2. peer reset, half-close, EAGAIN, EINTR ------------------------------------------


@pytest.mark.parametrize("tx_pending", [False, True])
def test_peer_reset_closes_with_peer_reset_once(tx_pending: bool) -> None:
    rec = Recorder("p")
    ours, peer = tcp_pair(our_sndbuf=16384, peer_rcvbuf=16384)
    with peer, Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(ours, protocol="p")
        if tx_pending:
            wsi.write(b"x" * (4 << 20))
            assert wsi.tx_pending > 0
        reset(peer)  # RST
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        for _ in range(3):
            ctx.service(10)
        assert wsi.close_reason == "peer reset"
        assert count(rec, Reason.RAW_CLOSE, wsi) == 1
        assert wsi.tx_pending == 0 and wsi not in ctx.wsis
    assert count(rec, Reason.RAW_CLOSE, wsi) == 1


def test_half_close_delivers_every_byte_then_flushes_ours_before_closing() -> None:
    rng = random.Random(11)
    to_us = rng.randbytes(1 << 20)
    to_peer = rng.randbytes(4 << 20)
    rec = Recorder("p")
    ours, peer = tcp_pair(our_sndbuf=16384, peer_rcvbuf=16384)
    with peer, Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(ours, protocol="p")
        wsi.write(to_peer)
        assert wsi.tx_pending > 0
        # The peer sends everything (without reading), then shuts its write side.
        peer.setblocking(False)
        off = 0
        for _ in range(100_000):
            if off == len(to_us):
                break
            with contextlib.suppress(BlockingIOError):
                off += peer.send(to_us[off : off + 65536])
            ctx.service(0)
        assert off == len(to_us)
        peer.shutdown(socket.SHUT_WR)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSING)
        for _ in range(3):
            ctx.service(10)
        # Every byte arrived, in order; RAW_CLOSE waits for our buffer to drain.
        assert b"".join(rec.data(Reason.RAW_RX, wsi)) == to_us
        assert wsi.close_reason == "peer closed"
        assert Reason.RAW_CLOSE not in rec.reasons(wsi)
        assert wsi.tx_pending > 0
        got = drain(ctx, peer, len(to_peer) + 1)  # reads to EOF
        assert len(got) == len(to_peer) and got == to_peer
        service_until(ctx, lambda: Reason.RAW_CLOSE in rec.reasons(wsi))
        reasons = rec.reasons(wsi)
        assert reasons.count(Reason.RAW_CLOSE) == 1
        assert reasons.index(Reason.RAW_CLOSE) > max(
            i for i, r in enumerate(reasons) if r is Reason.RAW_RX
        )
        assert wsi.close_reason == "peer closed"


def test_eagain_on_send_buffers_in_order_and_writeable_waits_for_the_drain() -> None:
    rng = random.Random(5)
    chunks = [rng.randbytes(rng.randint(1, 300_000)) for _ in range(40)]
    chunks.append(rng.randbytes(3 << 20))
    total = sum(map(len, chunks))
    at_writeable: list[int] = []

    def on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_WRITEABLE and wsi is not None:
            at_writeable.append(wsi.tx_pending)
            if len(at_writeable) == 1:
                wsi.write(b"TRAILER")
        return 0

    rec = Recorder("p", on)
    ours, peer = tcp_pair(our_sndbuf=8192, peer_rcvbuf=8192)
    with peer, Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(ours, protocol="p")
        for c in chunks:
            assert wsi.write(c) == len(c)
        assert 0 < wsi.tx_pending <= total
        wsi.callback_on_writable()
        for _ in range(5):  # the peer does not read: nothing can drain
            ctx.service(10)
        assert wsi.tx_pending > 0
        assert at_writeable == []
        got = drain(ctx, peer, total + len(b"TRAILER"))
        assert got == b"".join(chunks) + b"TRAILER"
        assert at_writeable == [0]
        assert wsi.tx_pending == 0


def test_eintr_during_a_transfer_loses_nothing() -> None:
    payload = random.Random(9).randbytes(16 << 20)
    got = hashlib.sha256()
    received = [0]
    ticks = [0]

    def srv_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_RX:
            got.update(data)
            received[0] += len(data)
        return 0

    def cli_on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if reason is Reason.RAW_CONNECTED and wsi is not None:
            wsi.write(payload)
        return 0

    def on_alarm(signum: int, frame: object) -> None:
        ticks[0] += 1

    srv, cli = Recorder("srv", srv_on), Recorder("cli", cli_on)
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_timer = signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
            vh = ctx.create_vhost("default", port=0, iface=LOOP4)
            assert vh.port is not None
            c = ctx.connect(LOOP4, vh.port, protocol="cli")
            service_until(ctx, lambda: received[0] >= len(payload), passes=100_000)
            assert c.tx_pending == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_timer[0]:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)
    assert ticks[0] > 0  # signals did arrive during the transfer
    assert received[0] == len(payload)
    assert got.hexdigest() == hashlib.sha256(payload).hexdigest()


# -- 3. 64 MiB through a slow reader ---------------------------------------------------

BIG = 64 << 20


def _slow_reader(sock: socket.socket, out: list[tuple[int, str]]) -> None:
    h = hashlib.sha256()
    total = 0
    eof = False
    for _ in range(300):  # a slow start: small reads with short sleeps
        chunk = sock.recv(2048)
        if not chunk:
            eof = True
            break
        h.update(chunk)
        total += len(chunk)
        time.sleep(0.001)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while not eof:
        n = sock.recv_into(buf)
        if not n:
            break
        h.update(view[:n])
        total += n
    out.append((total, h.hexdigest()))


@pytest.mark.parametrize("writes", ["one", "many"])
def test_64_mib_through_a_slow_reader_arrives_byte_exact(writes: str) -> None:
    payload = random.Random(64).randbytes(BIG)
    want = hashlib.sha256(payload).hexdigest()
    rec = Recorder("p")
    out: list[tuple[int, str]] = []
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    reader.settimeout(60)
    thread = threading.Thread(target=_slow_reader, args=(reader, out))
    try:
        with Context(protocols=[rec.protocol]) as ctx:
            vh = ctx.create_vhost("default", port=0, iface=LOOP4)
            assert vh.port is not None
            reader.connect((LOOP4, vh.port))
            thread.start()
            service_until(ctx, lambda: len(ctx.wsis) == 1)
            (wsi,) = ctx.wsis
            if writes == "one":
                assert wsi.write(payload) == BIG
                assert wsi.tx_pending > 0
            else:
                rng = random.Random(3)
                view = memoryview(payload)
                off = 0
                while off < BIG:
                    while off < BIG and wsi.tx_pending < (1 << 20):
                        piece = view[off : off + rng.randint(1, 16384)]
                        assert wsi.write(piece) == len(piece)
                        off += len(piece)
                    ctx.service(10)
            service_until(ctx, lambda: wsi.tx_pending == 0, passes=100_000)
            wsi.close("done")
            assert count(rec, Reason.RAW_CLOSE, wsi) == 1
    finally:
        if thread.ident is not None:  # started
            thread.join(60)
        reader.close()
    assert not thread.is_alive()
    assert out == [(BIG, want)]


# -- 4. accept() failing with EMFILE ---------------------------------------------------


class CountingListenSock:
    """Stands in for the listener's socket and counts the role's accept() calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.accepts = 0
        self.failures = 0

    def _accept(self) -> tuple[int, Any]:  # what the listen role calls: accept(2) itself
        self.accepts += 1
        try:
            return self.sock._accept()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self.failures += 1
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def test_accept_emfile_backs_off_without_spinning_and_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder("p")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    holders: list[socket.socket] = []
    waiting: list[socket.socket] = []
    try:
        with Context(protocols=[rec.protocol]) as ctx:
            vh = ctx.create_vhost("default", port=0, iface=LOOP4)
            assert vh.port is not None and vh.listener is not None
            counting = CountingListenSock(vh.listener.sock)  # type: ignore[arg-type]
            vh.listener.sock = counting  # type: ignore[assignment]

            def adopted() -> list[Wsi]:
                return [w for w, r, _ in rec.events if r is Reason.RAW_ADOPT and w is not None]

            holders += [socket.create_connection((LOOP4, vh.port)) for _ in range(3)]
            service_until(ctx, lambda: len(adopted()) == 3)
            held = adopted()
            # Four more connect; the kernel completes them into the listen queue.
            waiting += [socket.create_connection((LOOP4, vh.port)) for _ in range(4)]

            # From here no new fd can be made: the lowest free fd is the limit.
            probe = os.open(os.devnull, os.O_RDONLY)
            os.close(probe)
            resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
            counting.accepts = 0
            with caplog.at_level(logging.WARNING, logger="lwspy"):
                service_until(ctx, lambda: counting.failures > 0)
                assert not vh.accepting  # paused at the first EMFILE
                passes = busy = 0
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    busy += ctx.service(20) > 0
                    passes += 1
            # A busy loop would call accept() and return events thousands of times here;
            # the backoff (50 ms doubling) allows a handful of tries.
            assert 1 <= counting.accepts <= 12, counting.accepts
            assert counting.accepts == counting.failures
            assert busy <= 12, (busy, passes)
            assert len(adopted()) == 3
            assert any("accept failed" in r.getMessage() for r in caplog.records)

            # Freeing fds (closing wsis) lets the listener take the queued connections.
            for w in held:
                w.close("make room")
            assert vh.accepting  # at once, not after the backoff
            service_until(ctx, lambda: len(adopted()) == 6)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            service_until(ctx, lambda: len(adopted()) == 7)
            assert vh.accepting
            new = adopted()[3:]
            assert sorted(w.peer for w in new if w.peer) == sorted(
                s.getsockname()[:2] for s in waiting
            )
            for w in new:
                w.write(b"welcome")
            for s in waiting:
                assert drain(ctx, s, 7) == b"welcome"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for s in holders + waiting:
            s.close()


# -- 5. destroy() releases every fd ----------------------------------------------------


@pytest.mark.parametrize("how", ["destroy", "with"])
def test_destroy_closes_every_fd_the_context_opened(how: str) -> None:
    before = open_fds()
    rec = Recorder("p")
    r, w = os.pipe()
    refused = closed_port()
    ours, peer = tcp_pair()
    plain: socket.socket | None = None
    ctx = Context(protocols=[rec.protocol])
    try:
        with contextlib.ExitStack() as stack:
            if how == "with":
                stack.enter_context(ctx)
            vh = ctx.create_vhost("default", port=0, iface=LOOP4)
            v6 = ctx.create_vhost("six", port=0, iface="::1")
            assert vh.port is not None and v6.port is not None
            plain = socket.create_connection((LOOP4, vh.port))
            client = ctx.connect(LOOP4, vh.port)
            client6 = ctx.connect("::1", v6.port)
            service_until(
                ctx,
                lambda: (
                    Reason.RAW_CONNECTED in rec.reasons(client)
                    and Reason.RAW_CONNECTED in rec.reasons(client6)
                    and count(rec, Reason.RAW_ADOPT) == 3
                ),
            )
            adopted = ctx.adopt_socket(ours)
            file_wsi = ctx.adopt_file(r)
            client.set_timer(60)
            client.set_timeout(120)
            ctx.call_later(60, lambda: None)
            ctx.sul(lambda: None).schedule(30)
            client.write(b"x" * (8 << 20))  # something buffered, too
            connecting = ctx.connect(LOOP4, refused.getsockname()[1])
            ctx.service(0)  # starts that attempt; its outcome needs another pass
            assert connecting.state is WsiState.CONNECTING  # its attempt's socket is open
            assert [c.result for c in connecting.caos] == [CaoResult.PENDING]
            pending = ctx.connect(LOOP4, vh.port)
            assert pending.state is WsiState.PENDING
            announced = [w for w in ctx.wsis if w not in (connecting, pending)]
            assert len(announced) == 7  # 2 clients, 3 accepted, 1 socket, 1 file
            assert open_fds() != before
            if how == "destroy":
                ctx.destroy()
        assert ctx.destroyed
        for wsi in (connecting, pending):
            assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["context destroyed"]
            assert Reason.RAW_CONNECTED not in rec.reasons(wsi)
        for wsi in announced:
            close = Reason.RAW_CLOSE_FILE if wsi is file_wsi else Reason.RAW_CLOSE
            assert count(rec, close, wsi) == 1, wsi
            assert wsi.state is WsiState.CLOSED
        assert adopted.state is WsiState.CLOSED
        assert count(rec, Reason.PROTOCOL_DESTROY) == 2  # once per vhost: default, six
        ctx.destroy()  # idempotent
        with pytest.raises(RuntimeError, match="destroyed"):
            ctx.service(0)
    finally:
        ctx.destroy()
        os.close(w)
        refused.close()
        peer.close()
        if plain is not None:
            plain.close()
    assert open_fds() == before


# -- 6. bad arguments ------------------------------------------------------------------


def _state(ctx: Context) -> tuple[Any, ...]:
    return (
        list(ctx.wsis),
        dict(ctx.pt.fds),
        dict(ctx.vhosts),
        len(ctx.pt.suls),
        open_fds(),
        dict(ctx.pt.sel.get_map()),
    )


def test_context_rejects_bad_options() -> None:
    p = Recorder("p").protocol
    before = open_fds()
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"timeout_secs": 0}, ValueError, "timeout_secs must be a finite number"),
        ({"timeout_secs": -1}, ValueError, "timeout_secs"),
        ({"timeout_secs": float("nan")}, ValueError, "timeout_secs"),
        ({"timeout_secs": float("inf")}, ValueError, "timeout_secs"),
        ({"timeout_secs": "5"}, TypeError, "timeout_secs must be a number of seconds, not str"),
        ({"timeout_secs": True}, TypeError, "not bool"),
        ({"connect_timeout_secs": 0}, ValueError, "connect_timeout_secs"),
        ({"connect_timeout_secs": None}, TypeError, "connect_timeout_secs"),
        ({"protocols": p}, TypeError, "iterable of Protocol"),
        ({"protocols": "p"}, TypeError, "iterable of Protocol"),
        ({"protocols": 3}, TypeError, "iterable of Protocol"),
        ({"protocols": ["p"]}, TypeError, "hold Protocol objects, not str"),
        ({"protocols": [p, Recorder("p").protocol]}, ValueError, "two protocols are named 'p'"),
        ({"on_callback_error": 3}, TypeError, "on_callback_error must be callable"),
        ({"clock": 3.0}, TypeError, "clock must be callable"),
        ({"hosts_file": 3}, TypeError, "PathLike"),
    ]
    for kwargs, exc, match in bad:
        with pytest.raises(exc, match=match):
            Context(**kwargs)
        assert open_fds() == before, kwargs


def test_create_vhost_rejects_bad_arguments_and_registers_nothing() -> None:
    p, q = Recorder("p"), Recorder("q")
    with (
        Context(protocols=[p.protocol, q.protocol]) as ctx,
        socket.create_server((LOOP4, 0)) as busy,
    ):
        ctx.create_vhost("taken")
        busy_port = busy.getsockname()[1]
        bad: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"name": "v", "port": True}, TypeError, "port must be an int, not bool"),
            ({"name": "v", "port": "80"}, TypeError, "port must be an int, not str"),
            ({"name": "v", "port": 80.0}, TypeError, "port must be an int, not float"),
            ({"name": "v", "port": -1}, ValueError, r"port must be in 0\.\.65535, not -1"),
            ({"name": "v", "port": 65536}, ValueError, r"0\.\.65535, not 65536"),
            ({"name": "v", "port": 0, "iface": 3}, TypeError, "iface must be a str, not int"),
            ({"name": "v", "port": 0, "iface": b"lo"}, TypeError, "iface must be a str"),
            ({"name": "v", "port": 0, "iface": "nosuchif0"}, ValueError, "no interface named"),
            ({"name": "v", "protocols": ["nope"]}, ValueError, "unknown protocol 'nope'"),
            ({"name": "v", "protocols": "p"}, TypeError, "iterable of Protocol"),
            ({"name": "v", "protocols": [3]}, TypeError, "not int"),
            ({"name": "v", "protocols": ["p", "p"]}, ValueError, "two protocols"),
            ({"name": "v", "port": 0, "accept_protocol": "nope"}, ValueError, "unknown protocol"),
            ({"name": "v", "accept_protocol": 3}, TypeError, "accept_protocol must be"),
            ({"name": "v", "port": 0, "protocols": []}, ValueError, "no protocol to bind"),
            ({"name": ""}, TypeError, "non-empty str"),
            ({"name": 3}, TypeError, "non-empty str"),
            ({"name": "taken"}, ValueError, "already a vhost named 'taken'"),
            ({"name": "v", "port": busy_port, "iface": LOOP4}, OSError, "in use"),
        ]
        for kwargs, exc, match in bad:
            before = _state(ctx)
            with pytest.raises(exc, match=match):
                ctx.create_vhost(**kwargs)
            assert _state(ctx) == before, kwargs
            assert "v" not in ctx.vhosts
        assert [r for _, r, _ in p.events] == [Reason.PROTOCOL_INIT] * 2


def test_connect_rejects_bad_arguments_and_registers_nothing() -> None:
    p = Recorder("p")
    with Context(protocols=[p.protocol]) as ctx, Context(protocols=[p.protocol]) as other:
        ctx.create_vhost("v")
        foreign = other.vhosts["default"]
        bad: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
            ((b"127.0.0.1", 80), {}, TypeError, "host must be a str, not bytes"),
            ((3, 80), {}, TypeError, "host must be a str, not int"),
            ((LOOP4, 0), {}, ValueError, r"port must be in 1\.\.65535, not 0"),
            ((LOOP4, 65536), {}, ValueError, r"1\.\.65535"),
            ((LOOP4, -5), {}, ValueError, r"1\.\.65535"),
            ((LOOP4, True), {}, TypeError, "port must be an int, not bool"),
            ((LOOP4, "80"), {}, TypeError, "port must be an int, not str"),
            ((LOOP4, 80.0), {}, TypeError, "port must be an int, not float"),
            ((LOOP4, None), {}, TypeError, "port must be an int, not NoneType"),
            ((LOOP4, 80), {"protocol": "nope"}, ValueError, "unknown protocol 'nope'"),
            ((LOOP4, 80), {"protocol": 3}, TypeError, "protocol must be a name or a Protocol"),
            (
                (LOOP4, 80),
                {"protocol": Recorder("stranger").protocol},
                ValueError,
                "not a protocol of vhost",
            ),
            ((LOOP4, 80), {"vhost": "nope"}, ValueError, "unknown vhost 'nope'"),
            ((LOOP4, 80), {"vhost": 3}, TypeError, "vhost must be a name or a Vhost"),
            ((LOOP4, 80), {"vhost": foreign}, ValueError, "not a vhost of this context"),
            ((LOOP4, 80), {"iface": 3}, TypeError, "iface must be a str, not int"),
            ((LOOP4, 80), {"iface": "nosuchif0"}, ValueError, "no interface named 'nosuchif0'"),
            ((LOOP4, 80), {"conmon": 1}, TypeError, "conmon must be a bool"),
        ]
        for args, kwargs, exc, match in bad:
            before = _state(ctx)
            with pytest.raises(exc, match=match):
                ctx.connect(*args, **kwargs)
            assert _state(ctx) == before, (args, kwargs)
        for _ in range(3):
            ctx.service(0)
        assert [r for w, r, _ in p.events if w is not None] == []


def test_adopt_rejects_bad_arguments_and_leaves_the_fd_to_the_caller(tmp_path: Path) -> None:
    p = Recorder("p")
    regular = os.open(tmp_path / "plain.txt", os.O_RDWR | os.O_CREAT)
    r, w = os.pipe()
    ours, peer = tcp_pair()
    closed_sock, other_peer = tcp_pair()
    closed_sock.close()
    try:
        with Context(protocols=[p.protocol]) as ctx, socket.create_server((LOOP4, 0)) as lst:
            free = os.open(os.devnull, os.O_RDONLY)
            os.close(free)  # a number that is not open
            adopted = ctx.adopt_socket(ours)
            piped = ctx.adopt_file(r)
            sock_cases: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
                (3, {}, TypeError, "sock must be a socket.socket, not int"),
                (closed_sock, {}, ValueError, "the socket is closed"),
                (lst, {}, ValueError, "a listening socket cannot be adopted"),
                (ours, {}, ValueError, "already in this context"),
                (peer, {"protocol": "nope"}, ValueError, "unknown protocol 'nope'"),
                (peer, {"vhost": "nope"}, ValueError, "unknown vhost 'nope'"),
                (peer, {"vhost": 3}, TypeError, "vhost must be a name or a Vhost"),
            ]
            for sock, kwargs, exc, match in sock_cases:
                before = _state(ctx)
                with pytest.raises(exc, match=match):
                    ctx.adopt_socket(sock, **kwargs)
                assert _state(ctx) == before, (sock, kwargs)
            # Still the caller's: open, blocking, usable.
            assert peer.fileno() >= 0 and peer.getblocking()
            assert lst.fileno() >= 0 and lst.getblocking()

            file_cases: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
                (True, {}, TypeError, "fd must be an int, not bool"),
                ("3", {}, TypeError, "fd must be an int, not str"),
                (3.0, {}, TypeError, "fd must be an int, not float"),
                (-1, {}, ValueError, "fd must be >= 0"),
                (free, {}, ValueError, f"fd {free} is not open"),
                (regular, {}, ValueError, "cannot be polled"),
                (r, {}, ValueError, "already in this context"),
                (adopted.fd, {}, ValueError, "already in this context"),
                (w, {"protocol": "nope"}, ValueError, "unknown protocol 'nope'"),
                (w, {"vhost": "nope"}, ValueError, "unknown vhost 'nope'"),
            ]
            for fd, kwargs, exc, match in file_cases:
                before = _state(ctx)
                with pytest.raises(exc, match=match):
                    ctx.adopt_file(fd, **kwargs)
                assert _state(ctx) == before, (fd, kwargs)
            assert os.get_blocking(regular) and os.get_blocking(w)
            os.fstat(regular)
            assert ctx.wsis == [adopted, piped]
            assert adopted.state is piped.state is WsiState.ESTABLISHED
    finally:
        os.close(regular)
        os.close(w)
        peer.close()
        other_peer.close()


def test_other_calls_reject_bad_arguments() -> None:
    p = Recorder("p")
    with Context(protocols=[p.protocol]) as ctx:
        before = _state(ctx)
        with pytest.raises(ValueError, match="timeout_ms must be a finite number"):
            ctx.service(-1)
        with pytest.raises(TypeError, match="timeout_ms must be a number"):
            ctx.service("10")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="fn must be callable"):
            ctx.call_later(1, 3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="seconds must be finite and >= 0"):
            ctx.call_later(-1, print)
        with pytest.raises(TypeError, match="seconds must be a number"):
            ctx.call_later("1", print)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown vhost 'nope'"):
            ctx.get_vhost("nope")
        assert _state(ctx) == before


# -- 7. connect outcome rules ----------------------------------------------------------


def _outcomes(rec: Recorder, wsi: Wsi) -> list[Reason]:
    return [
        r for r in rec.reasons(wsi) if r in (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR)
    ]


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, LOOP4), (socket.AF_INET6, "::1")], ids=["v4", "v6"]
)
def test_connect_refused(family: socket.AddressFamily, host: str) -> None:
    rec = Recorder("p")
    with closed_port(family) as refused, Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.connect(host, refused.getsockname()[1])
        assert wsi_events(rec) == []  # nothing inside connect()
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        for _ in range(3):
            ctx.service(10)
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["connect refused"]
        assert wsi.close_reason == "connect refused"
        assert Reason.RAW_CLOSE not in rec.reasons(wsi)
        (cao,) = wsi.caos
        assert cao.result is CaoResult.REFUSED
        assert cao.errno == errno.ECONNREFUSED
        assert cao.address == host and cao.ended is not None
        assert wsi.conmon is not None and wsi.conmon.peer is None
        assert wsi not in ctx.wsis


def test_connect_to_a_hosts_file_name(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# test hosts\n127.0.0.1 lab.test lab\n")
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], hosts_file=hosts) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        wsi = ctx.connect("lab.test", vh.port)
        assert wsi_events(rec) == []
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))
        for _ in range(3):
            ctx.service(10)
        assert _outcomes(rec, wsi) == [Reason.RAW_CONNECTED]
        assert wsi.peer == (LOOP4, vh.port)
        assert wsi.conmon is not None
        assert wsi.conmon.dns_disposition == "OK"
        assert wsi.conmon.dns_results == [LOOP4]
        (cao,) = wsi.caos
        assert cao.host == "lab.test" and cao.address == LOOP4
        assert cao.result is CaoResult.WON
    assert _outcomes(rec, wsi) == [Reason.RAW_CONNECTED]
    assert count(rec, Reason.RAW_CLOSE, wsi) == 1


def test_connect_to_an_unknown_name(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 lab.test\n")
    rec = Recorder("p")
    with (
        FakeDns() as dns_srv,  # a name in neither the hosts file nor its zone: NXDOMAIN
        Context(protocols=[rec.protocol], hosts_file=hosts, nameservers=[dns_srv.address]) as ctx,
    ):
        wsi = ctx.connect("nowhere.test", 80)
        assert wsi_events(rec) == []
        for _ in range(400):
            if wsi.state is WsiState.CLOSED:
                break
            ctx.service(5)
            dns_srv.pump()
        for _ in range(3):
            ctx.service(10)
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["DNS NXDOMAIN"]
        assert wsi.conmon is not None and wsi.conmon.dns_disposition == "NXDOMAIN"
        assert wsi.conmon.dns_results == [] and wsi.conmon.peer is None
        assert wsi.caos == []


def _fill_backlog(lst: socket.socket, socks: list[socket.socket]) -> None:
    """Connect until the listen queue is full: the next SYN is dropped and hangs."""
    for _ in range(16):
        s = socket.socket()
        socks.append(s)
        s.setblocking(False)
        s.connect_ex(lst.getsockname())
        _, writable, _ = select.select([], [s], [], 0.5)
        if not writable:
            return
    raise AssertionError("the listen queue never filled")


def test_connect_timeout_on_a_full_listen_queue(clock: FakeClock) -> None:
    rec = Recorder("p")
    socks: list[socket.socket] = []
    with socket.socket() as lst:
        lst.bind((LOOP4, 0))
        lst.listen(0)
        try:
            _fill_backlog(lst, socks)
            with Context(protocols=[rec.protocol], clock=clock, connect_timeout_secs=5) as ctx:
                wsi = ctx.connect(LOOP4, lst.getsockname()[1])
                assert wsi_events(rec) == []
                ctx.service(0)
                assert wsi.state is WsiState.CONNECTING
                for _ in range(5):  # real time passes; the handshake does not complete
                    ctx.service(20)
                assert wsi.state is WsiState.CONNECTING
                clock.advance(4.9)
                ctx.service(0)
                assert wsi.state is WsiState.CONNECTING and _outcomes(rec, wsi) == []
                clock.advance(0.2)
                ctx.service(0)
                assert wsi.state is WsiState.CLOSED
                clock.advance(60)
                for _ in range(3):
                    ctx.service(0)
                assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
                assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["timed out"]
                (cao,) = wsi.caos
                assert cao.result is CaoResult.TIMED_OUT
                assert cao.errno == errno.ETIMEDOUT
                assert abs(cao.connect_us - 5_100_000) <= 1  # fake seconds
        finally:
            for s in socks:
                s.close()


def test_outcome_is_never_delivered_inside_connect_even_after_service_ran(
    tmp_path: Path,
) -> None:
    """Whatever the outcome, connect() itself delivers nothing; the loop delivers one."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 lab.test\n")
    rec = Recorder("p")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind((LOOP4, 0))  # "nowhere.test" goes to a nameserver that is not there
        dead_dns = f"{LOOP4}:{gone.getsockname()[1]}"
    with (
        closed_port() as refused,
        Context(protocols=[rec.protocol], hosts_file=hosts, nameservers=[dead_dns]) as ctx,
    ):
        vh = ctx.create_vhost("default", port=0, iface=LOOP4)
        assert vh.port is not None
        targets: list[tuple[str, int]] = [
            (LOOP4, vh.port),
            ("lab.test", vh.port),
            (LOOP4, refused.getsockname()[1]),
            ("nowhere.test", vh.port),
        ]
        made: list[Wsi] = []
        for host, port in targets:
            n = len(wsi_events(rec))
            made.append(ctx.connect(host, port))
            assert len(wsi_events(rec)) == n, (host, port)
            ctx.service(0)
        service_until(ctx, lambda: all(_outcomes(rec, w) for w in made))
        for _ in range(3):
            ctx.service(10)
        assert [_outcomes(rec, w) for w in made] == [
            [Reason.RAW_CONNECTED],
            [Reason.RAW_CONNECTED],
            [Reason.CLIENT_CONNECTION_ERROR],
            [Reason.CLIENT_CONNECTION_ERROR],
        ]


def test_wsi_destroy_only_follows_a_delivered_wsi_create() -> None:
    def factory() -> dict[str, int]:
        raise LookupError("no session slot")

    rec = Recorder("p")
    proto = Protocol("p", rec, user_factory=factory)
    with closed_port() as refused, Context(protocols=[proto]) as ctx:
        c = ctx.connect(LOOP4, refused.getsockname()[1], protocol="p")
        service_until(ctx, lambda: c.state is WsiState.CLOSED)
        assert rec.reasons(c) == [Reason.CLIENT_CONNECTION_ERROR]


def test_a_connect_pending_at_destroy_carries_its_user() -> None:
    users: list[object] = []

    def cb(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            users.append((user, data))
        return 0

    proto = Protocol("p", cb, user_factory=lambda: {"id": 7})
    with closed_port() as refused, Context(protocols=[proto]) as ctx:
        ctx.connect(LOOP4, refused.getsockname()[1], protocol="p")
    assert users == [({"id": 7}, "context destroyed")]


def test_destroy_closes_every_fd_even_when_on_callback_error_reraises() -> None:
    before = open_fds()

    def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
        raise exc

    def boom(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        if reason is Reason.RAW_CLOSE:
            raise RuntimeError("close callback failed")
        return 0

    ctx = Context(protocols=[Protocol("p", boom)], on_callback_error=reraise)
    pairs = [socket.socketpair() for _ in range(3)]
    wsis = [ctx.adopt_socket(b) for _, b in pairs]
    with pytest.raises(RuntimeError, match="close callback failed"):
        ctx.destroy()
    assert ctx.destroyed and all(w.state is WsiState.CLOSED for w in wsis)
    for a, _ in pairs:
        a.close()
    assert open_fds() == before


def test_adopting_the_selectors_own_fd_is_a_value_error() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol]) as ctx:
        fd = ctx.pt.sel.fileno()  # type: ignore[attr-defined]
        with pytest.raises(ValueError, match="cannot be polled"):
            ctx.adopt_file(fd)
        assert fd not in ctx.pt.fds
