"""Captive portal detection (lws ``lib/system/cpd``), sans-I/O: when to probe, what it means.

Theory of operation. A probe is one HTTP GET of the context's ``cpd_url``; the machine
here decides when a probe starts, and what its answer means, and nothing else: the
driver in ``lwspy.core.cpd`` makes the request (``lwspy.roles.h1``), owns the timers and
posts the messages. Everything that affects the state lives in this file: the states and
their transitions are the table :data:`TRANSITIONS`, which a reader can scan and a test can
walk. Each event method returns the :class:`Action` list the driver carries out, in order.

* ``IDLE``: no probe running, none asked for.
* ``QUEUED``: a probe was asked for (a trigger); it starts on the driver's next ``kick``, so
  several triggers within one loop pass (a burst of ``cpdcheck`` messages) make one probe.
* ``PROBING``: a probe is running; it ends in an answer, a failure or its deadline.
* ``PROBING_QUEUED``: a probe is running and a trigger came meanwhile: one more probe
  follows it (the network may have changed after this one started).

Any result replaces the one before (lws lets its first result stick). The time comes in
as an argument (``now``, monotonic seconds): the machine reads no clock.

>>> from lwspy.system.cpd import Action, Cpd, CpdResult
>>> cpd = Cpd(timeout=3.0)
>>> cpd.trigger(0.0)
[<Action.SCHEDULE_KICK: 1>]
>>> cpd.kick(0.0)
[<Action.START_PROBE: 2>]
>>> cpd.deadline
3.0
>>> cpd.answer(0.1, status=204)
[<Action.END_PROBE: 3>, <Action.REPORT: 4>]
>>> cpd.result is CpdResult.INTERNET_OK
True
"""

from __future__ import annotations

import enum
import math

__all__ = ["TRANSITIONS", "Action", "Cpd", "CpdEvent", "CpdResult", "CpdState", "classify"]


class CpdResult(enum.IntEnum):
    """What the last probe found (lws ``lws_cpd_result_t``)."""

    UNKNOWN = 0
    """No probe has ended yet."""
    INTERNET_OK = 1
    """The probe URL answered 204: the internet is reachable, unfiltered."""
    CAPTIVE_PORTAL = 2
    """Something else answered (any other status, a redirect, a malformed answer)."""
    NO_INTERNET = 3
    """No answer: DNS failure, connect failure, a reset or the probe timed out."""


RESULT_TEXT = {
    CpdResult.INTERNET_OK: "OK",
    CpdResult.CAPTIVE_PORTAL: "Captive",
    CpdResult.NO_INTERNET: "No internet",
}
"""The ``result`` text of the NETWORK ``{"type":"cpd","result":...}`` message (lws's words)."""


class CpdState(enum.Enum):
    """Where the probing is (see the module docstring)."""

    IDLE = "idle"
    QUEUED = "queued"
    PROBING = "probing"
    PROBING_QUEUED = "probing, one more queued"


class CpdEvent(enum.Enum):
    """What the machine is told."""

    TRIGGER = "trigger"  # start-up, a cpdcheck message, ctx.cpd.start()
    KICK = "kick"  # the driver's timer for a queued probe fired
    END = "end"  # the probe ended: an answer, a failure or its deadline


class Action(enum.IntEnum):
    """What the driver does after an event, in the order given."""

    SCHEDULE_KICK = 1
    """Schedule ``kick`` for the next loop pass (timer 0)."""
    START_PROBE = 2
    """Start the HTTP GET; end it by :attr:`Cpd.deadline` at the latest."""
    END_PROBE = 3
    """Release the probe's request (close its connection, cancel its deadline)."""
    REPORT = 4
    """Tell the world :attr:`Cpd.result` (the NETWORK message), release a CPD_PRE_TIME hold."""


_S, _E, _A = CpdState, CpdEvent, Action

TRANSITIONS: dict[tuple[CpdState, CpdEvent], tuple[CpdState, tuple[Action, ...]]] = {
    (_S.IDLE, _E.TRIGGER): (_S.QUEUED, (_A.SCHEDULE_KICK,)),
    (_S.QUEUED, _E.TRIGGER): (_S.QUEUED, ()),  # coalesced: the kick is already due
    (_S.QUEUED, _E.KICK): (_S.PROBING, (_A.START_PROBE,)),
    (_S.PROBING, _E.TRIGGER): (_S.PROBING_QUEUED, ()),
    (_S.PROBING_QUEUED, _E.TRIGGER): (_S.PROBING_QUEUED, ()),  # one more probe, not two
    (_S.PROBING, _E.END): (_S.IDLE, (_A.END_PROBE, _A.REPORT)),
    (_S.PROBING_QUEUED, _E.END): (_S.QUEUED, (_A.END_PROBE, _A.REPORT, _A.SCHEDULE_KICK)),
}
"""``(state, event) -> (next state, actions)``. A pair not listed is ignored: a kick with
nothing queued, an end with no probe running (a late answer after the deadline)."""


