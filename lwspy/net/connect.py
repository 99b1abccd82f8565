"""The Happy Eyeballs racer (RFC 8305), sans-I/O.

Theory of operation
-------------------
One :class:`Racer` per connect. It knows nothing of sockets or clocks: the driver
(``lwspy.core.client``) feeds it the resolver's answers, the outcome of each attempt and
the current time, and it answers with actions: :class:`Start` an attempt to an address,
:class:`Won` (one attempt connected; the others still in flight lost), :class:`GiveUp`.
After each call :attr:`Racer.deadline` says when :meth:`Racer.timer` is due next.

The rules (RFC 8305):

* AAAA answered first: start at once. A answered first while AAAA is outstanding: wait
  the Resolution Delay (§3, 50 ms) for it, then start with what there is. When the CAO
  database says IPv4 is the host's working family (``prefer_family``), the roles swap:
  an AAAA answer waits for A, so a path known to be broken is not started first just
  because its answer came first. An answer none of whose addresses is ``usable`` (no
  route) waits for the other family the same way.
* Start the next candidate a Connection Attempt Delay after the last start, or at once
  when an attempt fails (§5). The delay is per path: ``delay(address)``, which the driver
  derives from the CAO database's measured connect times (:func:`attempt_delay`).
* Addresses that arrive mid-race join the candidates not yet started (§4); the driver's
  ``order`` sorts them (RFC 6724, interleaving, the database's rerank), told the family
  of the attempt started last, so that the next attempt is of the other family when it
  has a candidate (§4: an A answer that comes after the first AAAA attempt started is
  interleaved, not queued behind every other AAAA address).
* The first attempt to connect wins; every other attempt in flight lost the race.
* The whole connect is bounded (``connect_timeout``): at the deadline, give up with
  "timed out". When every answer is in and every attempt failed, give up with the last
  attempt's reason (None when there was no address at all: the driver says why).

Everything that moves the machine is in this file; the transitions are the table
:data:`TRANSITIONS` (state, event) -> the states the event may lead to, which
:meth:`Racer._move` enforces. A TLS stage fits after ``Won`` as its own state between
``RACING`` and ``ESTABLISHED`` without touching the race.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Sequence
from enum import Enum

from lwspy._record import Record

__all__ = [
    "MAX_ATTEMPT_DELAY",
    "MIN_ATTEMPT_DELAY",
    "RESOLUTION_DELAY",
    "TRANSITIONS",
    "Action",
    "Event",
    "GiveUp",
    "Racer",
    "RacerState",
    "Start",
    "Won",
    "attempt_delay",
]

RESOLUTION_DELAY = 0.05
"""RFC 8305 §3: how long an A answer waits for the AAAA answer."""
MIN_ATTEMPT_DELAY = 0.01
"""The shortest Connection Attempt Delay a measured path gets (RFC 8305 §5 allows 10 ms)."""
MAX_ATTEMPT_DELAY = 2.0
"""The longest Connection Attempt Delay (RFC 8305 §5)."""


def attempt_delay(median_connect_us: int | None, default: float) -> float:
    """The Connection Attempt Delay for a path: ``default`` while nothing is measured, then
    twice the path's median connect time, bounded 10 ms .. 2 s (RFC 8305 §5: "historical
    RTT data")."""
    if median_connect_us is None:
        return default
    return min(MAX_ATTEMPT_DELAY, max(MIN_ATTEMPT_DELAY, 2 * median_connect_us / 1_000_000))


class RacerState(Enum):
    """Where a race is."""

    # Members compare by identity: hash them so too (Enum's hash is a Python call on the
    # name, three of them per transition check).
    __hash__ = object.__hash__

    RESOLVING = "RESOLVING"  # waiting for answers; nothing in flight, nothing to start
    RESOLUTION_DELAY = "RESOLUTION_DELAY"  # A is in, AAAA outstanding: wait a little
    RACING = "RACING"  # attempts started, or about to be
    ESTABLISHED = "ESTABLISHED"  # an attempt won (a TLS stage would come before this)
    FAILED = "FAILED"  # given up


class Event(Enum):
    """What the driver tells the racer."""

    __hash__ = object.__hash__  # as RacerState's

    ANSWER = "ANSWER"
    ATTEMPT_FAILED = "ATTEMPT_FAILED"
    ATTEMPT_CONNECTED = "ATTEMPT_CONNECTED"
    TIMER = "TIMER"


_R, _D, _G, _E, _F = (
    RacerState.RESOLVING,
    RacerState.RESOLUTION_DELAY,
    RacerState.RACING,
    RacerState.ESTABLISHED,
    RacerState.FAILED,
)

