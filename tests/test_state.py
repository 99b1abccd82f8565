"""The lws_system state machine (lwspy.system.state): steps, holds, resume, re-entrancy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lwspy.system.smd import Smd, SmdClass
from lwspy.system.state import LwsSystem, SystemState

S = SystemState
LWS_ORDER = [
    "CONTEXT_CREATED",
    "INITIALIZED",
    "IFACE_COLDPLUG",
    "DHCP",
    "CPD_PRE_TIME",
    "TIME_VALID",
    "CPD_POST_TIME",
    "POLICY_VALID",
    "REGISTERED",
    "AUTH1",
    "AUTH2",
    "ONE_TIME_UPDATES",
    "OPERATIONAL",
    "POLICY_INVALID",
    "CONTEXT_DESTROYING",
]


class Posts:
    """A stand-in for ``smd.post`` that records the states announced."""

    def __init__(self, result: bool = True) -> None:
        self.calls: list[tuple[SmdClass, dict[str, Any]]] = []
        self.result = result

    def __call__(self, cls: SmdClass, payload: dict[str, Any]) -> bool:
        self.calls.append((cls, payload))
        return self.result

    @property
    def states(self) -> list[str]:
        assert all(cls is SmdClass.SYSTEM_STATE for cls, _ in self.calls)
        return [p["state"] for _, p in self.calls]


def record(log: list[Any], item: object, answer: bool = True) -> bool:
    """Append ``item`` to ``log`` and return ``answer``: a notifier in one expression."""
    log.append(item)
    return answer


def state_of(system: LwsSystem) -> SystemState:
    """The state, read through a call (mypy keeps no narrowing of a call across calls)."""
    return system.state


def snapshot(system: LwsSystem) -> tuple[SystemState, bool, SystemState | None]:
    """State, held and target, read through a call as :func:`state_of`."""
    return system.state, system.held, system.target


@pytest.fixture
def posts() -> Posts:
    return Posts()


@pytest.fixture
def system(posts: Posts) -> LwsSystem:
    return LwsSystem(posts)


def test_states_are_in_lws_order() -> None:
    assert [s.name for s in SystemState] == LWS_ORDER
    assert [s.value for s in SystemState] == list(range(15))


def test_initial_state(system: LwsSystem) -> None:
    assert system.state is S.CONTEXT_CREATED
    assert system.target is None
    assert not system.held
    assert system.resume() is True  # nothing under way


def test_steps_one_at_a_time_and_every_step_posts(system: LwsSystem, posts: Posts) -> None:
    asked: list[tuple[SystemState, SystemState]] = []
    system.register_notifier(lambda cur, nxt: record(asked, (cur, nxt), True))
    assert system.transition(S.OPERATIONAL) is True
    assert system.state is S.OPERATIONAL
    assert system.target is None
    assert not system.held
    assert posts.states == LWS_ORDER[1:13]
    assert asked == [(S(i), S(i + 1)) for i in range(12)]


def test_posting_nowhere_is_fine() -> None:
    posts = Posts(result=False)  # nobody listens to SYSTEM_STATE
    system = LwsSystem(posts)
    assert system.transition(S.DHCP) is True
    assert posts.states == ["INITIALIZED", "IFACE_COLDPLUG", "DHCP"]


def test_with_a_real_smd() -> None:
    smd = Smd()
    got: list[bytes] = []
    smd.register(lambda cls, ts, payload: got.append(payload), SmdClass.SYSTEM_STATE)
    system = LwsSystem(smd.post)
    system.transition(S.IFACE_COLDPLUG)
    assert got == []  # delivered by the loop, later
    smd.service()
    assert got == [b'{"state":"INITIALIZED"}', b'{"state":"IFACE_COLDPLUG"}']


def test_target_equal_to_current_does_nothing(system: LwsSystem, posts: Posts) -> None:
    asked: list[Any] = []
    system.register_notifier(lambda cur, nxt: record(asked, nxt, True))
    assert system.transition(S.CONTEXT_CREATED) is True
    assert posts.calls == []
    assert asked == []
    system.transition(S.DHCP)
    assert system.transition(S.DHCP) is True
    assert len(posts.calls) == 3


def test_int_targets_are_accepted(system: LwsSystem) -> None:
    assert system.transition(2) is True  # type: ignore[arg-type]
    assert system.state is S.IFACE_COLDPLUG


# --- holding and resuming --------------------------------------------------------------


class ColdplugHolder:
    """Holds IFACE_COLDPLUG until its (pretend) netlink dumps end, as the netlink role."""

    def __init__(self, system: LwsSystem) -> None:
        self.system = system
        self.dumps_done = False
        self.asked: list[tuple[SystemState, SystemState]] = []

    def __call__(self, current: SystemState, nxt: SystemState) -> bool:
        self.asked.append((current, nxt))
        return nxt is not S.IFACE_COLDPLUG or self.dumps_done

    def dumps_end(self) -> bool:
        self.dumps_done = True
        return self.system.resume()


def test_a_veto_holds_and_resume_continues(system: LwsSystem, posts: Posts) -> None:
    holder = ColdplugHolder(system)
    system.register_notifier(holder)
    assert system.transition(S.OPERATIONAL) is False
    assert state_of(system) is S.INITIALIZED
    assert system.held
    assert system.target is S.OPERATIONAL
    assert posts.states == ["INITIALIZED"]
    assert holder.asked == [(S.CONTEXT_CREATED, S.INITIALIZED), (S.INITIALIZED, S.IFACE_COLDPLUG)]
    assert "held=True" in repr(system)
    assert "target=OPERATIONAL" in repr(system)

    assert system.resume() is False  # still dumping: held again, asked again
    assert holder.asked[-1] == (S.INITIALIZED, S.IFACE_COLDPLUG)
    assert state_of(system) is S.INITIALIZED

    assert holder.dumps_end() is True
    assert snapshot(system) == (S.OPERATIONAL, False, None)
    assert posts.states == LWS_ORDER[1:13]
    assert "held=False" in repr(system)


def test_retry_by_calling_transition_again(system: LwsSystem, posts: Posts) -> None:
    holder = ColdplugHolder(system)
    system.register_notifier(holder)
    assert system.transition(S.OPERATIONAL) is False
    assert system.transition(S.OPERATIONAL) is False
    holder.dumps_done = True
    assert system.transition(S.OPERATIONAL) is True
    assert posts.states == LWS_ORDER[1:13]


def test_a_new_target_while_held(system: LwsSystem) -> None:
    holder = ColdplugHolder(system)
    system.register_notifier(holder)
    assert system.transition(S.OPERATIONAL) is False
    assert system.transition(S.IFACE_COLDPLUG) is False
    assert system.target is S.IFACE_COLDPLUG
    assert holder.dumps_end() is True
    assert system.state is S.IFACE_COLDPLUG


def test_every_notifier_is_asked_even_after_a_veto(system: LwsSystem) -> None:
    asked: list[str] = []
    system.register_notifier(lambda cur, nxt: record(asked, "a", False))
    system.register_notifier(lambda cur, nxt: record(asked, "b", True))
    assert system.transition(S.INITIALIZED) is False
    assert asked == ["a", "b"]


def test_only_false_holds(system: LwsSystem) -> None:
    system.register_notifier(lambda cur, nxt: None)
    system.register_notifier(lambda cur, nxt: 0)
    assert system.transition(S.DHCP) is True


def test_a_raising_notifier_counts_as_agreeing(
    system: LwsSystem, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(cur: SystemState, nxt: SystemState) -> bool:
        raise RuntimeError("notifier broke")

    system.register_notifier(broken)
    with caplog.at_level(logging.ERROR, logger="lwspy"):
        assert system.transition(S.IFACE_COLDPLUG) is True
    records = [r for r in caplog.records if r.name == "lwspy"]
    assert len(records) == 2
    assert all(r.exc_info is not None for r in records)
    assert "notifier broke" in caplog.text


def test_unregister_a_notifier(system: LwsSystem) -> None:
    asked: list[SystemState] = []
    unregister = system.register_notifier(lambda cur, nxt: record(asked, nxt, False))
    assert system.transition(S.INITIALIZED) is False
    unregister()
    unregister()  # idempotent
    assert system.resume() is True
    assert asked == [S.INITIALIZED]


def test_unregister_a_later_notifier_during_a_round(system: LwsSystem) -> None:
    asked: list[str] = []
    handles: dict[str, Any] = {}

    def first(cur: SystemState, nxt: SystemState) -> bool:
        asked.append("first")
        handles["second"]()
        return True

    def second(cur: SystemState, nxt: SystemState) -> bool:  # pragma: no cover - never asked
        asked.append("second")
        return False

    system.register_notifier(first)
    handles["second"] = system.register_notifier(second)
    assert system.transition(S.INITIALIZED) is True
    assert asked == ["first"]


def test_the_same_notifier_twice(system: LwsSystem) -> None:
    asked: list[SystemState] = []

    def fn(cur: SystemState, nxt: SystemState) -> bool:
        asked.append(nxt)
        return True

    undo1 = system.register_notifier(fn)
    system.register_notifier(fn)
    system.transition(S.INITIALIZED)
    assert asked == [S.INITIALIZED, S.INITIALIZED]
    undo1()
    system.transition(S.IFACE_COLDPLUG)
    assert asked[2:] == [S.IFACE_COLDPLUG]


# --- targets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "exc", "match"),
    [
        ("OPERATIONAL", TypeError, "must be a SystemState, not str"),
        (True, TypeError, "not bool"),
        (12.0, TypeError, "not float"),
        (None, TypeError, "not NoneType"),
        (15, ValueError, "15 is not a valid SystemState"),
        (-1, ValueError, "is not a valid SystemState"),
    ],
)
def test_bad_targets(system: LwsSystem, target: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        system.transition(target)
    assert system.state is S.CONTEXT_CREATED
    assert system.target is None


def test_no_stepping_back(system: LwsSystem, posts: Posts) -> None:
    system.transition(S.DHCP)
    with pytest.raises(ValueError, match="cannot step back from DHCP to INITIALIZED"):
        system.transition(S.INITIALIZED)
    assert system.state is S.DHCP
    assert len(posts.calls) == 3


def test_destroying_is_one_step_from_anywhere_and_final(system: LwsSystem, posts: Posts) -> None:
    asked: list[tuple[SystemState, SystemState]] = []
    system.register_notifier(lambda cur, nxt: record(asked, (cur, nxt), True))
    system.transition(S.INITIALIZED)
    assert system.transition(S.CONTEXT_DESTROYING) is True
    assert asked[-1] == (S.INITIALIZED, S.CONTEXT_DESTROYING)
    assert posts.states == ["INITIALIZED", "CONTEXT_DESTROYING"]
    assert system.transition(S.CONTEXT_DESTROYING) is True
    for target in (S.POLICY_INVALID, S.OPERATIONAL, S.CONTEXT_CREATED):
        with pytest.raises(ValueError, match=r"out of CONTEXT_DESTROYING|cannot step back"):
            system.transition(target)
    assert system.state is S.CONTEXT_DESTROYING


def test_destroying_while_held(system: LwsSystem) -> None:
    holder = ColdplugHolder(system)
    system.register_notifier(holder)
    assert system.transition(S.OPERATIONAL) is False
    assert system.transition(S.CONTEXT_DESTROYING) is True
    assert holder.asked[-1] == (S.INITIALIZED, S.CONTEXT_DESTROYING)


def test_policy_invalid_and_back(system: LwsSystem, posts: Posts) -> None:
    system.transition(S.OPERATIONAL)
    assert system.transition(S.POLICY_INVALID) is True
    with pytest.raises(ValueError, match="climbs from POLICY_VALID, not DHCP"):
        system.transition(S.DHCP)
    del posts.calls[:]
    assert system.transition(S.OPERATIONAL) is True
    assert posts.states == [
        "POLICY_VALID",
        "REGISTERED",
        "AUTH1",
        "AUTH2",
        "ONE_TIME_UPDATES",
        "OPERATIONAL",
    ]


def test_policy_invalid_is_one_step_from_below(system: LwsSystem, posts: Posts) -> None:
    system.transition(S.DHCP)
    assert system.transition(S.POLICY_INVALID) is True
    assert posts.states[-2:] == ["DHCP", "POLICY_INVALID"]
    assert system.transition(S.POLICY_VALID) is True
    assert posts.states[-1] == "POLICY_VALID"


# --- re-entrancy -----------------------------------------------------------------------


def test_resume_inside_a_notifier_does_not_double_step(system: LwsSystem, posts: Posts) -> None:
    results: list[bool] = []

    def eager(cur: SystemState, nxt: SystemState) -> bool:
        assert not system.held  # a step is being decided, not held
        results.append(system.resume())
        results.append(system.transition(S.OPERATIONAL))
        return True

    system.register_notifier(eager)
    assert system.transition(S.OPERATIONAL) is True
    assert posts.states == LWS_ORDER[1:13]  # each step once
    assert results == [False, False] * 12


def test_veto_and_resume_inside_the_same_notifier(system: LwsSystem, posts: Posts) -> None:
    calls = 0

    def confused(cur: SystemState, nxt: SystemState) -> bool:
        nonlocal calls
        calls += 1
        system.resume()  # ignored: this very step is being decided
        return False

    system.register_notifier(confused)
    assert system.transition(S.OPERATIONAL) is False
    assert calls == 1
    assert system.held
    assert posts.calls == []


def test_a_notifier_moves_the_target(system: LwsSystem, posts: Posts) -> None:
    asked: list[tuple[SystemState, SystemState]] = []

    def mover(cur: SystemState, nxt: SystemState) -> bool:
        asked.append((cur, nxt))
        if nxt is S.DHCP:
            assert system.transition(S.CONTEXT_DESTROYING) is False
        return True

    system.register_notifier(mover)
    assert system.transition(S.OPERATIONAL) is True
    assert system.state is S.CONTEXT_DESTROYING
    # the step to DHCP is not taken: the notifiers are asked about the new step instead
    assert asked[-2:] == [(S.IFACE_COLDPLUG, S.DHCP), (S.IFACE_COLDPLUG, S.CONTEXT_DESTROYING)]
    assert posts.states == ["INITIALIZED", "IFACE_COLDPLUG", "CONTEXT_DESTROYING"]


def test_a_notifier_lowers_the_target(system: LwsSystem, posts: Posts) -> None:
    def lower(cur: SystemState, nxt: SystemState) -> bool:
        if nxt is S.IFACE_COLDPLUG:
            system.transition(S.IFACE_COLDPLUG)
        return True

    system.register_notifier(lower)
    assert system.transition(S.OPERATIONAL) is True
    assert system.state is S.IFACE_COLDPLUG
    assert posts.states == ["INITIALIZED", "IFACE_COLDPLUG"]


def test_a_raising_post_leaves_the_machine_usable() -> None:
    fail = [True]

    def post(cls: SmdClass, payload: dict[str, Any]) -> bool:
        if fail[0]:
            raise RuntimeError("post failed")
        return True

    system = LwsSystem(post)
    with pytest.raises(RuntimeError, match="post failed"):
        system.transition(S.DHCP)
    assert state_of(system) is S.INITIALIZED
    fail[0] = False
    assert system.resume() is True
    assert system.state is S.DHCP


def test_bad_callables() -> None:
    with pytest.raises(TypeError, match="post must be callable"):
        LwsSystem("smd")  # type: ignore[arg-type]
    system = LwsSystem(Posts())
    with pytest.raises(TypeError, match="notifier must be callable"):
        system.register_notifier(None)  # type: ignore[arg-type]
