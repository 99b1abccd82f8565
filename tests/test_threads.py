"""Threads: loop-only calls refuse other threads; call_from_thread runs in the loop, in order."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lwspy import Context, Reason
from tests.conftest import Recorder
from tests.helpers import in_thread


def test_loop_only_calls_from_another_thread_raise_and_name_call_from_thread() -> None:
    rec = Recorder("p")
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        with Context(protocols=[rec.protocol], netlink=False) as ctx:
            vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
            calls: list[Callable[[], Any]] = [
                lambda: ctx.connect("127.0.0.1", vh.listen_port),
                lambda: ctx.create_vhost("other"),
                lambda: ctx.adopt_socket(a),
                lambda: ctx.adopt_file(r),
                lambda: ctx.sul(lambda: None),
                lambda: ctx.call_later(0, lambda: None),
            ]
            for call in calls:
                exc = in_thread(call)
                assert isinstance(exc, RuntimeError), exc
                assert "ctx.call_from_thread" in str(exc)
            # nothing was half-done: no wsi, no vhost, no timer from the refused calls
            assert ctx.wsis == [] and list(ctx.vhosts) == ["default"]
            assert len(ctx.pt.suls) == 1  # the context's own start-up timer
            assert rec.reasons() == [Reason.PROTOCOL_INIT]
            # the loop's own thread may still make every one of them
            ctx.connect("127.0.0.1", vh.listen_port)
            ctx.call_later(0, lambda: None)
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_the_thread_that_services_the_loop_owns_it() -> None:
    with Context(netlink=False) as ctx:
        done = threading.Event()

        def worker() -> None:
            ctx.service(0)  # this thread is the loop's now
            ctx.call_later(0, done.set)
            ctx.service(0)
            ctx.service(0)

        assert in_thread(worker) is None
        assert done.is_set()
        with pytest.raises(RuntimeError, match="call_from_thread"):
            ctx.sul(lambda: None)  # the creating thread is no longer the loop's
        ctx.service(0)  # and takes it back by servicing it
        ctx.sul(lambda: None)


def test_call_from_thread_wakes_a_sleeping_loop_and_runs_calls_in_order() -> None:
    rec = Recorder("p")
    order: list[int] = []
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        loop = threading.get_ident()

        def step(n: int) -> None:
            assert threading.get_ident() == loop
            order.append(n)
            if n == 3:
                ctx.connect("127.0.0.1", vh.listen_port, protocol="p")

        def stop_when_connected(wsi: Any, reason: Reason, data: Any) -> int:
            if reason is Reason.RAW_CONNECTED:
                ctx.stop()
            return 0

        rec.on = stop_when_connected

        def other() -> None:
            for n in range(1, 4):
                ctx.call_from_thread(step, n)

        t = threading.Thread(target=other)
        t.start()
        ctx.run()  # sleeps in select with no timer due: only the wake-up can end it
        t.join()
        assert order == [1, 2, 3]
        assert Reason.RAW_CONNECTED in rec.reasons()


def test_a_call_queued_by_a_call_runs_on_the_next_pass() -> None:
    seen: list[str] = []
    with Context(netlink=False) as ctx:

        def first() -> None:
            seen.append("first")
            ctx.call_from_thread(seen.append, "second")

        ctx.call_from_thread(first)
        ctx.service(1000)
        assert seen == ["first"]
        ctx.service(1000)
        assert seen == ["first", "second"]


def test_call_from_thread_errors_are_handled_like_a_callback_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told: list[tuple[Any, Any, BaseException]] = []

    def on_error(wsi: Any, reason: Any, exc: BaseException) -> None:
        told.append((wsi, reason, exc))
        if isinstance(exc, KeyError):
            raise exc

    def boom(exc: Exception) -> None:
        raise exc

    ran: list[int] = []
    with Context(netlink=False, on_callback_error=on_error) as ctx:
        ctx.call_from_thread(boom, ValueError("v"))
        ctx.call_from_thread(ran.append, 1)
        ctx.service(1000)
        assert ran == [1]
        assert [(w, r, type(e)) for w, r, e in told] == [(None, None, ValueError)]
        assert "call_from_thread function" in caplog.text
        # on_callback_error re-raises: service() ends with it; the rest run on the next pass
        ctx.call_from_thread(boom, KeyError("k"))
        ctx.call_from_thread(ran.append, 2)
        with pytest.raises(KeyError):
            ctx.service(1000)
        assert ran == [1]
        ctx.service(1000)
        assert ran == [1, 2]


def test_call_from_thread_refuses_bad_arguments_and_a_destroyed_context() -> None:
    ctx = Context(netlink=False)
    with pytest.raises(TypeError, match="callable"):
        ctx.call_from_thread(3)  # type: ignore[arg-type]
    ctx.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        ctx.call_from_thread(print)


def test_listen_port_is_the_port_of_a_listener_only() -> None:
    with Context(netlink=False, protocols=[Recorder("p").protocol]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        assert vh.listen_port == vh.port and vh.listen_port > 0
        quiet = ctx.create_vhost("quiet")
        assert quiet.port is None
        with pytest.raises(RuntimeError, match="does not listen"):
            _ = quiet.listen_port


def test_call_from_thread_error_without_a_handler_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []
    with Context(netlink=False) as ctx:
        ctx.call_from_thread(int, "not a number")
        ctx.call_from_thread(ran.append, 1)
        ctx.service(1000)
    assert ran == [1]
    assert "call_from_thread function" in caplog.text and "ValueError" in caplog.text


def test_a_thread_posting_faster_than_the_loop_drains_is_refused_and_counted() -> None:
    from lwspy import USER_BASE, SmdClass

    cls = SmdClass(USER_BASE)
    got: list[bytes] = []
    with Context(netlink=False) as ctx:
        ctx.smd.register(lambda c, ts, payload: got.append(payload), cls)
        results: list[bool] = []
        assert (
            in_thread(lambda: results.extend(ctx.smd.post(cls, str(n)) for n in range(50))) is None
        )
        assert results == [True] * 40 + [False] * 10  # the default smd_queue_depth is 40
        ctx.service(0)
        assert got == [str(n).encode() for n in range(40)]
        assert ctx.smd.stats.dropped_full == 10
        assert ctx.smd.post(cls, "again")  # drained: room again
