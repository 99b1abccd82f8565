"""The sans-I/O CPD machine (lwspy.system.cpd) on a fake clock: the table, coalescing,
deadlines, classification, a later probe changing the result."""

from __future__ import annotations

import pytest

from lwspy.system.cpd import TRANSITIONS, Action, Cpd, CpdEvent, CpdResult, CpdState, classify

A = Action


def probe_running(cpd: Cpd, now: float = 0.0) -> None:
    assert cpd.trigger(now) == [A.SCHEDULE_KICK]
    assert cpd.kick(now) == [A.START_PROBE]


def test_every_pair_not_in_the_table_is_ignored() -> None:
    for state in CpdState:
        for event in CpdEvent:
            cpd = Cpd()
            cpd.state = state
            if state in (CpdState.PROBING, CpdState.PROBING_QUEUED):
                cpd.deadline = 3.0
            method = {
                CpdEvent.TRIGGER: cpd.trigger,
                CpdEvent.KICK: cpd.kick,
                CpdEvent.END: cpd.failed,
            }
            actions = method[event](0.0)
            step = TRANSITIONS.get((state, event))
            if step is None:
                assert actions == [] and cpd.state is state
            else:
                assert cpd.state is step[0] and actions == list(step[1])


def test_triggers_before_the_kick_make_one_probe() -> None:
    cpd = Cpd(timeout=3)
    assert cpd.trigger(1.0) == [A.SCHEDULE_KICK]
    assert cpd.trigger(1.0) == []
    assert cpd.trigger(1.0) == []
    assert cpd.kick(1.0) == [A.START_PROBE]
    assert cpd.kick(1.0) == []  # a second kick with nothing queued
    assert cpd.probes == 1 and cpd.probing and cpd.deadline == 4.0


def test_a_trigger_during_a_probe_makes_exactly_one_more() -> None:
    cpd = Cpd()
    probe_running(cpd)
    assert cpd.trigger(0.5) == [] and cpd.state is CpdState.PROBING_QUEUED
    assert cpd.trigger(0.6) == []
    assert cpd.answer(1.0, 204) == [A.END_PROBE, A.REPORT, A.SCHEDULE_KICK]
    assert cpd.state is CpdState.QUEUED and cpd.result is CpdResult.INTERNET_OK
    assert cpd.kick(1.0) == [A.START_PROBE]
    assert cpd.answer(1.2, 204) == [A.END_PROBE, A.REPORT]
    assert cpd.state is CpdState.IDLE and cpd.probes == 2


def test_the_deadline_ends_a_silent_probe_and_not_before() -> None:
    cpd = Cpd(timeout=3)
    probe_running(cpd, now=10.0)
    assert cpd.deadline == 13.0
    assert cpd.timed_out(12.999) == []
    assert cpd.result is CpdResult.UNKNOWN and cpd.probing
    assert cpd.timed_out(13.0) == [A.END_PROBE, A.REPORT]
    assert cpd.result is CpdResult.NO_INTERNET and cpd.deadline is None
    assert cpd.timed_out(20.0) == []  # nothing running
    assert cpd.answer(20.0, 204) == []  # a late answer changes nothing
    assert cpd.result is CpdResult.NO_INTERNET


def test_a_later_probe_changes_the_result_and_the_portal_url() -> None:
    cpd = Cpd()
    probe_running(cpd)
    cpd.answer(0.1, 302, "http://portal.test/login")
    assert cpd.result is CpdResult.CAPTIVE_PORTAL
    assert cpd.portal_url == "http://portal.test/login"
    probe_running(cpd, 5.0)
    cpd.answer(5.1, 204, "http://ignored.test/")
    assert cpd.result is CpdResult.INTERNET_OK and cpd.portal_url is None
    probe_running(cpd, 6.0)
    cpd.answer(6.1, 200, "http://not-a-redirect.test/")  # Location without a 3xx
    assert cpd.result is CpdResult.CAPTIVE_PORTAL and cpd.portal_url is None
    probe_running(cpd, 7.0)
    cpd.failed(7.1)
    assert cpd.result is CpdResult.NO_INTERNET and cpd.portal_url is None


@pytest.mark.parametrize(
    ("status", "bad", "result"),
    [
        (204, False, CpdResult.INTERNET_OK),
        (200, False, CpdResult.CAPTIVE_PORTAL),
        (302, False, CpdResult.CAPTIVE_PORTAL),
        (307, False, CpdResult.CAPTIVE_PORTAL),
        (511, False, CpdResult.CAPTIVE_PORTAL),
        (None, True, CpdResult.CAPTIVE_PORTAL),
        (None, False, CpdResult.NO_INTERNET),
        (204, True, CpdResult.INTERNET_OK),  # the status decides once it is known
    ],
)
def test_classify(status: int | None, bad: bool, result: CpdResult) -> None:
    assert classify(status, bad) is result
    cpd = Cpd()
    probe_running(cpd)
    cpd.answer(0.1, status, None, bad)
    assert cpd.result is result


def test_timeout_is_checked() -> None:
    assert Cpd(1).timeout == 1.0
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Cpd(bad)
    for wrong in (True, "3", None):
        with pytest.raises(TypeError):
            Cpd(wrong)  # type: ignore[arg-type]


def test_repr_names_state_and_result() -> None:
    cpd = Cpd()
    probe_running(cpd)
    assert repr(cpd) == "<Cpd probing result=UNKNOWN probes=1>"
