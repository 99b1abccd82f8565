"""The Happy Eyeballs racer on a fake clock: the exact start time of every attempt.

A small simulator plays the network: each address either connects, fails or hangs a given
time after its attempt starts; answers arrive at given times. Socket events of a moment
are delivered before its timer, as the loop does.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import pytest

from lwspy.net import sort
from lwspy.net.connect import (
    MAX_ATTEMPT_DELAY,
    MIN_ATTEMPT_DELAY,
    RESOLUTION_DELAY,
    TRANSITIONS,
    Action,
    GiveUp,
    Racer,
    RacerState,
    Start,
    Won,
    attempt_delay,
)

V6 = int(socket.AF_INET6)
V4 = int(socket.AF_INET)
HANG = None


class Sim:
    """Drive one racer to its end; record (time, address) of every start."""

    def __init__(
        self,
        answers: Sequence[tuple[float, int, list[str]]],
        net: dict[str, tuple[float, bool] | None],
        delay: float | Callable[[str], float] = 0.25,
        order: Callable[[list[str], int | None], list[str]] | None = None,
        timeout: float = 20.0,
        families: Sequence[int] = (V6, V4),
        prefer: int = V6,
        usable: Callable[[str], bool] | None = None,
    ) -> None:
        self.now = 0.0
        self.answers = sorted(answers, key=lambda a: a[0])
        self.net = net
        self.racer = Racer(
            families,
            order or (lambda pool, _: sorted(pool, key=lambda a: ":" not in a)),  # IPv6 first
            delay if callable(delay) else (lambda a: delay),
            now=0.0,
            connect_timeout=timeout,
            prefer_family=prefer,
            usable=usable,
        )
        self.starts: list[tuple[float, str]] = []
        self.outcomes: list[tuple[float, int, bool]] = []  # (time, attempt, connected)
        self.end: Action | None = None
        self.states: list[RacerState] = [self.racer.state]

    def _take(self, actions: list[Action]) -> None:
        self.states.append(self.racer.state)
        for act in actions:
            if isinstance(act, Start):
                self.starts.append((round(self.now, 6), act.address))
                fate = self.net[act.address]
                if fate is not None:
                    self.outcomes.append((self.now + fate[0], act.n, fate[1]))
            else:
                assert self.end is None
                self.end = act

    def run(self) -> Action:
        r = self.racer
        while self.end is None:
            t_out = min((o[0] for o in self.outcomes), default=None)
            t_ans = self.answers[0][0] if self.answers else None
            due = r.deadline
            cands = [t for t in (t_out, t_ans, due) if t is not None]
            assert cands, "the race is stuck"
            self.now = min(cands)
            if t_out is not None and t_out <= self.now:
                o = min(self.outcomes)
                self.outcomes.remove(o)
                if o[1] not in r.in_flight:  # given up or lost already
                    continue
                self._take(
                    r.connected(o[1], self.now) if o[2] else r.failed(o[1], "refused", self.now)
                )
            elif t_ans is not None and t_ans <= self.now:
                _, fam, addrs = self.answers.pop(0)
                self._take(r.answer(fam, addrs, self.now))
            else:
                self._take(r.timer(self.now))
        return self.end


A6, B6, C6 = "2001:db8::a", "2001:db8::b", "2001:db8::c"
A4, B4, C4 = "198.51.100.10", "198.51.100.11", "198.51.100.12"


def test_attempts_start_one_delay_apart_and_the_first_to_connect_wins() -> None:
    sim = Sim(
        [(0.0, V6, [A6, B6]), (0.0, V4, [A4, B4])],
        {A6: HANG, B6: HANG, A4: HANG, B4: (0.1, True)},
        order=lambda pool, _: pool,  # the driver's order: here, as answered
    )
    end = sim.run()
    assert sim.starts == [(0.0, A6), (0.25, B6), (0.5, A4), (0.75, B4)]
    assert end == Won(3, (0, 1, 2))
    assert sim.now == pytest.approx(0.85)
    assert sim.racer.state is RacerState.ESTABLISHED and sim.racer.deadline is None


def test_a_failed_attempt_starts_the_next_at_once() -> None:
    sim = Sim(
        [(0.0, V6, [A6, B6]), (0.0, V4, [A4])],
        {A6: (0.1, False), B6: HANG, A4: (0.02, True)},
    )
    end = sim.run()
    # A6 fails at 0.1: B6 at once; A4 one delay after B6's start, not after A6's.
    assert sim.starts == [(0.0, A6), (0.1, B6), (0.35, A4)]
    assert end == Won(2, (1,))


def test_an_earlier_attempt_can_still_win_after_later_ones_started() -> None:
    sim = Sim([(0.0, V6, [A6]), (0.0, V4, [A4])], {A6: (0.3, True), A4: HANG})
    assert sim.run() == Won(0, (1,))
    assert sim.starts == [(0.0, A6), (0.25, A4)]


def test_a_answering_first_waits_the_resolution_delay_for_aaaa() -> None:
    sim = Sim(
        [(0.0, V4, [A4]), (0.02, V6, [A6])],
        {A6: (0.01, True), A4: HANG},
    )
    assert sim.run() == Won(0, ())
    assert sim.starts == [(0.02, A6)]  # AAAA came within 50 ms: sorted with A, IPv6 first
    assert RacerState.RESOLUTION_DELAY in sim.states


def test_aaaa_after_the_resolution_delay_joins_the_race() -> None:
    sim = Sim(
        [(0.0, V4, [A4]), (0.2, V6, [A6])],
        {A6: (0.01, True), A4: HANG},
    )
    assert sim.run() == Won(1, (0,))
    assert sim.starts == [(RESOLUTION_DELAY, A4), (0.3, A6)]


def test_an_empty_aaaa_ends_the_resolution_delay_at_once() -> None:
    sim = Sim([(0.0, V4, [A4]), (0.01, V6, [])], {A4: (0.001, True)})
    assert sim.run() == Won(0, ())
    assert sim.starts == [(0.01, A4)]


def test_a_repeated_a_answer_does_not_end_the_resolution_delay() -> None:
    sim = Sim(
        [(0.0, V4, [A4]), (0.01, V4, [A4, B4]), (0.03, V6, [A6])],
        {A6: HANG, A4: HANG, B4: (0.0, True)},
        order=lambda pool, _: sorted(pool, key=lambda a: (":" not in a, a)),
    )
    assert sim.run() == Won(2, (0, 1))
    assert sim.starts == [(0.03, A6), (0.28, A4), (0.53, B4)]


def test_failures_while_aaaa_is_outstanding_wait_for_it() -> None:
    sim = Sim(
        [(0.0, V4, [A4]), (1.0, V6, [A6])],
        {A4: (0.1, False), A6: (0.01, True)},
    )
    assert sim.run() == Won(1, ())
    assert sim.starts == [(RESOLUTION_DELAY, A4), (1.0, A6)]
    assert RacerState.RESOLVING in sim.states[2:]  # waited, nothing in flight


def test_the_delay_is_the_started_paths_own() -> None:
    delays = {A6: 0.01, B6: 1.5, A4: 0.25}
    sim = Sim(
        [(0.0, V6, [A6, B6]), (0.0, V4, [A4])],
        {A6: HANG, B6: HANG, A4: (0.0, True)},
        delay=delays.__getitem__,
        order=lambda pool, _: pool,
    )
    sim.run()
    assert sim.starts == [(0.0, A6), (0.01, B6), (1.51, A4)]


def _rfc_order(pool: list[str], after: int | None) -> list[str]:
    """The driver's order without a database: RFC 6724 (global sources), RFC 8305 §4."""
    return sort.order(
        pool,
        lambda a: sort.Source("2001:db8:1::1" if ":" in a else "198.51.100.1"),
        lambda a: sort.RANK_UNKNOWN,
        after,
    )


