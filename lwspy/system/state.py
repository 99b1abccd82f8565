"""The lws_system state machine (lws ``lib/system/system.c``, ``lws_state_*``), sans-I/O.

A context climbs from CONTEXT_CREATED to OPERATIONAL one state at a time. Before each
step, every registered notifier is asked ``fn(current, next)``; one that returns False
holds the machine at ``current`` until it calls :meth:`LwsSystem.resume` (the netlink role
holds IFACE_COLDPLUG until its dumps end, CPD may hold CPD_PRE_TIME). Each completed step
is announced on SMD as SYSTEM_STATE ``{"state":"NAME"}``.

>>> from lwspy.system.state import LwsSystem, SystemState
>>> posted = []
>>> system = LwsSystem(lambda cls, payload: posted.append(payload["state"]) or True)
>>> system.transition(SystemState.IFACE_COLDPLUG)
True
>>> posted
['INITIALIZED', 'IFACE_COLDPLUG']
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from lwspy._log import log
from lwspy.system.smd import SmdClass

__all__ = ["LwsSystem", "Notifier", "SystemState"]


class SystemState(enum.IntEnum):
    """System states in lws order (lws ``LWS_SYSTATE_*``)."""

    CONTEXT_CREATED = 0
    """The context exists; nothing has been started."""
    INITIALIZED = 1
    """The vhosts and protocols are initialized."""
    IFACE_COLDPLUG = 2
    """The existing interfaces are being found (the netlink dumps)."""
    DHCP = 3
    """The network is configured (DHCP or static)."""
    CPD_PRE_TIME = 4
    """Captive portal detection before the time is known."""
    TIME_VALID = 5
    """The system time is trustworthy (NTP)."""
    CPD_POST_TIME = 6
    """Captive portal detection that needs a valid time (TLS)."""
    POLICY_VALID = 7
    """The application's policy is loaded."""
    REGISTERED = 8
    """The device is registered with its service."""
    AUTH1 = 9
    """First authentication step."""
    AUTH2 = 10
    """Second authentication step."""
    ONE_TIME_UPDATES = 11
    """One-time updates (firmware checks and the like) are done."""
    OPERATIONAL = 12
    """Up and running."""
    POLICY_INVALID = 13
    """The policy is being replaced; the machine climbs again from POLICY_VALID."""
    CONTEXT_DESTROYING = 14
    """The context is being destroyed; there is no way back."""


Notifier = Callable[[SystemState, SystemState], object]
"""``fn(current, next) -> bool``: return False to hold the machine at ``current``."""

# States reached in one step from wherever the machine is (the lws "jump" states).
_JUMPS = (SystemState.POLICY_INVALID, SystemState.CONTEXT_DESTROYING)


