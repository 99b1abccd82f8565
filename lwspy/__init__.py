"""lwspy: a pure-Python, selectors-based event loop in the style of libwebsockets.

Everything public is re-exported here (``from lwspy import ...``); nothing else is
public. ``python -m lwspy`` runs the ``lwspy`` console script.
"""

from typing import TYPE_CHECKING, Any

from lwspy.core.context import CallbackErrorHandler, Context
from lwspy.core.protocol import Callback, Protocol, Reason
from lwspy.core.retry import RetryPolicy
from lwspy.core.sul import Sul
from lwspy.core.vhost import Vhost
from lwspy.core.wsi import Wsi, WsiState
from lwspy.net.cao import Cao, CaoDb, CaoResult, CaoStats, Conmon
from lwspy.system.smd import MAX_PAYLOAD, USER_BASE, Smd, SmdCallback, SmdClass, SmdPeer, SmdStats
from lwspy.system.state import LwsSystem, SystemState

__all__ = [
    "MAX_PAYLOAD",
    "USER_BASE",
    "Callback",
    "CallbackErrorHandler",
    "Cao",
    "CaoDb",
    "CaoResult",
    "CaoStats",
    "Conmon",
    "Context",
    "CpdResult",
    "CpdService",
    "HttpRequest",
    "HttpResponse",
    "LwsSystem",
    "Protocol",
    "Reason",
    "RetryPolicy",
    "Route",
    "RouteTable",
    "Smd",
    "SmdCallback",
    "SmdClass",
    "SmdPeer",
    "SmdStats",
    "Sul",
    "SystemState",
    "Vhost",
    "Wsi",
    "WsiState",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lwspy.core.cpd import CpdService
    from lwspy.net.route import Route, RouteTable
    from lwspy.roles.h1 import HttpRequest, HttpResponse
    from lwspy.system.cpd import CpdResult

# Loaded on first use, not on import: `import lwspy` stays cheap.
_LAZY = {
    "Route": "lwspy.net.route",  # brings the netlink decoder
    "RouteTable": "lwspy.net.route",
    "CpdResult": "lwspy.system.cpd",
    "CpdService": "lwspy.core.cpd",
    "HttpRequest": "lwspy.roles.h1",
    "HttpResponse": "lwspy.roles.h1",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'lwspy' has no attribute {name!r}")