def test_an_a_answer_after_the_first_aaaa_attempt_is_interleaved() -> None:
    # RFC 8305 §4: AAAA first, A 30 ms later (the usual DNS case); both AAAA paths dead.
    # The next attempt after an IPv6 one is IPv4: one delay to the live path, not two.
    sim = Sim(
        [(0.0, V6, [A6, B6]), (0.03, V4, [A4])],
        {A6: HANG, B6: HANG, A4: (0.001, True)},
        order=_rfc_order,
    )
    assert sim.run() == Won(1, (0,))
    assert sim.starts == [(0.0, A6), (0.25, A4)]
    assert sim.now == pytest.approx(0.251)


def test_late_answers_keep_the_families_alternating() -> None:
    # A first (the resolution delay runs out), AAAA after the first IPv4 attempt: IPv6
    # next; a third IPv6 address after that joins behind the IPv4 one now due.
    sim = Sim(
        [(0.0, V4, [A4, B4]), (0.1, V6, [A6]), (0.3, V6, [A6, B6])],
        {A4: HANG, B4: HANG, A6: HANG, B6: HANG},
        order=_rfc_order,
        timeout=1.0,
    )
    assert sim.run() == GiveUp("timed out", (0, 1, 2, 3))
    assert sim.starts == [
        (RESOLUTION_DELAY, A4),
        (RESOLUTION_DELAY + 0.25, A6),
        (RESOLUTION_DELAY + 0.5, B4),
        (RESOLUTION_DELAY + 0.75, B6),
    ]


