"""Protocols and callback reasons (lws ``struct lws_protocols``, ``enum lws_callback_reasons``)."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["Callback", "Protocol", "Reason"]


class Reason(IntEnum):
    """Why a protocol callback is called; the values are lws's ``LWS_CALLBACK_*`` numbers."""

    CLIENT_CONNECTION_ERROR = 1
    PROTOCOL_INIT = 27
    PROTOCOL_DESTROY = 28
    WSI_CREATE = 29
    WSI_DESTROY = 30
    RAW_RX = 59
    RAW_CLOSE = 60
    RAW_WRITEABLE = 61
    RAW_ADOPT = 62
    RAW_ADOPT_FILE = 63
    RAW_RX_FILE = 64
    RAW_WRITEABLE_FILE = 65
    RAW_CLOSE_FILE = 66
    EVENT_WAIT_CANCELLED = 71
    TIMER = 73
    RAW_CONNECTED = 101
    CONNECTING = 105


Callback = Callable[["Wsi | None", Reason, Any, Any], int]
"""The lws callback shape, ``cb(wsi, reason, user, data) -> int``; non-zero closes the wsi.

``wsi`` is None (and ``user`` too) for the context-level reasons; see the reference's
table of the callbacks each kind of wsi gets."""


def _no_user() -> None:
    return None


class Protocol:
    """A named callback protocol, as lws ``struct lws_protocols``.

    ``callback`` has the :data:`Callback` shape. ``user_factory`` makes the per-session
    ``user`` object handed to every callback of a wsi bound to this protocol (lws's
    per-session data), once per wsi, when it is made::

        from typing import Any

        from lwspy import Protocol, Reason, Wsi


        def echo(wsi: Wsi | None, reason: Reason, user: dict[str, int], data: Any) -> int:
            if wsi is not None and reason is Reason.RAW_RX:
                user["bytes"] = user.get("bytes", 0) + len(data)
                wsi.write(data)
            return 0


        proto = Protocol("echo", echo, user_factory=dict)
    """

    __slots__ = ("callback", "name", "user_factory")

    def __init__(
        self,
        name: str,
        callback: Callback,
        user_factory: Callable[[], Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"Protocol name must be a non-empty str, not {name!r}")
        if not callable(callback):
            raise TypeError(f"Protocol {name!r}: callback must be callable, not {callback!r}")
        if user_factory is not None and not callable(user_factory):
            raise TypeError(f"Protocol {name!r}: user_factory must be callable")
        self.name = name
        self.callback = callback
        self.user_factory: Callable[[], Any] = user_factory or _no_user

    def __repr__(self) -> str:
        return f"Protocol({self.name!r})"


def _internal_cb(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    return 0


INTERNAL = Protocol("lwspy-internal", _internal_cb)
"""The protocol of the loop's own wsis (wake fd, listeners, netlink): no callbacks reach users."""
