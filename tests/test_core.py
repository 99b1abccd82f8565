"""The core loop: vhosts, connections, writes, timers, cross-thread wake-ups, lifetime."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

import lwspy
from lwspy import CaoResult, Context, Protocol, Reason, WsiState
from tests.conftest import FakeClock, Recorder, service_until


def test_reason_values_are_lws_numbers() -> None:
    assert Reason.CLIENT_CONNECTION_ERROR == 1
    assert Reason.RAW_RX == 59
    assert Reason.RAW_CONNECTED == 101
    assert Reason.EVENT_WAIT_CANCELLED == 71
    assert Reason.TIMER == 73


def test_import_pulls_in_no_asyncio_pyroute2_h11() -> None:
    # logging, dataclasses and json would triple the import time (tools/bench_server.py)
    heavy = ("asyncio", "pyroute2", "h11", "logging", "dataclasses", "json", "lwspy.net.nlmsg")
    code = (
        f"import sys, lwspy; bad = [m for m in {heavy!r} if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_protocol_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        Protocol("", lambda *a: 0)
    with pytest.raises(TypeError, match="callback must be callable"):
        Protocol("x", "nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="user_factory"):
        Protocol("x", lambda *a: 0, user_factory=3)  # type: ignore[arg-type]
    assert repr(Protocol("x", lambda *a: 0)) == "Protocol('x')"


def _echo_pair() -> tuple[Recorder, Recorder]:
    def srv_on(wsi: lwspy.Wsi | None, reason: Reason, data: object) -> int:
        if reason is Reason.RAW_RX and wsi is not None:
            assert isinstance(data, bytes)
            wsi.write(data)
        return 0

    return Recorder("srv", srv_on), Recorder("cli")


def test_echo_roundtrip_and_callback_order() -> None:
    srv, cli = _echo_pair()
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        assert vh.port and vh.listener is not None and vh.accepting
        wsi = ctx.connect("127.0.0.1", vh.port, protocol="cli")
        assert wsi.state is WsiState.PENDING and cli.reasons(wsi) == []
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(wsi))
        assert wsi.write(b"abc") == 3
        assert wsi.write(bytearray(b"def")) == 3
        assert wsi.write(memoryview(b"ghi")) == 3
        assert wsi.write(b"") == 0
        service_until(ctx, lambda: sum(len(d) for d in cli.data(Reason.RAW_RX)) >= 9)
        assert b"".join(cli.data(Reason.RAW_RX)) == b"abcdefghi"
        assert cli.reasons(wsi)[:3] == [Reason.WSI_CREATE, Reason.CONNECTING, Reason.RAW_CONNECTED]
        assert wsi.peer == ("127.0.0.1", vh.port)
        assert wsi.local is not None and wsi.local[0] == "127.0.0.1"
        assert [c.result for c in wsi.caos] == [CaoResult.WON]
        assert wsi.conmon is not None and wsi.conmon.peer == wsi.peer
        taken = wsi.conmon_take()
        assert taken is not None and wsi.conmon is None and wsi.conmon_take() is None
        server_wsi = next(w for w in ctx.wsis if w.protocol is srv.protocol)
        assert server_wsi.conmon is None and server_wsi.caos == []
        wsi.close("done")
        assert wsi.state is WsiState.CLOSED and wsi.close_reason == "done"
        assert wsi.write(b"late") == 0
        service_until(ctx, lambda: Reason.RAW_CLOSE in srv.reasons(server_wsi))
        assert server_wsi.close_reason == "peer closed"
    assert cli.reasons(wsi).count(Reason.RAW_CLOSE) == 1
    assert cli.reasons(wsi)[-1] is Reason.WSI_DESTROY
    assert srv.reasons(None)[-1] is Reason.PROTOCOL_DESTROY


def test_write_preserves_order_across_buffering() -> None:
    srv, cli = _echo_pair()
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        wsi = ctx.connect("127.0.0.1", vh.port, protocol="cli")
        # written while still PENDING: buffered and sent once connected
        chunks = [bytes([i % 256]) * (1000 + i) for i in range(300)]
        for c in chunks:
            assert wsi.write(c) == len(c)
        assert wsi.tx_pending == sum(map(len, chunks))
        want = b"".join(chunks)
        service_until(ctx, lambda: sum(len(d) for d in cli.data(Reason.RAW_RX)) >= len(want))
        assert b"".join(cli.data(Reason.RAW_RX)) == want
        assert wsi.tx_pending == 0


def test_bytearray_is_copied_so_the_caller_may_reuse_it() -> None:
    a, b = socket.socketpair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol]) as ctx:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        wsi = ctx.adopt_socket(b)
        buf = bytearray(b"x" * 500_000)
        wsi.write(buf)
        assert wsi.tx_pending > 0
        buf[:] = b"y" * len(buf)
        got = bytearray()
        a.setblocking(False)

        def drained() -> bool:
            with contextlib.suppress(BlockingIOError):
                got.extend(a.recv(1 << 20))
            return len(got) >= 500_000

        service_until(ctx, drained)
        assert bytes(got) == b"x" * 500_000
    a.close()


def test_callback_on_writable_comes_after_the_buffer_drains() -> None:
    a, b = socket.socketpair()
    seen: list[int] = []

    def on(wsi: lwspy.Wsi | None, reason: Reason, data: object) -> int:
        if reason is Reason.RAW_WRITEABLE and wsi is not None:
            seen.append(wsi.tx_pending)
        return 0

    rec = Recorder("p", on)
    with Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(b)
        wsi.write(b"z" * 2_000_000)
        wsi.callback_on_writable()
        a.setblocking(False)
        total = 0

        def done() -> bool:
            nonlocal total
            with contextlib.suppress(BlockingIOError):
                total += len(a.recv(1 << 20))
            return bool(seen)

        service_until(ctx, done)
        assert seen == [0]
        ctx.service(0)
        assert seen == [0]  # one callback per request
    a.close()


def test_nonzero_return_closes_with_reason_callback() -> None:
    a, b = socket.socketpair()
    rec = Recorder("p", lambda w, r, d: 1 if r is Reason.RAW_RX else 0)
    with Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(b)
        a.sendall(b"x")
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert wsi.close_reason == "callback"
        assert rec.reasons(wsi).count(Reason.RAW_CLOSE) == 1
    a.close()


def test_adopt_reports_adopt_then_rx_and_close_on_eof() -> None:
    a, b = socket.socketpair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol]) as ctx:
        wsi = ctx.adopt_socket(b)
        assert rec.reasons(wsi) == [Reason.WSI_CREATE, Reason.RAW_ADOPT]
        a.sendall(b"hi")
        a.close()
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert rec.data(Reason.RAW_RX) == [b"hi"]
        assert wsi.close_reason == "peer closed"


def test_adopt_file_pipe_reads_and_writes() -> None:
    r, w = os.pipe()
    r2, w2 = os.pipe()
    rec = Recorder("f")
    with Context(protocols=[rec.protocol]) as ctx:
        rw = ctx.adopt_file(r)
        ww = ctx.adopt_file(w2)
        assert rec.reasons(rw) == [Reason.WSI_CREATE, Reason.RAW_ADOPT_FILE]
        os.write(w, b"from pipe")
        service_until(ctx, lambda: bool(rec.data(Reason.RAW_RX_FILE)))
        assert rec.data(Reason.RAW_RX_FILE) == [b"from pipe"]
        ww.write(b"to pipe")
        ww.callback_on_writable()
        service_until(ctx, lambda: Reason.RAW_WRITEABLE_FILE in rec.reasons(ww))
        assert os.read(r2, 100) == b"to pipe"
        os.close(w)
        service_until(ctx, lambda: rw.state is WsiState.CLOSED)
        assert rw.close_reason == "end of file"
        assert rec.reasons(rw)[-2:] == [Reason.RAW_CLOSE_FILE, Reason.WSI_DESTROY]
    os.close(r2)


def test_user_factory_gives_each_wsi_its_own_user() -> None:
    users: list[object] = []

    def cb(wsi: lwspy.Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_ADOPT:
            users.append(user)
        return 0

    with Context(protocols=[Protocol("p", cb, user_factory=dict)]) as ctx:
        pairs = [socket.socketpair() for _ in range(2)]
        ws = [ctx.adopt_socket(b) for _, b in pairs]
        assert users[0] == {} and users[0] is not users[1]
        assert ws[0].user is users[0]
        for a, _ in pairs:
            a.close()


def test_timers_fire_in_time_order_and_cancelled_never_fire(clock: FakeClock) -> None:
    fired: list[str] = []
    with Context(clock=clock) as ctx:
        s1 = ctx.sul(lambda: fired.append("a"))
        s2 = ctx.sul(lambda: fired.append("b"))
        s3 = ctx.sul(lambda: fired.append("c"))
        s1.schedule(3)
        s2.schedule(1)
        s3.schedule(2)
        s3.cancel()
        assert s1.scheduled and not s3.scheduled and s3.due is None
        ctx.call_later(2.5, fired.append, "later")
        clock.advance(1.5)
        ctx.service(0)
        assert fired == ["b"]
        s2.schedule(0.5)  # re-arm
        s1.schedule(0.1)  # moving it earlier
        clock.advance(10)
        ctx.service(0)
        assert fired == ["b", "a", "b", "later"]
        assert not s1.scheduled


def test_sul_rejects_bad_delays(clock: FakeClock) -> None:
    with Context(clock=clock) as ctx:
        s = ctx.sul(lambda: None)
        with pytest.raises(ValueError, match="finite"):
            s.schedule(-1)
        with pytest.raises(ValueError, match="finite"):
            s.schedule(float("nan"))
        with pytest.raises(TypeError, match="number"):
            s.schedule("1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            ctx.sul(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="callable"):
            ctx.call_later(1, None)  # type: ignore[arg-type]


def test_many_reschedules_keep_the_heap_small(clock: FakeClock) -> None:
    fired: list[int] = []
    with Context(clock=clock) as ctx:
        ctx.service(0)  # the boot timer (system state to OPERATIONAL) fires
        assert len(ctx.pt.suls) == 0
        suls = [ctx.sul(lambda i=i: fired.append(i)) for i in range(10)]
        for rnd in range(200):
            for i, s in enumerate(suls):
                s.schedule(100 + rnd + i)
        assert len(ctx.pt.suls) == 10
        assert len(ctx.pt.suls.heap) < 10 + 200  # stale entries were compacted
        clock.advance(1000)
        ctx.service(0)
        assert fired == list(range(10))


def test_wsi_timer_and_timeout(clock: FakeClock) -> None:
    a, b = socket.socketpair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], clock=clock) as ctx:
        wsi = ctx.adopt_socket(b)
        wsi.set_timer(5)
        wsi.set_timeout(10, reason="idle")
        clock.advance(5)
        ctx.service(0)
        assert rec.reasons(wsi).count(Reason.TIMER) == 1
        wsi.set_timer(1)
        wsi.cancel_timer()
        wsi.set_timeout(0)  # cancel
        clock.advance(20)
        ctx.service(0)
        assert wsi.state is WsiState.ESTABLISHED
        assert rec.reasons(wsi).count(Reason.TIMER) == 1
        wsi.set_timeout(3, reason="idle")
        clock.advance(3)
        ctx.service(0)
        assert wsi.state is WsiState.CLOSED and wsi.close_reason == "idle"
        with pytest.raises(TypeError):
            ctx.adopt_socket(a).set_timeout(1, reason=3)  # type: ignore[arg-type]


def test_cancel_service_from_another_thread_wakes_every_protocol_of_every_vhost() -> None:
    p1, p2 = Recorder("one"), Recorder("two")
    with Context(protocols=[p1.protocol, p2.protocol]) as ctx:
        ctx.create_vhost("other", protocols=["two"])
        t = threading.Thread(target=ctx.cancel_service)
        t.start()
        t.join()
        ctx.service(5000)  # returns at once because of the wake-up
        assert p1.reasons().count(Reason.EVENT_WAIT_CANCELLED) == 1
        assert p2.reasons().count(Reason.EVENT_WAIT_CANCELLED) == 2
        assert all(w is None for w, r, _ in p2.events if r is Reason.EVENT_WAIT_CANCELLED)


def test_run_until_stop_and_service_is_not_reentrant() -> None:
    errors: list[BaseException] = []
    with Context() as ctx:

        def inner() -> None:
            try:
                ctx.service(0)
            except RuntimeError as e:
                errors.append(e)
            ctx.stop()

        ctx.call_later(0, inner)
        ctx.run()
        assert errors and "inside a callback" in str(errors[0])
    with pytest.raises(RuntimeError, match="destroyed"):
        ctx.service(0)
    ctx.destroy()  # idempotent
    assert ctx.destroyed and "destroyed" in repr(ctx)


def test_vhosts_default_and_named() -> None:
    p1, p2 = Recorder("one"), Recorder("two")
    with Context(protocols=[p1.protocol, p2.protocol]) as ctx:
        assert ctx.get_vhost("default").port is None
        assert p1.reasons() == [Reason.PROTOCOL_INIT]
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1", accept_protocol="two")
        assert ctx.get_vhost("default") is vh and vh.accept_protocol is p2.protocol
        assert p1.reasons() == [Reason.PROTOCOL_INIT]  # same protocols: not re-initialised
        with pytest.raises(ValueError, match="already a vhost"):
            ctx.create_vhost("default")
        other = ctx.create_vhost("other", protocols=[p2.protocol])
        assert other.protocols == [p2.protocol] and other.port is None
        with pytest.raises(ValueError, match="unknown vhost"):
            ctx.get_vhost("nope")
        with pytest.raises(ValueError, match="unknown protocol"):
            other.protocol("one")
        with pytest.raises(ValueError, match="not a protocol of vhost"):
            other.protocol(p1.protocol)
        assert "other" in repr(other)


def test_listener_on_ipv6_any_accepts_ipv4_and_ipv6() -> None:
    srv, cli = _echo_pair()
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0)
        w4 = ctx.connect("127.0.0.1", vh.port, protocol="cli")
        w6 = ctx.connect("::1", vh.port, protocol="cli")
        service_until(ctx, lambda: all(Reason.RAW_CONNECTED in cli.reasons(w) for w in (w4, w6)))
        assert w6.caos[0].family == socket.AF_INET6 and w6.peer is not None
        assert w6.peer[0] == "::1"


def test_connect_with_iface_binds_the_source() -> None:
    srv, cli = _echo_pair()
    with Context(protocols=[srv.protocol, cli.protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        w = ctx.connect("127.0.0.1", vh.port, protocol="cli", iface="127.0.0.1")
        w2 = ctx.connect("127.0.0.1", vh.port, protocol="cli", iface="lo")
        service_until(ctx, lambda: all(Reason.RAW_CONNECTED in cli.reasons(x) for x in (w, w2)))
        assert w.local is not None and w.local[0] == "127.0.0.1"


def test_heap_compaction_while_timers_fire_keeps_the_books_straight(clock: FakeClock) -> None:
    fired: list[int] = []
    with Context(clock=clock, netlink=False) as ctx:
        ctx.service(0)
        suls = [ctx.sul(lambda i=i: fired.append(i)) for i in range(50)]

        def churn() -> None:  # reschedules enough to compact the heap inside run_due
            for _ in range(10):
                for s in suls:
                    s.schedule(5)

        ctx.call_later(1, churn)
        clock.advance(1)
        ctx.service(0)
        q = ctx.pt.suls
        assert q.stale >= 0 and len(q) == 50
        clock.advance(5)
        ctx.service(0)
        assert sorted(fired) == list(range(50)) and len(q) == 0 and q.heap == []


def test_stop_outside_run_does_not_make_later_passes_spin(clock: FakeClock) -> None:
    with Context(clock=clock, netlink=False) as ctx:
        ctx.service(0)
        timeouts: list[float | None] = []
        real = ctx.pt.sel.select

        def select(timeout: float | None = None) -> list[Any]:
            timeouts.append(timeout)
            return real(0)

        ctx.pt.sel.select = select  # type: ignore[method-assign]
        ctx.stop()
        ctx.service(0)  # takes the wake-up
        ctx.sul(lambda: None).schedule(7)
        ctx.service()
        assert timeouts[-1] == 7.0  # waits for the timer, not 0


def test_destroy_from_a_callback_cancels_every_timer() -> None:
    fired: list[str] = []
    ctx = Context(netlink=False)
    ctx.call_later(0, ctx.destroy)
    ctx.call_later(0, fired.append, "late")
    ctx.service(0)
    assert ctx.destroyed and fired == []


def test_an_idle_connection_keeps_no_send_buffer() -> None:
    a, b = socket.socketpair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        wsi = ctx.adopt_socket(b)
        assert wsi._tx is None
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        wsi.write(b"x" * 200_000)
        assert wsi._tx is not None and wsi.tx_pending > 0
        a.setblocking(False)
        got = 0

        def drained() -> bool:
            nonlocal got
            with contextlib.suppress(BlockingIOError):
                got += len(a.recv(1 << 20))
            return got >= 200_000 and wsi.tx_pending == 0

        service_until(ctx, drained)
        assert wsi._tx is None
    a.close()


def test_lazy_log_drops_debug_until_logging_is_imported_and_always_warns() -> None:
    code = (
        "import sys, lwspy\n"
        "from lwspy._log import log\n"
        "log.debug('quiet %s', 1); log.info('quiet')\n"
        "assert 'logging' not in sys.modules and not log.isEnabledFor(10)\n"
        "log.warning('loud %s', 2)\n"
        "assert 'logging' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "loud 2" in out.stderr and "quiet" not in out.stderr


def test_records_compare_and_print_by_field() -> None:
    a = lwspy.Cao("h", 1, "198.51.100.1", 2, started=1.0)
    b = lwspy.Cao("h", 1, "198.51.100.1", 2, started=1.0)
    assert a == b and a != lwspy.Cao("h", 2, "198.51.100.1", 2, started=1.0)
    assert a != "h" and repr(a).startswith("Cao(host='h', port=1")
    assert lwspy.Conmon().dns_results == [] and lwspy.Conmon() == lwspy.Conmon()
    with pytest.raises(TypeError):
        hash(a)


def test_route_names_load_on_first_use() -> None:
    from lwspy import Route, RouteTable

    assert RouteTable().lookup("198.51.100.1") is None and Route.__name__ == "Route"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lwspy.nope  # type: ignore[attr-defined]  # noqa: B018