def test_a_demoted_late_address_stays_behind_the_others() -> None:
    # Interleaving gives way to the database: a demoted IPv4 path is not pulled forward.
    def order(pool: list[str], after: int | None) -> list[str]:
        src = lambda a: sort.Source("2001:db8:1::1" if ":" in a else "198.51.100.1")  # noqa: E731
        rank = lambda a: sort.RANK_DEMOTED if a == A4 else sort.RANK_UNKNOWN  # noqa: E731
        return sort.order(pool, src, rank, after)

    sim = Sim(
        [(0.0, V6, [A6, B6]), (0.03, V4, [A4])],
        {A6: HANG, B6: HANG, A4: (0.001, True)},
        order=order,
    )
    sim.run()
    assert sim.starts == [(0.0, A6), (0.25, B6), (0.5, A4)]


def test_every_attempt_failing_gives_up_with_the_last_reason() -> None:
    sim = Sim(
        [(0.0, V6, [A6]), (0.0, V4, [A4, B4])],
        {A6: (0.1, False), A4: (0.1, False), B4: (0.3, False)},
    )
    end = sim.run()
    assert sim.starts == [(0.0, A6), (0.1, A4), (0.2, B4)]
    assert end == GiveUp("refused", ())
    assert sim.now == pytest.approx(0.5)


def test_no_address_at_all_gives_up_without_a_reason() -> None:
    sim = Sim([(0.0, V6, []), (0.01, V4, [])], {})
    assert sim.run() == GiveUp(None)
    assert sim.starts == []


def test_the_connect_timeout_bounds_everything() -> None:
    sim = Sim([(0.0, V6, [A6, B6]), (0.0, V4, [A4])], {A6: HANG, B6: HANG, A4: HANG}, timeout=2.0)
    assert sim.run() == GiveUp("timed out", (0, 1, 2))
    assert sim.starts == [(0.0, A6), (0.25, B6), (0.5, A4)]
    assert sim.now == 2.0


def test_the_connect_timeout_while_resolving() -> None:
    sim = Sim([(5.0, V6, [A6])], {A6: HANG}, timeout=1.0)
    assert sim.run() == GiveUp("timed out", ())
    assert sim.now == 1.0


def test_a_single_family_starts_at_once() -> None:
    sim = Sim([(0.0, V4, [A4, B4, C4])], {A4: HANG, B4: HANG, C4: (0.0, True)}, families=(V4,))
    sim.run()
    assert sim.starts == [(0.0, A4), (0.25, B4), (0.5, C4)]


def test_late_events_are_ignored_and_bad_ones_raise() -> None:
    r = Racer((V4,), lambda p, _: p, lambda a: 0.25, now=0.0, connect_timeout=5)
    assert r.timer(0.0) == []  # nothing to do yet: still resolving
    assert r.state is RacerState.RESOLVING
    assert r.answer(V4, [A4, B4], 0.0) == [Start(0, A4)]
    assert r.timer(0.1) == []  # early
    with pytest.raises(RuntimeError, match="not in flight"):
        r.failed(7, "refused", 0.1)
    assert r.connected(0, 0.2) == [Won(0, ())]
    assert r.failed(0, "refused", 0.3) == [] and r.connected(0, 0.3) == []
    assert r.answer(V6, [A6], 0.3) == [] and r.timer(9.0) == []
    with pytest.raises(ValueError, match="at least one answer"):
        Racer((), lambda p, _: p, lambda a: 0.25, now=0.0, connect_timeout=5)
    bad = Racer((V4,), lambda p, _: p, lambda a: float("nan"), now=0.0, connect_timeout=5)
    assert bad.answer(V4, [A4, B4], 0.0) == [Start(0, A4)]
    with pytest.raises(ValueError, match="attempt delay"):
        bad.deadline  # noqa: B018 - the delay is asked when B4's start time is needed


