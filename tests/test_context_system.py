"""SMD and the lws_system state machine as the Context drives them."""

from __future__ import annotations

import json
import threading

import pytest

from lwspy import Context, SmdClass, SystemState
from tests.helpers import open_fds


def test_a_new_context_steps_to_operational_posting_each_state() -> None:
    seen: list[str] = []
    with Context(netlink=False) as ctx:
        assert ctx.system.state is SystemState.CONTEXT_CREATED
        ctx.smd.register(
            lambda c, ts, p: seen.append(json.loads(p)["state"]), SmdClass.SYSTEM_STATE
        )
        ctx.service(0)  # the boot timer steps the machine
        assert ctx.system.state is SystemState.OPERATIONAL
        ctx.service(0)  # and the loop delivers what the steps posted
    names = [s.name for s in SystemState]
    assert seen == names[names.index("INITIALIZED") : names.index("OPERATIONAL") + 1]
    assert ctx.system.state is SystemState.CONTEXT_DESTROYING


def test_a_notifier_holds_the_boot_until_it_resumes() -> None:
    with Context(netlink=False) as ctx:
        ready = False

        def hold(current: SystemState, nxt: SystemState) -> bool:
            return ready or nxt is not SystemState.DHCP

        ctx.system.register_notifier(hold)
        ctx.service(0)
        assert ctx.system.state is SystemState.IFACE_COLDPLUG and ctx.system.held
        ready = True
        assert ctx.system.resume()
        assert ctx.system.state is SystemState.OPERATIONAL


def test_post_from_another_thread_wakes_a_sleeping_loop() -> None:
    got: list[bytes] = []
    with Context(netlink=False) as ctx:
        ctx.service(0)
        ctx.smd.register(lambda c, ts, p: got.append(p), SmdClass.NETWORK)
        go = threading.Event()

        def poster() -> None:
            go.wait()
            ctx.smd.post(SmdClass.NETWORK, "hello")

        t = threading.Thread(target=poster)
        t.start()
        go.set()
        # One pass: the wake fd's event (1) plus the delivery (1). Without the wake-up the
        # pass would sleep its 10 s and count only the delivery.
        handled = ctx.service(10_000)
        t.join()
        assert got == [b"hello"]
        assert handled == 2


def test_smd_options_are_checked_before_any_fd_is_opened() -> None:
    before = open_fds()
    with pytest.raises(ValueError, match="queue_depth"):
        Context(smd_queue_depth=0)
    with pytest.raises(ValueError, match="ttl"):
        Context(smd_ttl=-1)
    assert open_fds() == before
    with Context(smd_queue_depth=2, smd_ttl=5) as ctx:
        assert ctx.smd.queue_depth == 2 and ctx.smd.ttl == 5


def test_post_after_destroy_touches_no_fd() -> None:
    ctx = Context(netlink=False)
    ctx.smd.register(lambda c, ts, p: None, SmdClass.NETWORK)
    ctx.destroy()
    ctx.smd.post(SmdClass.NETWORK, b"late")  # must not write to the closed (maybe reused) fd
    assert ctx.pt.wake_w == -1