TRANSITIONS: dict[tuple[RacerState, Event], frozenset[RacerState]] = {
    (_R, Event.ANSWER): frozenset({_R, _D, _G, _F}),
    (_R, Event.TIMER): frozenset({_R, _F}),  # connect timeout
    (_D, Event.ANSWER): frozenset({_D, _G}),  # AAAA came in the delay; or A again
    (_D, Event.TIMER): frozenset({_D, _G, _F}),  # the delay ran out (or the connect timeout)
    (_G, Event.ANSWER): frozenset({_G}),  # more candidates join the race
    (_G, Event.ATTEMPT_FAILED): frozenset({_G, _R, _F}),  # next at once; wait; or give up
    (_G, Event.ATTEMPT_CONNECTED): frozenset({_E}),
    (_G, Event.TIMER): frozenset({_G, _F}),  # the next attempt; or the connect timeout
}
"""(state, event) -> the states it may lead to. Events in ESTABLISHED or FAILED are
ignored (a late outcome of an attempt already given up); any other pair is a driver bug."""


class Action(Record):
    """Something the driver must do."""

    __slots__ = ()


class Start(Action):
    """Start attempt ``n`` (numbered from 0 in start order) to ``address``."""

    __slots__ = ("n", "address")  # noqa: RUF023

    def __init__(self, n: int, address: str) -> None:
        self.n = n
        self.address = address


class Won(Action):
    """Attempt ``n`` connected; ``losers`` (in start order) were in flight: close them."""

    __slots__ = ("n", "losers")  # noqa: RUF023

    def __init__(self, n: int, losers: tuple[int, ...]) -> None:
        self.n = n
        self.losers = losers


class GiveUp(Action):
    """The connect failed: ``reason`` (None: no address at all); ``pending`` were in flight
    at the connect timeout: close them."""

    __slots__ = ("reason", "pending")  # noqa: RUF023

    def __init__(self, reason: str | None, pending: tuple[int, ...] = ()) -> None:
        self.reason = reason
        self.pending = pending


