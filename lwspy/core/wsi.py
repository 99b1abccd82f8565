"""The wsi: one connection, listener, file or internal fd in the loop (lws ``struct lws``).

A wsi is driven by its role's ops table (``lwspy.roles``); the loop knows nothing else of
it. Everything a user calls on a connection is here: ``write``, ``callback_on_writable``,
``set_timer``, ``set_timeout``, ``close``.
"""

from __future__ import annotations

import _socket
import errno as _errno
import os
import selectors
import socket
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from lwspy.core.log import DEBUG, log
from lwspy.core.protocol import Protocol, Reason
from lwspy.core.sul import Sul

if TYPE_CHECKING:
    from lwspy.core.client import ClientConnect
    from lwspy.core.context import Context
    from lwspy.core.role import RoleOps
    from lwspy.core.vhost import Vhost
    from lwspy.net.cao import Cao, Conmon

__all__ = ["Wsi", "WsiState", "errno_reason", "sock_family", "sock_type"]

EV_READ = selectors.EVENT_READ
EV_WRITE = selectors.EVENT_WRITE


class WsiState(IntEnum):
    """Where a wsi is in its life; the order matters (``>= CLOSING`` means going away)."""

    PENDING = 0  # created by connect(), attempt not started yet
    CONNECTING = 1
    ESTABLISHED = 2
    LISTENING = 3
    CLOSING = 4  # close() asked for; flushing buffered data first
    CLOSED = 5


# Module-level aliases of the states: a global lookup, where ``WsiState.X`` is an enum
# attribute lookup on every hot-path check.
PENDING = WsiState.PENDING
CONNECTING = WsiState.CONNECTING
ESTABLISHED = WsiState.ESTABLISHED
CLOSING = WsiState.CLOSING
CLOSED = WsiState.CLOSED
_WSI_DESTROY = Reason.WSI_DESTROY
_CLIENT_CONNECTION_ERROR = Reason.CLIENT_CONNECTION_ERROR

_SMALL = 1024
"""Buffered pieces up to this size are copied into the tail chunk instead of queued apart."""
_CHUNK = 65536
"""The most bytes one tail chunk coalesces."""

_ERRNO_REASONS = {
    _errno.ECONNREFUSED: "connect refused",
    _errno.ETIMEDOUT: "timed out",
    _errno.EHOSTUNREACH: "host unreachable",
    _errno.ENETUNREACH: "network unreachable",
    _errno.ECONNRESET: "peer reset",
    _errno.EPIPE: "peer closed",
    _errno.ECONNABORTED: "connection aborted",
}

_PEER_GONE = (_errno.ECONNRESET, _errno.EPIPE)
"""Send errors after which the peer's last bytes may still be queued for reading."""
_LATE_RX = 1 << 18
"""The most read after such an error, before the close (the answer, not a bulk stream)."""
_LATE_RX_CHUNK = 65536


sock_type: Callable[[socket.socket], int] = _socket.socket.type.__get__
"""A socket's type as a plain int: ``sock.type`` without its enum conversion (10x dearer)."""
sock_family: Callable[[socket.socket], int] = _socket.socket.family.__get__
"""A socket's address family as a plain int (``sock.family`` without the enum)."""
_SOCK_STREAM = int(socket.SOCK_STREAM)


def errno_reason(err: int) -> str:
    """A short human-readable reason for an errno, as used in close and error reasons."""
    return _ERRNO_REASONS.get(err) or os.strerror(err).lower()


