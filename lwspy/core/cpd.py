"""``ctx.cpd``: captive portal detection driven from the loop (lws ``lws_system_cpd_*``).

The decisions are :class:`lwspy.system.cpd.Cpd`'s (sans-I/O); this module carries out its
actions: the kick and deadline timers, the probe (an HTTP GET through
:mod:`lwspy.roles.h1`, a client of the context's own loop, so its name goes through the
in-loop resolver and never blocks), the NETWORK result message and the CPD_PRE_TIME hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwspy.core.log import log
from lwspy.core.sul import Sul
from lwspy.system.cpd import RESULT_TEXT, Action, Cpd, CpdResult
from lwspy.system.smd import SmdClass
from lwspy.system.state import SystemState

if TYPE_CHECKING:
    from collections.abc import Callable

    from lwspy.core.context import Context
    from lwspy.roles.h1 import HttpRequest, HttpResponse
    from lwspy.system.smd import SmdPeer

__all__ = ["CpdService"]

_PROBE_MAX_BODY = 0
"""The probe needs the status only: its first body byte ends it (a login page is no 204)."""


class CpdService:
    """Captive portal detection of one context (``ctx.cpd``).

    With the context's ``cpd_url`` set, a probe runs at start-up, on every SMD NETWORK
    ``cpdcheck`` message (the netlink role posts one when a route with a gateway comes or
    goes; several in one loop pass make one probe, one during a probe makes one more after
    it) and on :meth:`start`. Each probe ends in a :attr:`result`, posted as NETWORK
    ``{"type":"cpd","result":"OK"|"Captive"|"No internet"}``; a later probe may change it.
    Until the first result, the system state is held at CPD_PRE_TIME (at most the probe
    timeout, ``cpd_timeout_secs``). Without ``cpd_url`` CPD is off: :attr:`result` stays
    UNKNOWN and :meth:`start` raises RuntimeError.
    """

    __slots__ = (
        "_ctx",
        "_deadline",
        "_holding",
        "_kick",
        "_machine",
        "_peer",
        "_request",
        "_unnotify",
        "url",
    )

    def __init__(self, ctx: Context, url: str | None, timeout: float) -> None:
        self._ctx = ctx
        self.url = url
        """The probe URL (the context's ``cpd_url``), None when CPD is off."""
        self._machine = Cpd(timeout)
        self._request: HttpRequest | None = None
        self._holding = False
        self._peer: SmdPeer | None = None
        self._unnotify: Callable[[], None] | None = None
        suls = ctx.pt.suls
        self._kick = Sul(suls, self._on_kick)
        self._deadline = Sul(suls, self._on_deadline)
        if url is not None:
            self._peer = ctx.smd.register(self._on_smd, SmdClass.NETWORK)
            self._unnotify = ctx.system.register_notifier(self._notify)
            self._do(self._machine.trigger(ctx.now()))  # the start-up probe

    @property
    def result(self) -> CpdResult:
        """The last probe's result (UNKNOWN before the first one ends)."""
        return self._machine.result

    @property
    def portal_url(self) -> str | None:
        """The Location of the redirect that made the result CAPTIVE_PORTAL, else None.

        What a device shows its user to log in (lws does not report it).
        """
        return self._machine.portal_url

    @property
    def probing(self) -> bool:
        """True while a probe runs."""
        return self._machine.probing

    @property
    def probes(self) -> int:
        """How many probes have started."""
        return self._machine.probes

    @property
    def timeout(self) -> float:
        """The bound on each probe, in seconds (``cpd_timeout_secs``)."""
        return self._machine.timeout

    def start(self) -> None:
        """Ask for a probe: it starts on the next loop pass (or after the running one)."""
        if self.url is None:
            raise RuntimeError("captive portal detection is off: the context has no cpd_url")
        self._ctx._check_alive()
        self._do(self._machine.trigger(self._ctx.now()))

    def close(self) -> None:
        """The context is going: stop the timers and the probe, post nothing more."""
        self._kick.cancel()
        self._deadline.cancel()
        if self._peer is not None:
            self._peer.unregister()
            self._peer = None
        if self._unnotify is not None:
            self._unnotify()
            self._unnotify = None
        req, self._request = self._request, None
        if req is not None:
            req.cancel()

    # -- what triggers and ends probes ---------------------------------------------------

    def _on_smd(self, cls: SmdClass, timestamp: float, payload: bytes) -> None:
        if b"cpdcheck" not in payload:  # cheap test first: most NETWORK messages are routes
            return
        import json  # not at import: `import lwspy` stays cheap

        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if isinstance(msg, dict) and "cpdcheck" in (msg.get("trigger"), msg.get("type")):
            self._do(self._machine.trigger(self._ctx.now()))

    def _notify(self, current: SystemState, step: SystemState) -> bool:
        """Hold CPD_PRE_TIME -> TIME_VALID until the first result."""
        if step is not SystemState.TIME_VALID or self._machine.result is not CpdResult.UNKNOWN:
            return True
        self._holding = True  # the start-up probe is queued or running: its result resumes
        return False

    def _on_kick(self) -> None:
        self._do(self._machine.kick(self._ctx.now()))

    def _on_deadline(self) -> None:
        req = self._request
        partial = req.response if req is not None else None
        now = self._ctx.now()
        if partial is not None and partial.status is not None:  # a head came, its body did not
            self._do(self._machine.answer(now, partial.status, partial.header("location")))
        else:
            self._do(self._machine.timed_out(now))

    def _on_response(self, resp: HttpResponse) -> None:
        if self._request is None or resp is not self._request.response:
            return  # a probe that was already ended
        now = self._ctx.now()
        if resp.status is not None or resp.bad_response:
            location = resp.header("location")
            self._do(self._machine.answer(now, resp.status, location, resp.bad_response))
        else:
            self._do(self._machine.failed(now))

    # -- the actions ---------------------------------------------------------------------

    def _do(self, actions: list[Action]) -> None:
        for action in actions:
            if action is Action.SCHEDULE_KICK:
                self._kick.schedule(0)
            elif action is Action.START_PROBE:
                self._probe()
            elif action is Action.END_PROBE:
                self._deadline.cancel()
                req, self._request = self._request, None
                if req is not None:
                    req.cancel()
            else:
                self._report()

    def _probe(self) -> None:
        from lwspy.roles.h1 import http_get

        machine = self._machine
        assert self.url is not None and machine.deadline is not None
        ctx = self._ctx
        self._deadline.schedule(max(0.0, machine.deadline - ctx.now()))
        # The request's own timeout is a backstop only: the deadline above ends the probe.
        self._request = http_get(
            ctx, self.url, self._on_response, timeout=machine.timeout * 2, max_body=_PROBE_MAX_BODY
        )

    def _report(self) -> None:
        result = self._machine.result
        log.info("lwspy: captive portal detection: %s", result.name)
        self._ctx.smd.post(SmdClass.NETWORK, {"type": "cpd", "result": RESULT_TEXT[result]})
        if self._holding:
            self._holding = False
            self._ctx.system.resume()

    def __repr__(self) -> str:
        return f"<CpdService {self.url!r} {self._machine!r}>"
