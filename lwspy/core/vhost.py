"""Virtual hosts (lws ``struct lws_vhost``): a set of protocols and, optionally, a listener."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwspy.core.log import log
from lwspy.core.protocol import Protocol
from lwspy.core.sul import Sul
from lwspy.core.wsi import EV_READ, WsiState

if TYPE_CHECKING:
    from lwspy.core.context import Context
    from lwspy.core.wsi import Wsi

__all__ = ["Vhost"]

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


class Vhost:
    """A named set of protocols with an optional listening socket.

    Made by ``ctx.create_vhost()`` (users never call the constructor). Attributes:
    ``name``; ``ctx``; ``port`` (``int | None``: the bound port, None without a
    listener); ``listen_port`` (the same as a plain ``int``, for typed code: RuntimeError
    on a vhost that does not listen); ``iface`` (as given to ``create_vhost``);
    ``protocols`` (list of :class:`Protocol`); ``accept_protocol`` (the one accepted
    connections are bound to); ``listener`` (the listening wsi, or None); ``accepting``.
    """

    __slots__ = (
        "_accept_kind",
        "_accept_local",
        "_backoff",
        "_backoff_sul",
        "_explicit",
        "accept_protocol",
        "ctx",
        "iface",
        "listener",
        "name",
        "port",
        "protocols",
    )

    def __init__(
        self,
        ctx: Context,
        name: str,
        protocols: list[Protocol],
        accept_protocol: Protocol | None,
        iface: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.protocols = protocols
        self.accept_protocol = accept_protocol
        self.iface = iface
        self.port: int | None = None
        self.listener: Wsi | None = None
        self._explicit = False
        self._backoff = 0.0
        self._backoff_sul: Sul | None = None
        # The listener's (family, type, proto), for the sockets accept(2) gives it
        self._accept_kind = (0, 0, 0)
        # Their local name, when every one has the same (a listener bound to one address)
        self._accept_local: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"<Vhost {self.name!r} port={self.port}>"

    @property
    def listen_port(self) -> int:
        """The bound port of a listening vhost, typed ``int`` (``port`` is ``int | None``).

        RuntimeError when the vhost has no listener (made without ``port``).
        """
        port = self.port
        if port is None:
            raise RuntimeError(f"vhost {self.name!r} does not listen (made without port=)")
        return port

    def protocol(self, name: str | Protocol) -> Protocol:
        """The vhost's protocol called ``name`` (or that Protocol object, if it is one of them).

        Raises ValueError for a protocol the vhost does not have.
        """
        if isinstance(name, Protocol):
            if name in self.protocols:
                return name
            name = name.name
            raise ValueError(f"protocol {name!r} is not a protocol of vhost {self.name!r}")
        if not isinstance(name, str):
            raise TypeError(f"protocol must be a name or a Protocol, not {type(name).__name__}")
        for p in self.protocols:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.protocols) or "none"
        raise ValueError(f"unknown protocol {name!r} on vhost {self.name!r} (has: {known})")

    @property
    def accepting(self) -> bool:
        """True while the listener watches for connections (False while backing off)."""
        return self.listener is not None and bool(self.listener._events)

    def _pause_accept(self, exc: OSError) -> None:
        """Out of fds or memory: stop watching the listener for a while."""
        listener = self.listener
        assert listener is not None
        self._backoff = min(_BACKOFF_MAX, self._backoff * 2 or _BACKOFF_FIRST)
        log.warning(
            "vhost %r: accept failed (%s); pausing the listener %.2f s",
            self.name,
            exc,
            self._backoff,
        )
        self.ctx.pt.set_events(listener, 0)
        if self._backoff_sul is None:
            self._backoff_sul = Sul(self.ctx.pt.suls, self._resume_accept)
        self._backoff_sul.schedule(self._backoff)
        self.ctx._paused_vhosts.add(self)

    def _resume_accept(self) -> None:
        """Watch the listener again (after the backoff, or when a wsi freed an fd)."""
        self.ctx._paused_vhosts.discard(self)
        if self._backoff_sul is not None:
            self._backoff_sul.cancel()
        listener = self.listener
        if listener is not None and listener.state is WsiState.LISTENING and not listener._events:
            self.ctx.pt.set_events(listener, EV_READ)

    def _accept_ok(self) -> None:
        self._backoff = 0.0