class Wsi:
    """One connection (or listener, adopted file, internal fd) in the loop.

    Users get a Wsi from ``ctx.connect()``, ``ctx.adopt_socket()``, ``ctx.adopt_file()`` or
    as the first argument of a callback, and never call the constructor. Attributes users
    read: ``ctx``, ``protocol``, ``vhost``, ``user``, ``state``, ``peer``, ``local``,
    ``tx_pending``, ``close_reason``, ``caos``, ``conmon`` (the API reference gives their
    types).
    """

    __slots__ = (
        "__weakref__",
        "_announced",
        "_client",
        "_created",
        "_drain",
        "_events",
        "_reset",
        "_route_id",
        "_rx_on",
        "_stream",
        "_timeout",
        "_timeout_reason",
        "_timer",
        "_tx",
        "_want_writable",
        "close_reason",
        "conmon",
        "ctx",
        "fd",
        "is_client",
        "local",
        "peer",
        "protocol",
        "role",
        "sock",
        "state",
        "tx_pending",
        "user",
        "vhost",
    )

    def __init__(
        self,
        ctx: Context,
        role: RoleOps,
        vhost: Vhost | None,
        protocol: Protocol,
        sock: socket.socket | None = None,
        fd: int = -1,
    ) -> None:
        self.ctx = ctx
        self.role = role
        self.vhost = vhost
        self.protocol = protocol
        self.user: Any = None
        self.sock = sock
        self.fd = sock.fileno() if sock is not None else fd
        self.state = PENDING
        self.is_client = False
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.close_reason: str | None = None
        self.conmon: Conmon | None = None
        self.tx_pending = 0
        self._tx: deque[memoryview | bytearray] | None = None  # made on the first buffered write
        self._events = 0
        self._rx_on = False
        # A byte stream (stream socket, pipe, tty): small buffered writes may be merged.
        # Never on datagram or seqpacket sockets or packet fds, whose writes are messages.
        # A client wsi (no fd yet) becomes a TCP socket; adopt_file decides for its fd.
        self._stream = sock_type(sock) == _SOCK_STREAM if sock is not None else fd < 0
        self._drain = False  # closing: what the peer sends is read and discarded
        self._want_writable = False
        self._announced = False  # RAW_CONNECTED / RAW_ADOPT was delivered: RAW_CLOSE is owed
        self._created = False  # WSI_CREATE was delivered: WSI_DESTROY is owed
        self._timer: Sul | None = None
        self._timeout: Sul | None = None
        self._timeout_reason = "timeout"
        self._client: ClientConnect | None = None
        self._route_id: int | None = None  # the route the netlink role indexed this wsi by
        # A reset that SO_ERROR reported (and so took from the kernel) as the connect
        # completed: the reads end in an end of stream, and the close says this instead.
        self._reset = 0

    def __repr__(self) -> str:
        return (
            f"<Wsi {self.role.name} fd={self.fd} {self.state.name} "
            f"protocol={self.protocol.name!r} peer={self.peer}>"
        )

    # -- the user's API ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send ``data``: what cannot go now is buffered, in order, and sent as the fd allows.

        Returns the number of bytes accepted: all of them, or 0 on a wsi that is closing
        or closed (or whose fd just failed: it is then closed from the loop, never inside
        this call). ``data`` is any buffer (bytes, bytearray, memoryview, array, of any
        shape, contiguous or not); the wsi owns what it accepted: only ``bytes`` are kept
        without a copy, everything else is copied before ``write`` returns, so the caller
        may change or reuse its buffer at once. On a datagram or seqpacket socket each
        ``write`` is one datagram, buffered or not.
        """
        state = self.state
        if type(data) is bytes and state is ESTABLISHED and not self._tx:
            n = len(data)  # the common case: immutable bytes, nothing queued ahead of them
            if not n:
                return 0
            sock = self.sock
            try:  # inline: this is the hot path of every echo
                sent = sock.send(data) if sock is not None else self.role.send(self, data)
            except BlockingIOError:
                sent = 0
            except OSError as e:
                self._fail_later(e)
                return 0
            if sent == n:
                return n
            self._queue(memoryview(data)[sent:])
            return n
        if state is CLOSING or state is CLOSED:
            return 0
        view = memoryview(data)
        if not view.c_contiguous:  # e.g. memoryview(b)[::2]: no fd takes it as it is
            view = memoryview(view.tobytes())
        elif view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        n = view.nbytes
        if not n:
            return 0
        if not self._tx and state is ESTABLISHED:
            try:  # send() copies into the kernel: no need to own these bytes
                sent = self.role.send(self, view)
            except BlockingIOError:
                sent = 0
            except OSError as e:
                self._fail_later(e)
                return 0
            if sent == n:
                return n
            view = view[sent:]
        self._queue(view)
        return n

    def _queue(self, view: memoryview) -> None:
        """Buffer what the fd did not take, behind what is already buffered.

        The buffer owns its bytes: a view of anything but ``bytes`` is copied (the caller
        may change its buffer later), and on a byte stream small pieces are copied into
        the tail chunk, so many small writes cost their bytes, not an object each. On a
        datagram fd every piece stays apart: merging two would merge two datagrams.
        """
        tx = self._tx
        if tx is None:
            tx = self._tx = deque()
        n = view.nbytes
        if n <= _SMALL and self._stream:
            tail = tx[-1] if tx else None
            if type(tail) is bytearray and len(tail) + n <= _CHUNK:
                tail += view
            else:
                tx.append(bytearray(view))
        elif type(view.obj) is bytes:
            tx.append(view)
        else:
            tx.append(memoryview(view.tobytes()))
        self.tx_pending += n
        if not self._events & EV_WRITE:
            self._update_events()

    def _fail_later(self, exc: OSError) -> None:
        """``write()`` met an fd error: close from the loop, not inside the caller.

        As lws does, the close callbacks never run nested in ``write()``: the caller's
        callback goes on with a wsi that is CLOSING (writes return 0), and RAW_CLOSE comes
        on the next pass.
        """
        if self.close_reason is None:
            err = self._reset or exc.errno  # a send after such a reset fails with EPIPE
            self.close_reason = errno_reason(err) if err else str(exc)
        self.state = CLOSING
        self._rx_on = False
        self._want_writable = False
        self._tx = None
        self.tx_pending = 0
        self._update_events()
        suls = self.ctx.pt.suls
        if exc.errno in _PEER_GONE and self._announced and self._stream and self.sock is not None:
            # The peer may have answered before it reset: read that first (as a plain
            # socket reader would), then close. The timeout sul of a CLOSING wsi is free.
            if self._timeout is not None:
                self._timeout.cancel()
            self._timeout = Sul(suls, self._close_after_send_error)
        elif self._timeout is None:
            self._timeout = Sul(suls, self._on_timeout)
        self._timeout.schedule(0)

    def _close_after_send_error(self) -> None:
        """A send met a reset or EPIPE: deliver what the kernel still holds, then close.

        The bytes the peer sent before its reset stay readable after it (the kernel hands
        out queued data before the error): they come as RX (at most ``_LATE_RX`` bytes),
        then the close callback, with the reason the send error gave.
        """
        sock = self.sock
        assert sock is not None
        left = _LATE_RX
        while left > 0 and self.state is CLOSING:
            try:
                data = sock.recv(min(_LATE_RX_CHUNK, left))
            except OSError:  # pragma: no cover - defensive: queued data, then 0, come first
                break
            if not data:
                break
            left -= len(data)
            self._call(self.role.rx_reason, data)
        self._close_now(self.close_reason or "closed")

    def callback_on_writable(self) -> None:
        """Ask for one RAW_WRITEABLE callback when the fd can take more data.

        Buffered data is flushed first: the callback comes when ``tx_pending`` is 0.
        """
        if self.state >= CLOSING:
            return
        self._want_writable = True
        if not self._events & EV_WRITE:
            self._update_events()

    def set_timer(self, seconds: float) -> None:
        """One TIMER callback ``seconds`` from now (0: on the next pass); a new call moves it.

        ``cancel_timer()`` takes it off.
        """
        if self.state is CLOSED:
            return
        if self._timer is None:
            self._timer = Sul(self.ctx.pt.suls, self._on_timer)
        self._timer.schedule(seconds)

    def cancel_timer(self) -> None:
        """Cancel a pending TIMER callback."""
        if self._timer is not None:
            self._timer.cancel()

    def set_timeout(self, seconds: float, reason: str = "timeout") -> None:
        """Close the wsi with ``close_reason=reason`` after ``seconds``; 0 cancels it.

        On a closing wsi it does nothing: the flush stays bounded by ``timeout_secs``.
        """
        if self.state >= CLOSING:
            return
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if self._timeout is None:
            self._timeout = Sul(self.ctx.pt.suls, self._on_timeout)
        if seconds == 0:
            self._timeout.cancel()
            return
        self._timeout_reason = reason
        self._timeout.schedule(seconds)

    def close(self, reason: str = "closed") -> None:
        """Close the wsi, delivering first what ``write()`` accepted.

        Buffered data is flushed (the wsi is CLOSING meanwhile: no more RAW_RX, but a
        stream socket still reads and discards what the peer sends), then the close callback
        (RAW_CLOSE, or CLIENT_CONNECTION_ERROR for a connect still in progress) is
        delivered, exactly once, and WSI_DESTROY after it. A connected stream socket is
        then shut down for writing and what the peer still sends is read and discarded
        until its end of stream, so the kernel delivers everything queued instead of
        answering unread data with a reset (lws ``LRS_SHUTDOWN``). The flush and the
        shutdown are each bounded by ``timeout_secs``; a peer that resets, ``destroy()``
        or that bound can still cut delivery short. Closing a closed wsi does nothing.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        state = self.state
        if state >= CLOSING:
            return
        if state is not ESTABLISHED:
            self._close_now(reason)
        elif not self._tx:
            self._close_now(reason, graceful=True)
        else:
            self.close_reason = reason
            # No more RAW_RX; but a stream socket goes on reading, and discards: a peer
            # that sends before it reads would otherwise never read what we flush.
            self._drain = self._rx_on and self._stream and self.role.drains_at_close
            self._rx_on = False
            self._update_events()
            self.set_timeout(self.ctx.timeout_secs, reason)
            self.state = CLOSING

    @property
    def caos(self) -> list[Cao]:
        """Every connect attempt of a client wsi, the HEAD (winning) one first; [] else."""
        return self._client.caos if self._client is not None else []

    def conmon_take(self) -> Conmon | None:
        """Hand over the CONMON figures once (lws ``lws_conmon_wsi_take``); then None."""
        cm, self.conmon = self.conmon, None
        return cm

    # -- what the roles and the loop call ------------------------------------------------

    def _call(self, reason: Reason, data: Any = None) -> None:
        """Deliver one callback; a non-zero return or an exception closes the wsi."""
        try:
            ret = self.protocol.callback(self, reason, self.user, data)
        except Exception as exc:
            self.ctx._callback_failed(self, reason, exc)
            return
        if ret and self.state is not CLOSED and self.state is not CLOSING:
            self.close("callback")

    def _update_events(self) -> None:
        """Make the selector's interest match what the wsi needs now."""
        state = self.state
        if state is CLOSED or self.fd < 0:
            return
        if state is CONNECTING:
            want = EV_WRITE
        else:
            want = EV_READ if self._rx_on or self._drain else 0
            if self._tx or self._want_writable:
                want |= EV_WRITE
        if want != self._events:
            self.ctx.pt.set_events(self, want)

    def _flush(self) -> bool:
        """Send buffered data; True when the buffer is empty."""
        tx = self._tx
        if tx is None:
            return True
        send = self.role.send
        while tx:
            head = tx[0]
            try:
                sent = send(self, head)
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno in _PEER_GONE and self.state is ESTABLISHED:
                    self._fail_later(e)  # what the peer sent before it went is read first
                else:
                    self._fail_io(e)
                return False
            self.tx_pending -= sent
            if sent < len(head):  # every queued piece is flat bytes: len() is its size
                if type(head) is bytearray:
                    del head[:sent]
                else:
                    tx[0] = head[sent:]
                return False
            tx.popleft()
        self._tx = None  # an idle connection keeps no deque
        return True

    def _fail_io(self, exc: OSError) -> None:
        """An fd error: buffered data cannot go anywhere; close without flushing."""
        self._close_now(errno_reason(exc.errno) if exc.errno else str(exc))

    def _on_timer(self) -> None:
        if self.state < CLOSING:
            self._call(Reason.TIMER)

    def _on_timeout(self) -> None:
        # A flush that timed out keeps the reason close() was given (_close_now keeps it);
        # a user's timeout drops what is buffered but still shuts the socket down cleanly.
        self._close_now(self._timeout_reason, graceful=self.state is ESTABLISHED)

    def _close_now(self, reason: str, graceful: bool = False) -> None:
        """Release the fd and deliver the close callbacks, exactly once.

        ``graceful``: the role shuts the fd down cleanly (what was sent still arrives);
        else it is closed at once (after an fd error, or a flush that cannot finish).
        """
        if self.state is CLOSED:
            return
        prev = self.state
        self.state = CLOSED
        # Not listed while its close callbacks run: ctx.wsis is "what is still open", and
        # destroy() called from RAW_CLOSE must not pick this wsi again.
        self.ctx._wsis.pop(self, None)
        if self.close_reason is None:
            self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        if self._timeout is not None:
            self._timeout.cancel()
        self._tx = None
        self.tx_pending = 0
        self._want_writable = False
        if self._client is not None:  # its timers, attempt sockets and DNS query go too
            self._client.abandon(self.ctx.pt.suls.clock())
        self.ctx.pt.forget(self)
        if graceful:
            self.role.close_graceful(self)
        else:
            self.role.close_fd(self)
        if log.isEnabledFor(DEBUG):
            log.debug("close %r: %s", self, self.close_reason)
        try:
            if not self.role.internal:
                try:
                    if self._announced:
                        self._call(self.role.close_reason)
                    elif self.is_client and prev <= CONNECTING:
                        self._call(_CLIENT_CONNECTION_ERROR, self.close_reason)
                finally:  # owed even when the close callback raised SystemExit
                    if self._created:
                        self._call(_WSI_DESTROY)
        finally:  # even when on_callback_error re-raised: a closed wsi must not stay listed
            self.ctx._wsi_closed(self)
