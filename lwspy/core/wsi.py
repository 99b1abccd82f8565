"""The wsi: one connection, listener, file or internal fd in the loop (lws ``struct lws``).

A wsi is driven by its role's ops table (``lwspy.roles``); the loop knows nothing else of
it. Everything a user calls on a connection is here: ``write``, ``callback_on_writable``,
``set_timer``, ``set_timeout``, ``close``.
"""

from __future__ import annotations

import errno as _errno
import os
import selectors
import socket
from collections import deque
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from lwspy.core.log import DEBUG, log
from lwspy.core.protocol import Protocol, Reason
from lwspy.core.sul import Sul
from lwspy.net.cao import CaoResult

if TYPE_CHECKING:
    from lwspy.core.client import ClientConnect
    from lwspy.core.context import Context
    from lwspy.core.role import RoleOps
    from lwspy.core.vhost import Vhost
    from lwspy.net.cao import Cao, Conmon

__all__ = ["Wsi", "WsiState", "errno_reason"]

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

_ERRNO_REASONS = {
    _errno.ECONNREFUSED: "connect refused",
    _errno.ETIMEDOUT: "timed out",
    _errno.EHOSTUNREACH: "host unreachable",
    _errno.ENETUNREACH: "network unreachable",
    _errno.ECONNRESET: "peer reset",
    _errno.EPIPE: "peer closed",
    _errno.ECONNABORTED: "connection aborted",
}


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
        "_events",
        "_route_id",
        "_rx_on",
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
        self.state = WsiState.PENDING
        self.is_client = False
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.close_reason: str | None = None
        self.conmon: Conmon | None = None
        self.tx_pending = 0
        self._tx: deque[memoryview] | None = None  # made on the first buffered write
        self._events = 0
        self._rx_on = False
        self._want_writable = False
        self._announced = False  # RAW_CONNECTED / RAW_ADOPT was delivered: RAW_CLOSE is owed
        self._created = False  # WSI_CREATE was delivered: WSI_DESTROY is owed
        self._timer: Sul | None = None
        self._timeout: Sul | None = None
        self._timeout_reason = "timeout"
        self._client: ClientConnect | None = None
        self._route_id: int | None = None  # the route the netlink role indexed this wsi by

    def __repr__(self) -> str:
        return (
            f"<Wsi {self.role.name} fd={self.fd} {self.state.name} "
            f"protocol={self.protocol.name!r} peer={self.peer}>"
        )

    # -- the user's API ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send ``data``: what cannot go now is buffered, in order, and sent as the fd allows.

        Returns ``len(data)`` (every byte is accepted), or 0 on a wsi that is closing or
        closed. A ``bytearray`` or writable ``memoryview`` is copied, so the caller may
        reuse it at once.
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
                self._fail_io(e)
                return 0
            if sent == n:
                return n
            self._queue(memoryview(data)[sent:])
            return n
        if state is CLOSING or state is CLOSED:
            return 0
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        n = view.nbytes
        if not n:
            return 0
        if not view.readonly:
            view = memoryview(bytes(view))
        if not self._tx and state is ESTABLISHED:
            sent = self._send_now(view)
            if sent < 0:
                return 0
            if sent == n:
                return n
            view = view[sent:]
        self._queue(view)
        return n

    def _queue(self, view: memoryview) -> None:
        """Buffer what the fd did not take, behind what is already buffered."""
        if self._tx is None:
            self._tx = deque()
        self._tx.append(view)
        self.tx_pending += view.nbytes
        if not self._events & EV_WRITE:
            self._update_events()

    def _send_now(self, data: bytes | memoryview) -> int:
        """Send what the fd takes now: the byte count, or -1 when the fd failed (closed)."""
        try:
            return self.role.send(self, data)
        except BlockingIOError:
            return 0
        except OSError as e:
            self._fail_io(e)
            return -1

    def callback_on_writable(self) -> None:
        """Ask for one RAW_WRITEABLE callback when the fd can take more data.

        Buffered data is flushed first: the callback comes when ``tx_pending`` is 0.
        """
        if self.state >= WsiState.CLOSING:
            return
        self._want_writable = True
        if not self._events & EV_WRITE:
            self._update_events()

    def set_timer(self, seconds: float) -> None:
        """One TIMER callback ``seconds`` from now (0: on the next pass); a new call moves it.

        ``cancel_timer()`` takes it off.
        """
        if self.state is WsiState.CLOSED:
            return
        if self._timer is None:
            self._timer = Sul(self.ctx.pt.suls, self._on_timer)
        self._timer.schedule(seconds)

    def cancel_timer(self) -> None:
        """Cancel a pending TIMER callback."""
        if self._timer is not None:
            self._timer.cancel()

    def set_timeout(self, seconds: float, reason: str = "timeout") -> None:
        """Close the wsi with ``close_reason=reason`` after ``seconds``; 0 cancels it."""
        if self.state is WsiState.CLOSED:
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
        """Close the wsi; buffered data is flushed first (bounded by ``timeout_secs``).

        The close callback (RAW_CLOSE, or CLIENT_CONNECTION_ERROR for a connect still in
        progress) is delivered exactly once. Closing a closed wsi does nothing.
        """
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, not {type(reason).__name__}")
        if self.state >= WsiState.CLOSING:
            return
        if self._tx and self.state is WsiState.ESTABLISHED:
            self.close_reason = reason
            self.state = WsiState.CLOSING
            self._rx_on = False
            self._update_events()
            self.set_timeout(self.ctx.timeout_secs, reason)
            return
        self._close_now(reason)

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
            self._close_now("callback")

    def _update_events(self) -> None:
        """Make the selector's interest match what the wsi needs now."""
        state = self.state
        if state is CLOSED or self.fd < 0:
            return
        if state is CONNECTING:
            want = EV_WRITE
        else:
            want = EV_READ if self._rx_on else 0
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
                self._fail_io(e)
                return False
            self.tx_pending -= sent
            if sent < head.nbytes:
                tx[0] = head[sent:]
                return False
            tx.popleft()
        self._tx = None  # an idle connection keeps no deque
        return True

    def _fail_io(self, exc: OSError) -> None:
        """An fd error: buffered data cannot go anywhere; close without flushing."""
        self._close_now(errno_reason(exc.errno) if exc.errno else str(exc))

    def _on_timer(self) -> None:
        if self.state < WsiState.CLOSING:
            self._call(Reason.TIMER)

    def _on_timeout(self) -> None:
        # A flush that timed out keeps the reason close() was given (_close_now keeps it).
        self._close_now(self._timeout_reason)

    def _close_now(self, reason: str) -> None:
        """Release the fd and deliver the close callbacks, exactly once."""
        if self.state is WsiState.CLOSED:
            return
        prev = self.state
        self.state = WsiState.CLOSED
        if self.close_reason is None:
            self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        if self._timeout is not None:
            self._timeout.cancel()
        self._tx = None
        self.tx_pending = 0
        self._want_writable = False
        if self._client is not None:
            self._client.start_sul.cancel()
            self._client.timeout_sul.cancel()
            now = self.ctx.pt.suls.clock()
            for cao in self._client.caos:
                if cao.result is CaoResult.PENDING:
                    cao.result = CaoResult.ERROR
                    cao.ended = now
        self.ctx.pt.forget(self)
        self.role.close_fd(self)
        if log.isEnabledFor(DEBUG):
            log.debug("close %r: %s", self, self.close_reason)
        try:
            if not self.role.internal:
                if self._announced:
                    self._call(self.role.close_reason)
                elif self.is_client and prev <= WsiState.CONNECTING:
                    self._call(Reason.CLIENT_CONNECTION_ERROR, self.close_reason)
                if self._created:
                    self._call(Reason.WSI_DESTROY)
        finally:  # even when on_callback_error re-raised: a closed wsi must not stay listed
            self.ctx._wsi_closed(self)
