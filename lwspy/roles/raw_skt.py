"""The raw socket role: a connected stream socket, client or accepted (lws ``roles/raw-skt``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwspy.core.protocol import Reason
from lwspy.core.role import RX_CHUNK, RoleOps

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["RAW_SKT", "RawSktRole"]

RAW_RX = Reason.RAW_RX


class RawSktRole(RoleOps):
    """Reads become RAW_RX, the peer's end of stream closes with "peer closed"."""

    name = "raw_skt"

    def on_readable(self, wsi: Wsi) -> None:
        if not wsi._rx_on:  # closed (flushing) by an earlier callback of this pass
            return
        sock = wsi.sock
        assert sock is not None
        try:
            data = sock.recv(RX_CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            wsi._fail_io(e)
            return
        if data:  # wsi._call, inlined: this is the hot path of every read
            try:
                ret = wsi.protocol.callback(wsi, RAW_RX, wsi.user, data)
            except Exception as exc:
                wsi.ctx._callback_failed(wsi, RAW_RX, exc)
                return
            if ret and wsi._rx_on:
                wsi._close_now("callback")
        else:
            # Half-close: nothing more will come; what we still owe the peer is flushed.
            wsi._rx_on = False
            wsi.close("peer closed")

    def send(self, wsi: Wsi, data: bytes | memoryview) -> int:
        sock = wsi.sock
        assert sock is not None
        return sock.send(data)

    def close_fd(self, wsi: Wsi) -> None:
        if wsi.sock is not None:
            wsi.sock.close()


RAW_SKT = RawSktRole()
