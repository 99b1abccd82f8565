"""The context's hook point: moments in a wsi's life that roles and subsystems follow.

The core announces them; it never calls a role or a subsystem by name. The netlink role
subscribes to index connections by their route, and the CAO database can take the same
moments. Subscribers run in subscription order, in the loop, and must not raise (the
core does not guard them: a subscriber is lwspy's own code, not a user callback).

>>> hooks = Hooks()
>>> seen = []
>>> unsubscribe = hooks.subscribe(established=seen.append)
>>> hooks.established("wsi")
>>> unsubscribe(); hooks.established("other"); seen
['wsi']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi
    from lwspy.net.route import RouteTable

__all__ = ["Hook", "Hooks", "RouteService"]

Hook = Callable[["Wsi"], None]
"""A subscriber: ``fn(wsi)``."""


class Hooks:
    """Subscribers to "connection established" (a wsi with a peer is up: connected or
    adopted) and "wsi closed" (any wsi, after its close callbacks).

    Each moment is a tuple of subscribers, so announcing one with nobody subscribed costs
    one empty loop.
    """

    __slots__ = ("_closed", "_established")

    def __init__(self) -> None:
        self._established: tuple[Hook, ...] = ()
        self._closed: tuple[Hook, ...] = ()

    def subscribe(
        self, *, established: Hook | None = None, closed: Hook | None = None
    ) -> Callable[[], None]:
        """Add subscribers; returns a function that removes exactly these again."""
        if established is not None:
            self._established += (established,)
        if closed is not None:
            self._closed += (closed,)

        def unsubscribe() -> None:
            if established is not None:
                self._established = _without(self._established, established)
            if closed is not None:
                self._closed = _without(self._closed, closed)

        return unsubscribe

    def established(self, wsi: Wsi) -> None:
        """Announce a connection that is up and has a peer."""
        for fn in self._established:
            fn(wsi)

    def closed(self, wsi: Wsi) -> None:
        """Announce a wsi that has closed."""
        for fn in self._closed:
            fn(wsi)


def _without(fns: tuple[Hook, ...], fn: Hook) -> tuple[Hook, ...]:
    """``fns`` less its first ``fn`` (a bound method compares equal, not identical)."""
    for i, other in enumerate(fns):
        if other == fn:
            return fns[:i] + fns[i + 1 :]
    return fns


class RouteService(Protocol):
    """What the context holds of the netlink role: the live table, and a way to close it
    (the role follows connections through :class:`Hooks`)."""

    @property
    def table(self) -> RouteTable:
        """The routing table the role keeps in step with the kernel."""

    def close(self) -> None:
        """Release the role's sockets and timers (the context is going away)."""
