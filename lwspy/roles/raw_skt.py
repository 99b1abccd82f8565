"""The raw socket role: a connected stream socket, client or accepted (lws ``roles/raw-skt``).

Its graceful close is lws's ``LRS_SHUTDOWN``: shut the write side down, then read and
discard until the peer's end of stream (bounded by ``timeout_secs``) before closing. Linux
answers a close with unread data by a reset that also drops what is still queued for the
peer; reading to the end first means everything ``write()`` accepted arrives. For the
same reason a closing wsi still reads (and discards) while it flushes, and ``destroy()``
reads what is queued before it closes a socket. A socket with nothing of ours
unacknowledged and nothing to read needs none of it: it is closed at once (a FIN).
"""

from __future__ import annotations

import socket
import sys
from array import array
from typing import TYPE_CHECKING

from lwspy.core.protocol import INTERNAL, Reason
from lwspy.core.role import RX_CHUNK, InternalRole, RoleOps
from lwspy.core.wsi import ESTABLISHED, EV_READ, Wsi, errno_reason, sock_type

if TYPE_CHECKING:
    from lwspy.core.context import Context

__all__ = ["RAW_SKT", "RAW_SKT_SHUTDOWN", "RawSktRole", "ShutdownRole"]

RAW_RX = Reason.RAW_RX
_DRAIN_READS = 16  # reads per readable event of a socket being shut down
_SCRATCH = bytearray(RX_CHUNK)  # where discarded bytes are read to; never looked at
_SIOCOUTQ = 0x5411  # linux/sockios.h (TIOCOUTQ): bytes sent and not yet acknowledged
_SIOCINQ = 0x541B  # linux/sockios.h (FIONREAD): bytes received and not yet read
_SIOCATMARK = 0x8905  # linux/sockios.h: the next byte to read is the urgent mark
_OUTQ = array("i", [0])  # the ioctls' answers (one buffer each: mypy narrows an index)
_INQ = array("i", [0])
_MARK = array("i", [0])
_SOCK_DGRAM = int(socket.SOCK_DGRAM)

if sys.platform.startswith("linux"):
    import fcntl

    def _idle(sock: socket.socket) -> bool:
        """Everything we sent was acknowledged and nothing waits to be read (or the peer
        has ended its stream): a close now is a FIN that can lose nothing of ours."""
        try:  # ioctls: a peek that finds nothing raises, at a higher cost
            fd = sock.fileno()
            fcntl.ioctl(fd, _SIOCOUTQ, _OUTQ)
            if _OUTQ[0]:
                return False
            fcntl.ioctl(fd, _SIOCINQ, _INQ)  # 0 at the end of the peer's stream too
            if _INQ[0]:
                return False
        except OSError:  # a listener, not a socket: the full path knows what to do
            return False
        try:  # SIOCINQ counts what is ahead of the urgent mark: 0 with the mark at the head
            fcntl.ioctl(fd, _SIOCATMARK, _MARK)
        except OSError:  # no urgent data but TCP's (UDP, AF_UNIX datagrams)
            return True
        return not _MARK[0]

else:  # pragma: no cover - SIOCOUTQ is Linux's

    def _idle(sock: socket.socket) -> bool:
        return False


class RawSktRole(RoleOps):
    """Reads become RAW_RX, the peer's end of stream closes with "peer closed"."""

    name = "raw_skt"
    drains_at_close = True

    def on_readable(self, wsi: Wsi) -> None:
        sock = wsi.sock
        assert sock is not None
        if not wsi._rx_on:  # closed, flushing (maybe by an earlier callback of this pass)
            if wsi._drain and _drain(sock):
                # The peer's end of stream (or an error, which the flush meets): stop.
                wsi._drain = False
                wsi._update_events()
            return
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
                wsi.close("callback")
        elif sock_type(sock) == _SOCK_DGRAM:  # an empty datagram is a datagram, not the end
            wsi._call(RAW_RX, data)
        else:
            # Half-close: nothing more will come; what we still owe the peer is flushed.
            # After a reset that the connect's SO_ERROR took, the end of stream is that reset.
            wsi._rx_on = False
            wsi.close(errno_reason(wsi._reset) if wsi._reset else "peer closed")

    def send(self, wsi: Wsi, data: bytes | memoryview | bytearray) -> int:
        sock = wsi.sock
        assert sock is not None
        return sock.send(data)

    def close_fd(self, wsi: Wsi) -> None:
        sock = wsi.sock
        if sock is not None:
            if wsi._stream and wsi.ctx._destroying:
                drain_queued(sock)  # so that the close is a FIN, not a reset
            sock.close()

    def close_graceful(self, wsi: Wsi) -> None:
        sock = wsi.sock
        if sock is None or not wsi._stream:  # a raw_skt wsi's _stream: a SOCK_STREAM socket
            self.close_fd(wsi)
            return
        shutdown(wsi.ctx, sock)


def shutdown(ctx: Context, sock: socket.socket) -> None:
    """Shut ``sock``'s write side down and close it once the peer has ended its stream.

    The socket is no wsi of the user's any more: an internal wsi of the shutdown role
    holds it until the peer's end of stream, an error or ``timeout_secs``. While the
    context is being destroyed there is no loop left to wait in: what is queued for
    reading is read (``drain_queued``) and the socket closed at once.

    The common case needs none of it: when the kernel holds nothing of ours unacknowledged
    (``SIOCOUTQ`` 0) and nothing waits to be read, the close is a FIN at once.
    """
    if _idle(sock):
        sock.close()
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # reset already, or never connected: nothing more can arrive
        sock.close()
        return
    if ctx._destroying:
        drain_queued(sock)
        sock.close()
        return
    if _drain(sock):
        sock.close()
        return
    wsi = Wsi(ctx, RAW_SKT_SHUTDOWN, None, INTERNAL, sock)
    wsi.state = ESTABLISHED
    ctx.pt.add(wsi, EV_READ)
    wsi.set_timeout(ctx.timeout_secs, "shutdown timed out")


def drain_queued(sock: socket.socket) -> None:
    """Read and discard what is queued for reading now, then return (before a close).

    Linux answers the close of a socket with unread data by a reset, which also drops
    what it still holds for the peer; with nothing unread the close is a FIN, sent after
    that data. Reads stop at an empty queue, the peer's end of stream or an error, and
    take at most twice the receive buffer size (what the queue holds, and as much again
    that the peer had queued behind it), so a peer that keeps sending cannot hold the
    caller.
    """
    try:
        left = 2 * sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        while left > 0:
            n = sock.recv_into(_SCRATCH)
            if not n:
                return
            left -= n
    except OSError:  # BlockingIOError: the queue is empty; else: reset, never connected
        return


def _drain(sock: socket.socket) -> bool:
    """Read and discard what has arrived; True at the peer's end of stream (or an error)."""
    for _ in range(_DRAIN_READS):
        try:
            if not sock.recv_into(_SCRATCH):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True
    return False


class ShutdownRole(InternalRole):
    """A raw_skt socket after its close: write side shut down, reads discarded until EOF."""

    name = "raw_skt_shutdown"

    def on_readable(self, wsi: Wsi) -> None:
        sock = wsi.sock
        assert sock is not None
        if _drain(sock):
            wsi._close_now("peer closed")

    def close_fd(self, wsi: Wsi) -> None:
        sock = wsi.sock
        assert sock is not None
        drain_queued(sock)  # what came since: read, so that the close is a FIN, not a reset
        sock.close()


RAW_SKT = RawSktRole()
RAW_SKT_SHUTDOWN = ShutdownRole()
