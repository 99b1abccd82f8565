"""The listen role: a vhost's listening socket; accepted sockets become raw_skt wsis.

When ``accept()`` fails for want of fds (EMFILE, ENFILE) or memory, the listener stops
watching its fd and backs off (50 ms doubling to 1 s) instead of spinning on a readable
socket it cannot serve; it resumes at once when a wsi of the context closes.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from lwspy.core.log import log
from lwspy.core.role import InternalRole
from lwspy.roles.raw_skt import RAW_SKT

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["ACCEPT_BURST", "LISTEN", "ListenRole"]

ACCEPT_BURST = 64
"""The most connections accepted per readable event, so one busy listener cannot starve the loop."""

_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ListenRole(InternalRole):
    """Accepts connections and adopts each into the vhost's accept protocol."""

    name = "listen"

    def on_readable(self, wsi: Wsi) -> None:
        sock = wsi.sock
        vh = wsi.vhost
        assert sock is not None and vh is not None and vh.accept_protocol is not None
        proto = vh.accept_protocol
        ctx = wsi.ctx
        # socket.accept() less its Python layer, which reads the listener's family and type
        # as enums and its timeout (_adopt makes the new socket non-blocking)
        family, kind, sproto = vh._accept_kind
        local = vh._accept_local
        for _ in range(ACCEPT_BURST):
            try:
                fd, _addr = sock._accept()  # type: ignore[attr-defined]  # accept(2), CPython 3.3+
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    vh._pause_accept(e)
                    return
                # ECONNABORTED, EPROTO, EPERM (firewall): that one connection is gone.
                log.debug("accept on %s: %s", vh.name, e)
                continue
            vh._accept_ok()
            conn = socket.socket(family, kind, sproto, fileno=fd)
            ctx._adopt(
                conn, vh, proto, RAW_SKT, local
            )  # it cannot fail: a new fd is not in the map


LISTEN = ListenRole()
