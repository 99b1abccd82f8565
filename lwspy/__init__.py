"""lwspy: a pure-Python, selectors-based event loop in the style of libwebsockets.

Everything public is re-exported here; nothing else is public.
"""

from lwspy.core.context import CallbackErrorHandler, Context
from lwspy.core.protocol import Callback, Protocol, Reason
from lwspy.core.sul import Sul
from lwspy.core.vhost import Vhost
from lwspy.core.wsi import Wsi, WsiState
from lwspy.net.cao import Cao, CaoResult, Conmon

__all__ = [
    "Callback",
    "CallbackErrorHandler",
    "Cao",
    "CaoResult",
    "Conmon",
    "Context",
    "Protocol",
    "Reason",
    "Sul",
    "Vhost",
    "Wsi",
    "WsiState",
]

__version__ = "0.1.0"
