"""lwspy: a pure-Python, selectors-based event loop in the style of libwebsockets.

Everything public is re-exported here; nothing else is public.
"""

from lwspy.core.context import CallbackErrorHandler, Context
from lwspy.core.protocol import Callback, Protocol, Reason
from lwspy.core.sul import Sul
from lwspy.core.vhost import Vhost
from lwspy.core.wsi import Wsi, WsiState
from lwspy.net.cao import Cao, CaoResult, Conmon
from lwspy.system.smd import Smd, SmdClass, SmdPeer, SmdStats
from lwspy.system.state import LwsSystem, SystemState

__all__ = [
    "Callback",
    "CallbackErrorHandler",
    "Cao",
    "CaoResult",
    "Conmon",
    "Context",
    "LwsSystem",
    "Protocol",
    "Reason",
    "Smd",
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