def classify(status: int | None, bad_response: bool = False) -> CpdResult:
    """The meaning of one probe's outcome.

    ``status`` is the HTTP status received (None when no response head arrived);
    ``bad_response`` says the server sent something that is no valid HTTP/1.1 response
    (malformed, a head too large, closed in the middle of it).

    >>> classify(204), classify(302), classify(None, bad_response=True), classify(None)
    (<CpdResult.INTERNET_OK: 1>, <CpdResult.CAPTIVE_PORTAL: 2>, \
<CpdResult.CAPTIVE_PORTAL: 2>, <CpdResult.NO_INTERNET: 3>)
    """
    if status is not None:
        return CpdResult.INTERNET_OK if status == 204 else CpdResult.CAPTIVE_PORTAL
    return CpdResult.CAPTIVE_PORTAL if bad_response else CpdResult.NO_INTERNET


class Cpd:
    """The probing state of one context: when to probe, and the last result.

    ``timeout`` (seconds) bounds each probe: :attr:`deadline` is set when one starts, and
    the driver calls :meth:`timed_out` then if no answer came first.
    """

    __slots__ = ("_timeout", "deadline", "portal_url", "probes", "result", "state")

    def __init__(self, timeout: float = 3.0) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a finite number of seconds > 0, not {timeout!r}")
        self._timeout = float(timeout)
        self.state = CpdState.IDLE
        self.result = CpdResult.UNKNOWN
        self.portal_url: str | None = None
        """The Location of the redirect that made the result CAPTIVE_PORTAL, else None."""
        self.deadline: float | None = None
        """When the running probe times out (monotonic seconds), None with none running."""
        self.probes = 0
        """Probes started so far."""

    @property
    def timeout(self) -> float:
        """The bound on each probe, in seconds."""
        return self._timeout

    @property
    def probing(self) -> bool:
        """True while a probe runs."""
        return self.state in (CpdState.PROBING, CpdState.PROBING_QUEUED)

    def _step(self, event: CpdEvent) -> list[Action]:
        step = TRANSITIONS.get((self.state, event))
        if step is None:
            return []
        self.state, actions = step
        return list(actions)

    def trigger(self, now: float) -> list[Action]:
        """A probe is asked for (start-up, ``cpdcheck``, ``ctx.cpd.start()``)."""
        return self._step(CpdEvent.TRIGGER)

    def kick(self, now: float) -> list[Action]:
        """The driver's timer for a queued probe fired: start it."""
        actions = self._step(CpdEvent.KICK)
        if actions:
            self.probes += 1
            self.deadline = now + self._timeout
        return actions

    def answer(
        self,
        now: float,
        status: int | None,
        location: str | None = None,
        bad_response: bool = False,
    ) -> list[Action]:
        """The probe ended with what the server sent (``status`` None: no response head).

        ``location`` is the response's Location header; it becomes :attr:`portal_url` when
        the status is a redirect (3xx) and the result CAPTIVE_PORTAL.
        """
        return self._end(classify(status, bad_response), status, location)

    def failed(self, now: float) -> list[Action]:
        """The probe ended without any answer: DNS or connect failure, reset, silence."""
        return self._end(CpdResult.NO_INTERNET, None, None)

    def timed_out(self, now: float) -> list[Action]:
        """The driver's deadline timer fired: the probe got no answer in time."""
        if self.deadline is None or now < self.deadline:
            return []
        return self._end(CpdResult.NO_INTERNET, None, None)

    def _end(self, result: CpdResult, status: int | None, location: str | None) -> list[Action]:
        actions = self._step(CpdEvent.END)
        if not actions:
            return []  # no probe running: a late answer changes nothing
        self.deadline = None
        self.result = result
        redirect = status is not None and 300 <= status < 400
        self.portal_url = location if redirect and result is CpdResult.CAPTIVE_PORTAL else None
        return actions

    def __repr__(self) -> str:
        return f"<Cpd {self.state.value} result={self.result.name} probes={self.probes}>"