class LwsSystem:
    """The state machine of one context (``ctx.system``).

    ``post`` announces each step: it is called ``post(SmdClass.SYSTEM_STATE, {"state":
    NAME})`` (normally ``ctx.smd.post``) and its result is ignored, since nobody listening
    is fine.

    Targets: the machine climbs one state at a time, and never back down, with two
    exceptions. POLICY_INVALID and CONTEXT_DESTROYING are reached in one step from any
    state (nothing leaves CONTEXT_DESTROYING); from POLICY_INVALID the next step is back to
    POLICY_VALID, so any target from POLICY_VALID to OPERATIONAL may follow it. Any other
    target below the current state raises ValueError.
    """

    __slots__ = ("_busy", "_notifiers", "_post", "_state", "_target")

    def __init__(self, post: Callable[[SmdClass, dict[str, Any]], object]) -> None:
        if not callable(post):
            raise TypeError(f"post must be callable, not {post!r}")
        self._post = post
        self._state = SystemState.CONTEXT_CREATED
        self._target: SystemState | None = None
        self._notifiers: list[Notifier] = []
        self._busy = False  # a step is being decided: guards against re-entry

    @property
    def state(self) -> SystemState:
        """The current state."""
        return self._state

    @property
    def target(self) -> SystemState | None:
        """Where the current transition is heading, or None when none is under way."""
        return self._target

    @property
    def held(self) -> bool:
        """True when a notifier holds the machine short of its target."""
        return self._target is not None and not self._busy

    def register_notifier(self, fn: Notifier) -> Callable[[], None]:
        """Ask ``fn(current, next)`` before every step; return a function that unregisters it.

        ``fn`` returns False to hold the machine at ``current`` (it then calls
        :meth:`resume` when it is ready); any other value lets the step go ahead. Every
        notifier is asked about a step, even after one has held it, so that each can start
        what the step needs; they are asked again when the step is retried. A notifier
        that raises is logged and counts as agreeing.

        >>> # undo = ctx.system.register_notifier(lambda cur, nxt: nxt != DHCP or ready())
        """
        if not callable(fn):
            raise TypeError(f"notifier must be callable, not {fn!r}")
        self._notifiers.append(fn)
        done = False

        def unregister() -> None:
            nonlocal done
            if not done:
                done = True
                self._notifiers.remove(fn)

        return unregister

    def _check(self, target: object) -> SystemState:
        """Validate a target against the current state."""
        if isinstance(target, bool) or not isinstance(target, int):
            raise TypeError(f"target must be a SystemState, not {type(target).__name__}")
        target = SystemState(target)
        current = self._state
        if target == current or target in _JUMPS:
            if current is SystemState.CONTEXT_DESTROYING and target != current:
                raise ValueError("no transition out of CONTEXT_DESTROYING")
            return target
        if current is SystemState.POLICY_INVALID:
            if target < SystemState.POLICY_VALID:
                raise ValueError(
                    f"from POLICY_INVALID the machine climbs from POLICY_VALID, not {target.name}"
                )
        elif target < current:
            raise ValueError(f"cannot step back from {current.name} to {target.name}")
        return target

    def transition(self, target: SystemState) -> bool:
        """Step towards ``target``; True once it is reached, False while it is held.

        Called again with the same (or another valid) target, it retries a held step.
        Called from inside a notifier, it only changes the target (the running step goes
        on with it afterwards) and returns False.
        """
        target = self._check(target)
        if target == self._state:
            return True
        self._target = target
        if self._busy:
            return False
        return self._run()

    def resume(self) -> bool:
        """Retry a held step (the notifier that held it calls this when ready).

        Returns True when the target is reached or no transition was under way, False
        when the machine is held again. From inside a notifier it does nothing and returns
        False: the step being decided is not decided twice.
        """
        if self._busy:
            return False
        if self._target is None:
            return True
        return self._run()

    def _next(self, target: SystemState) -> SystemState:
        """The state one step from the current one towards ``target``."""
        if target in _JUMPS:
            return target
        if self._state is SystemState.POLICY_INVALID:
            return SystemState.POLICY_VALID
        return SystemState(self._state + 1)

    def _run(self) -> bool:
        """Take steps until the target is reached or a notifier holds the machine."""
        self._busy = True
        try:
            while True:
                current, target = self._state, self._target
                if target is None or current == target:
                    self._target = None
                    return True
                step = self._next(target)
                if not self._agree(current, step):
                    log.debug("lws_system: held at %s (towards %s)", current.name, step.name)
                    return False
                if self._target is not target:
                    continue  # a notifier moved the target: ask about the step towards it
                self._state = step
                log.debug("lws_system: %s -> %s", current.name, step.name)
                self._post(SmdClass.SYSTEM_STATE, {"state": step.name})
        finally:
            self._busy = False

    def _agree(self, current: SystemState, step: SystemState) -> bool:
        """Ask every notifier about one step; False when any of them holds it."""
        agreed = True
        for fn in tuple(self._notifiers):
            if fn not in self._notifiers:  # unregistered by an earlier notifier
                continue
            try:
                if fn(current, step) is False:
                    agreed = False
            except Exception:
                log.exception("lws_system: notifier %r raised on %s -> %s", fn, current, step)
        return agreed

    def __repr__(self) -> str:
        target = self._target.name if self._target is not None else None
        return f"<LwsSystem {self._state.name} target={target} held={self.held}>"