def test_answers_that_come_together_are_sorted_as_one() -> None:
    asked: list[str] = []
    r = Racer((V6, V4), lambda p, _: sorted(p), lambda a: asked.append(a) or 0.25, 0.0, 5)
    assert r.answers([(V6, [A6]), (V4, [A4, A4])], 0.0) == [Start(0, A4)]  # "1" < "2"
    assert r.pool == [A6] and asked == []
    assert r.deadline == 0.25 and asked == [A4]  # the delay is asked when it is needed
    lone = Racer((V4,), lambda p, _: p, lambda a: asked.append(a) or 0.25, 0.0, 5)
    lone.answer(V4, [B4], 0.0)
    assert lone.deadline == 5.0 and asked == [A4]  # nothing waits: never asked


def test_the_table_holds_every_live_state() -> None:
    live = {s for s, _ in TRANSITIONS}
    assert live == {RacerState.RESOLVING, RacerState.RESOLUTION_DELAY, RacerState.RACING}
    assert all(targets for targets in TRANSITIONS.values())


def test_attempt_delay_is_the_default_until_measured_then_bounded() -> None:
    assert attempt_delay(None, 0.25) == 0.25
    assert attempt_delay(1_000, 0.25) == MIN_ATTEMPT_DELAY
    assert attempt_delay(60_000, 0.25) == pytest.approx(0.12)
    assert attempt_delay(30_000_000, 0.25) == MAX_ATTEMPT_DELAY


def test_a_failure_with_others_in_flight_and_none_left_waits_for_them() -> None:
    sim = Sim([(0.0, V6, [A6]), (0.0, V4, [A4])], {A6: (0.6, True), A4: (0.05, False)})
    assert sim.run() == Won(0, ())
    assert sim.starts == [(0.0, A6), (0.25, A4)]
    assert sim.now == pytest.approx(0.6)


def test_with_ipv4_preferred_an_aaaa_answer_waits_for_a() -> None:
    sim = Sim(
        [(0.0, V6, [A6]), (0.01, V4, [A4])],
        {A6: HANG, A4: (0.001, True)},
        order=lambda pool, _: sorted(pool, key=lambda a: ":" in a),  # the database: IPv4 first
        prefer=V4,
    )
    assert sim.run() == Won(0, ())
    assert sim.starts == [(0.01, A4)]


def test_with_ipv4_preferred_a_late_a_answer_joins_after_the_delay() -> None:
    sim = Sim([(0.0, V6, [A6]), (0.5, V4, [A4])], {A6: (0.01, True), A4: HANG}, prefer=V4)
    assert sim.run() == Won(0, ())
    assert sim.starts == [(RESOLUTION_DELAY, A6)]


def test_an_answer_with_no_usable_address_waits_for_the_other_family() -> None:
    no_route = {A6}
    sim = Sim(
        [(0.0, V6, [A6]), (0.02, V4, [A4])],
        {A6: (0.0, False), A4: (0.001, True)},
        order=lambda pool, _: sorted(pool, key=lambda a: a in no_route),
        usable=lambda a: a not in no_route,
    )
    assert sim.run() == Won(0, ())
    assert sim.starts == [(0.02, A4)]  # not A6 at 0.0 just because its answer came first
    late = Sim(
        [(0.0, V6, [A6]), (1.0, V4, [A4])],
        {A6: (0.0, False), A4: (0.001, True)},
        usable=lambda a: a not in no_route,
    )
    assert late.run() == Won(1, ())
    assert late.starts == [(RESOLUTION_DELAY, A6), (1.0, A4)]  # tried, not dropped