class Racer:
    """One connect's race: answers, attempt outcomes and time in; :class:`Action` out.

    ``families`` are the answers to wait for (AF_INET6 and/or AF_INET, as ints);
    ``order(addresses, after_family)`` sorts candidates not yet started (``after_family``:
    the family of the attempt started last, None before the first; RFC 8305 §4 wants the
    other family next); ``delay(address)`` is the
    Connection Attempt Delay after starting one; ``connect_timeout`` bounds it all from
    ``now``; ``prefer_family``'s answer starts the race at once, the other's waits the
    resolution delay for it (RFC 8305 §3 with AF_INET6, the default); ``usable(address)``
    (default: all are) says whether an address has a route at all.
    """

    __slots__ = (
        "_delay",
        "_delay_from",
        "_family",
        "_last_reason",
        "_next_start",
        "_order",
        "_prefer",
        "_resolution_due",
        "_timeout_due",
        "_usable",
        "attempts",
        "in_flight",
        "outstanding",
        "pool",
        "seen",
        "state",
    )

    def __init__(
        self,
        families: Sequence[int],
        order: Callable[[list[str], int | None], list[str]],
        delay: Callable[[str], float],
        now: float,
        connect_timeout: float,
        prefer_family: int = socket.AF_INET6,
        usable: Callable[[str], bool] | None = None,
    ) -> None:
        if not families:
            raise ValueError("a race waits for at least one answer")
        self.state = RacerState.RESOLVING
        self.outstanding: set[int] = set(families)  # answers not in yet
        self.pool: list[str] = []  # candidates not started, in order
        self.seen: set[str] = set()
        self._family: dict[str, int] = {}  # each candidate's family, as answered
        self.attempts: list[str] = []  # started, by attempt number
        self.in_flight: list[int] = []  # attempt numbers, in start order
        self._order = order
        self._prefer = int(prefer_family)
        self._usable = usable
        self._delay = delay
        self._next_start = now  # when the next candidate may start
        self._delay_from: tuple[str, float] | None = None  # (address, start): delay not asked
        self._resolution_due: float | None = None
        self._timeout_due = now + connect_timeout
        self._last_reason: str | None = None

    @property
    def deadline(self) -> float | None:
        """When :meth:`timer` is due next (None in ESTABLISHED or FAILED)."""
        state = self.state
        if state is _E or state is _F:
            return None
        due = self._timeout_due
        if state is _D and self._resolution_due is not None:
            due = min(due, self._resolution_due)
        elif state is _G and self.pool:
            due = min(due, self._next())
        return due

    # -- events --------------------------------------------------------------------------

    def answer(self, family: int, addresses: Sequence[str], now: float) -> list[Action]:
        """The resolver's answer for one family (possibly empty)."""
        return self.answers(((family, addresses),), now)

    def answers(self, answers: Sequence[tuple[int, Sequence[str]]], now: float) -> list[Action]:
        """Answers that came together (a hosts file, a cache): (family, addresses) each,
        sorted as one, so that none starts alone for having been handed in first."""
        if self._ignored():
            return []
        fresh: list[str] = []
        for family, addresses in answers:
            self.outstanding.discard(family)
            for a in addresses:
                if a not in self.seen:
                    self.seen.add(a)
                    self._family[a] = int(family)
                    fresh.append(a)
        if fresh:
            after = self._family[self.attempts[-1]] if self.attempts else None
            self.pool = self._order(self.pool + fresh, after)
        state = self.state
        out: list[Action] = []
        if state is _R:
            if not self.pool:
                nxt = _R if self.outstanding else self._give_up(out)
            elif self.outstanding and (
                self._prefer in self.outstanding  # only the other family answered yet
                or (self._usable is not None and not any(map(self._usable, self.pool)))
            ):
                self._resolution_due = now + RESOLUTION_DELAY  # RFC 8305 §3
                nxt = _D
            else:
                nxt = self._start_due(now, out, at_once=True)
        elif state is _D:
            # the preferred answer (even an empty one) ends the wait; a repeat does not
            nxt = _D if self._prefer in self.outstanding else self._start_due(now, out, True)
        else:  # RACING: new candidates join; start one if its turn has come
            nxt = self._start_due(now, out)
        return self._move(Event.ANSWER, nxt, out)

    def failed(self, n: int, reason: str, now: float) -> list[Action]:
        """Attempt ``n`` failed (``reason``: e.g. "connect refused")."""
        if self._ignored():
            return []
        self._check_in_flight(n)
        self.in_flight.remove(n)
        self._last_reason = reason
        out: list[Action] = []
        if self.pool:  # RFC 8305 §5: the next attempt at once, not only on the timer
            nxt = self._start_due(now, out, at_once=True)
        elif self.in_flight:
            nxt = _G
        elif self.outstanding:
            nxt = _R
        else:
            nxt = self._give_up(out)
        return self._move(Event.ATTEMPT_FAILED, nxt, out)

    def connected(self, n: int, now: float) -> list[Action]:
        """Attempt ``n`` connected: it wins."""
        if self._ignored():
            return []
        self._check_in_flight(n)
        losers = tuple(i for i in self.in_flight if i != n)
        self.in_flight = []
        self.pool = []
        return self._move(Event.ATTEMPT_CONNECTED, _E, [Won(n, losers)])

    def timer(self, now: float) -> list[Action]:
        """The time is ``now`` (at or after :attr:`deadline`, or early: nothing happens)."""
        if self._ignored():
            return []
        state = self.state
        out: list[Action] = []
        if now >= self._timeout_due:
            pending = tuple(self.in_flight)
            self.in_flight = []
            self.pool = []
            out.append(GiveUp("timed out", pending))
            nxt = _F
        elif state is _D:
            assert self._resolution_due is not None
            nxt = self._start_due(now, out, at_once=True) if now >= self._resolution_due else _D
        elif state is _G:
            nxt = self._start_due(now, out)
        else:
            nxt = _R
        return self._move(Event.TIMER, nxt, out)

    # -- internals -----------------------------------------------------------------------

    def _ignored(self) -> bool:
        return self.state is _E or self.state is _F

    def _check_in_flight(self, n: int) -> None:
        if n not in self.in_flight:
            raise RuntimeError(f"attempt {n} is not in flight (in flight: {self.in_flight})")

    def _start_due(self, now: float, out: list[Action], at_once: bool = False) -> RacerState:
        """Start the next candidate if its time has come (or ``at_once``); the state after."""
        if self.pool and (at_once or now >= self._next()):
            address = self.pool.pop(0)
            n = len(self.attempts)
            self.attempts.append(address)
            self.in_flight.append(n)
            self._delay_from = (address, now)  # asked only if another candidate waits
            out.append(Start(n, address))
        return _G

    def _next(self) -> float:
        """When the next candidate may start: the last start plus its path's delay."""
        if self._delay_from is not None:
            address, started = self._delay_from
            self._delay_from = None
            delay = self._delay(address)
            if not (math.isfinite(delay) and delay >= 0):
                raise ValueError(f"attempt delay for {address} must be >= 0, not {delay!r}")
            self._next_start = started + delay
        return self._next_start

    def _give_up(self, out: list[Action]) -> RacerState:
        out.append(GiveUp(self._last_reason))
        return _F

    def _move(self, event: Event, nxt: RacerState, out: list[Action]) -> list[Action]:
        allowed = TRANSITIONS.get((self.state, event))
        if allowed is None or nxt not in allowed:  # pragma: no cover - a bug in this file
            raise AssertionError(f"racer: {self.state.name} --{event.name}--> {nxt.name}")
        self.state = nxt
        return out
