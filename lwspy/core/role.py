"""The role ops table (lws ``struct lws_role_ops``): how a wsi's fd is read, written, closed.

The loop calls only ``on_readable`` and ``on_writable``; a wsi calls ``send``,
``close_fd`` and reads the callback reasons. Adding a role means adding a subclass in
``lwspy.roles``; the loop does not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwspy.core.protocol import Reason
from lwspy.core.wsi import CLOSING

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["RX_CHUNK", "InternalRole", "RoleOps"]

RX_CHUNK = 65536
"""The most one read takes from an fd per readable event."""


class RoleOps:
    """Base ops table: a stream whose writes are buffered and flushed by the wsi.

    ``internal`` roles (listener, wake pipe, netlink) deliver no per-wsi callbacks.
    """

    name = "base"
    internal = False
    rx_reason = Reason.RAW_RX
    writeable_reason = Reason.RAW_WRITEABLE
    close_reason = Reason.RAW_CLOSE
    adopt_reason = Reason.RAW_ADOPT
    drains_at_close = False
    """Its ``on_readable`` reads and discards while a closing wsi flushes (``wsi._drain``)."""

    def on_readable(self, wsi: Wsi) -> None:
        """The fd is readable."""
        raise NotImplementedError

    def on_writable(self, wsi: Wsi) -> None:
        """The fd is writable: flush the buffer, then RAW_WRITEABLE if it was asked for."""
        if wsi._tx and not wsi._flush():
            return
        if wsi.state is CLOSING:  # the flush before close is done
            wsi._close_now(wsi.close_reason or "closed", graceful=True)
            return
        if wsi._want_writable:
            wsi._want_writable = False
            wsi._call(self.writeable_reason)
        wsi._update_events()

    def send(self, wsi: Wsi, data: bytes | bytearray | memoryview) -> int:
        """Write what the fd takes now; raises BlockingIOError when it takes nothing."""
        raise NotImplementedError

    def close_fd(self, wsi: Wsi) -> None:
        """Release the fd."""
        raise NotImplementedError

    def close_graceful(self, wsi: Wsi) -> None:
        """Release the fd so that what was written still reaches the peer (default: close)."""
        self.close_fd(wsi)


class InternalRole(RoleOps):
    """A role of the loop's own fds (listener, wake fd, netlink): read only, no callbacks.

    Nothing is ever written to them, so they are never watched for writability.
    """

    internal = True

    def on_writable(self, wsi: Wsi) -> None:  # pragma: no cover - never asked for
        pass

    def send(self, wsi: Wsi, data: bytes | bytearray | memoryview) -> int:  # pragma: no cover
        raise BlockingIOError

    def close_fd(self, wsi: Wsi) -> None:
        if wsi.sock is not None:
            wsi.sock.close()
