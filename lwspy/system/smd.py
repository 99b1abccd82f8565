"""SMD, the System Message Distribution queue (lws ``lib/system/smd``), sans-I/O.

Peers register a callback with a class filter; anyone posts a small message of one or more
classes; the loop calls :meth:`Smd.service` once per pass to deliver what was queued.
Delivery never happens inside :meth:`Smd.post`, which is the one method that may be called
from any thread.

What a message reaches is fixed when it is posted: the peers registered then whose filter
matches its class. A peer registered later never gets it and does not hold it in the queue
(lws bug: late peers pin queued messages until the TTL); a peer that unregisters before
delivery gets nothing more.

>>> from lwspy.system.smd import Smd, SmdClass
>>> smd = Smd()
>>> peer = smd.register(lambda cls, ts, payload: print(cls.name, payload), SmdClass.NETWORK)
>>> smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
True
>>> smd.service()
NETWORK b'{"type":"cpdcheck"}'
1
>>> peer.unregister()
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from lwspy._log import log
from lwspy._record import Record

__all__ = [
    "MAX_PAYLOAD",
    "USER_BASE",
    "Smd",
    "SmdCallback",
    "SmdClass",
    "SmdPeer",
    "SmdStats",
]


MAX_PAYLOAD = 384
"""The largest payload, in bytes after encoding (lws ``LWS_SMD_MAX_PAYLOAD``)."""

USER_BASE = 1 << 24
"""The first bit of the user classes (lws ``LWSSMDCL_USER_BASE_BITNUM`` = 24)."""


class SmdClass(enum.IntFlag):
    """Message classes, lws ``LWSSMDCL_*`` values; a filter is an OR of them.

    Bits from :data:`USER_BASE` (``1 << 24``) up are free for the application:
    ``SmdClass(1 << 24)`` is a valid class. Bits 4 to 23 are reserved for lws's future system
    classes and are refused.
    """

    INTERACTION = 1 << 0
    """User interaction, such as buttons or touch."""
    SYSTEM_STATE = 1 << 1
    """lws_system state changes, as ``{"state":"NAME"}``."""
    NETWORK = 1 << 2
    """Network events, such as route and link changes, CPD results, ``cpdcheck`` requests."""
    METRICS = 1 << 3
    """Metrics reports."""


_SYSTEM_BITS = sum(member.value for member in SmdClass)  # distinct single bits
_RESERVED_BITS = (USER_BASE - 1) & ~_SYSTEM_BITS  # bits 4 to 23: lws's future system classes


class SmdStats(Record):
    """A snapshot of the counters of one :class:`Smd` (read :attr:`Smd.stats` again to update).

    ``posted`` counts messages queued; ``delivered`` one per peer per message (a callback
    that raised still counts); ``dropped_full`` posts refused because the queue was full;
    ``expired`` messages dropped undelivered because they outlived the TTL. A post refused
    because nobody listens to its class is not counted anywhere.
    """

    __slots__ = ("posted", "delivered", "dropped_full", "expired")  # noqa: RUF023

    def __init__(
        self, posted: int = 0, delivered: int = 0, dropped_full: int = 0, expired: int = 0
    ) -> None:
        self.posted = posted
        self.delivered = delivered
        self.dropped_full = dropped_full
        self.expired = expired


SmdCallback = Callable[[SmdClass, float, bytes], object]
"""A peer's callback, ``callback(cls, timestamp, payload)``; its return value is ignored."""

# The peers a class reaches, fixed when a message is posted: ((callback, peer), ...).
_Targets = tuple[tuple[SmdCallback, "SmdPeer"], ...]
# A queued message: (class, timestamp, payload, its recipients).
_Msg = tuple[SmdClass, float, bytes, _Targets]
_ROUTES_MAX = 1024  # classes remembered; user classes may come in many combinations


def _nothing() -> None:
    """The default ``wake``: a loop that polls :attr:`Smd.pending` needs no wake-up."""


class SmdPeer:
    """A registration made by :meth:`Smd.register`; :meth:`unregister` ends it."""

    __slots__ = ("_callback", "_classes", "_smd")

    def __init__(self, smd: Smd, callback: SmdCallback, classes: SmdClass) -> None:
        self._smd: Smd | None = smd
        self._callback = callback
        self._classes = classes

    @property
    def classes(self) -> SmdClass:
        """The class filter this peer was registered with."""
        return self._classes

    @property
    def registered(self) -> bool:
        """True until :meth:`unregister` is called."""
        return self._smd is not None

    def unregister(self) -> None:
        """Stop delivery to this peer, at once: queued messages are not delivered to it.

        Idempotent, and safe inside any SMD callback, this peer's own included.
        """
        smd = self._smd
        if smd is not None:
            self._smd = None
            smd._drop(self)

    def __repr__(self) -> str:
        state = "registered" if self._smd is not None else "unregistered"
        return f"<SmdPeer {self._classes!r} {state}>"


def _check_class(cls: object) -> SmdClass:
    """Validate a class argument (of post or register) and return it as an SmdClass."""
    if isinstance(cls, bool) or not isinstance(cls, int):
        raise TypeError(f"SMD class must be an SmdClass or int, not {type(cls).__name__}")
    bits = int(cls)
    if bits <= 0:
        raise ValueError(f"SMD class must be a non-empty set of positive bits, not {bits}")
    if bits & _RESERVED_BITS:
        raise ValueError(
            f"SMD class {bits:#x} uses reserved bits {bits & _RESERVED_BITS:#x}; "
            "user classes start at 1 << 24"
        )
    return SmdClass(bits)


class Smd:
    """The message queue of one context (lws ``lws_smd_t``).

    ``queue_depth`` bounds the messages waiting for :meth:`service`; ``ttl`` (seconds) is
    how long a message may wait before it is expired instead of delivered. ``clock`` gives
    the message timestamps (monotonic seconds); ``wake`` is called when a post makes the
    queue non-empty, so a loop sleeping in ``select`` can wake up (it is called from the
    posting thread, outside the queue's lock). A loop that calls :meth:`service` (or looks
    at :attr:`pending`) on every pass before it sleeps misses no message.

    Threads: :meth:`post` may be called from any thread; everything else belongs to the
    loop's thread.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_delivered",
        "_depth",
        "_dropped_full",
        "_expired",
        "_lock",
        "_peers",
        "_queue",
        "_routes",
        "_taken",
        "_ttl",
        "_wake",
    )

    def __init__(
        self,
        *,
        queue_depth: int = 40,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wake: Callable[[], None] = _nothing,
    ) -> None:
        if isinstance(queue_depth, bool) or not isinstance(queue_depth, int):
            raise TypeError(f"queue_depth must be an int, not {type(queue_depth).__name__}")
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, not {queue_depth}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be finite and > 0, not {ttl!r}")
        if not callable(clock) or not callable(wake):
            raise TypeError("clock and wake must be callable")
        self._depth = queue_depth
        self._ttl = float(ttl)
        self._clock = clock
        self._wake = wake
        self._lock = threading.Lock()  # guards _queue, _peers, _routes and _dropped_full
        self._queue: deque[_Msg] = deque()
        self._peers: tuple[SmdPeer, ...] = ()
        # class -> (class, the peers it reaches now); emptied when the peers change
        self._routes: dict[int, tuple[SmdClass, _Targets]] = {}
        self._taken = 0  # messages taken off the queue by service()
        self._delivered = 0
        self._dropped_full = 0
        self._expired = 0
        self._closed = False

    @property
    def queue_depth(self) -> int:
        """How many messages may wait for :meth:`service`."""
        return self._depth

    @property
    def ttl(self) -> float:
        """Seconds a message may wait before it is expired."""
        return self._ttl

    @property
    def stats(self) -> SmdStats:
        """The counters, as a fresh :class:`SmdStats` snapshot."""
        with self._lock:
            return SmdStats(
                posted=self._taken + len(self._queue),
                delivered=self._delivered,
                dropped_full=self._dropped_full,
                expired=self._expired,
            )

    @property
    def pending(self) -> bool:
        """True when :meth:`service` has something to deliver or expire."""
        return bool(self._queue)

    def register(self, callback: SmdCallback, classes: SmdClass | int) -> SmdPeer:
        """Deliver, from now on, each message whose class meets ``classes`` to ``callback``.

        ``callback(cls, timestamp, payload)`` is called from :meth:`service` with the
        message's class, its post time and its payload bytes. Messages already queued are
        not delivered to the new peer. Loop thread only (SMD callbacks included).

        >>> # peer = ctx.smd.register(on_net, SmdClass.NETWORK | SmdClass.SYSTEM_STATE)
        """
        if not callable(callback):
            raise TypeError(f"SMD callback must be callable, not {callback!r}")
        if self._closed:
            raise RuntimeError("this SMD queue is closed (its context is destroyed)")
        peer = SmdPeer(self, callback, _check_class(classes))
        with self._lock:
            self._peers = (*self._peers, peer)
            self._routes = {}
        return peer

    def close(self) -> None:
        """Drop every peer and queued message for good (the context is destroyed).

        From here ``post`` returns False and nothing is delivered, not even the rest of a
        batch that :meth:`service` is delivering when a callback closes the queue.
        """
        with self._lock:
            self._closed = True
            for peer in self._peers:
                peer._smd = None
            self._peers = ()
            self._routes = {}
            self._taken += len(self._queue)  # posted, never delivered: stats stay true
            self._queue.clear()

    def _drop(self, peer: SmdPeer) -> None:
        """Take an unregistered peer out (called by :meth:`SmdPeer.unregister`)."""
        with self._lock:
            self._peers = tuple(p for p in self._peers if p is not peer)
            self._routes = {}

    def _route(self, cls: object) -> tuple[SmdClass, _Targets]:
        """Validate a class and find the peers it reaches (the slow path of :meth:`post`)."""
        member = _check_class(cls)
        with self._lock:
            targets = tuple(
                (p._callback, p) for p in self._peers if p._classes._value_ & member._value_
            )
            route = (member, targets)
            if len(self._routes) < _ROUTES_MAX:
                self._routes[member] = route
        return route

    def post(
        self, cls: SmdClass | int, payload: bytes | bytearray | memoryview | str | dict[str, Any]
    ) -> bool:
        """Queue a message for the peers listening to ``cls``; True when it was queued.

        ``payload`` is bytes (a bytearray or memoryview is copied), a str (sent as UTF-8)
        or a JSON-able dict (sent as compact JSON); at most :data:`MAX_PAYLOAD` bytes once
        encoded. Bad arguments raise (TypeError, ValueError) before anything else is looked
        at. Returns False when no registered peer listens to ``cls`` (nothing is queued) or
        when ``queue_depth`` messages are already waiting (counted in
        ``stats.dropped_full``), and always once the context is destroyed.

        Thread-safe; the messages of one thread are delivered in the order it posted them.

        >>> # ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
        """
        kind = cls.__class__  # exact types only: bool and float would hash like ints
        route = self._routes.get(cls) if kind is SmdClass or kind is int else None
        if route is None:
            route = self._route(cls)
        if payload.__class__ is bytes:
            data: bytes = payload
        else:
            data = _encode(payload)
        if len(data) > 384:  # MAX_PAYLOAD, as a constant on the hot path
            raise ValueError(f"SMD payload is {len(data)} bytes encoded; the limit is 384")
        member, targets = route
        if not targets:
            return False
        lock = self._lock
        lock.acquire()  # explicit: cheaper than ``with`` on this hot path
        try:
            queue = self._queue
            waiting = len(queue)
            if waiting >= self._depth:
                self._dropped_full += 1
                return False
            queue.append((member, self._clock(), data, targets))
        finally:
            lock.release()
        if not waiting:  # else an earlier post already woke the loop for this queue
            self._wake()
        return True

    def service(self) -> int:
        """Expire and deliver every message queued so far; return the deliveries made.

        Called by the loop once per pass. Messages go out in post order; for each message
        the peers are called in registration order. The return value and
        ``stats.delivered`` count one per peer per message. A message posted from inside
        a callback waits for the next call. A callback that raises is logged with its
        traceback and the other peers still get the message.
        """
        if not self._queue:
            return 0
        with self._lock:
            batch = self._queue
            self._queue = deque()
            self._taken += len(batch)
        deadline = self._clock() - self._ttl
        expired = 0
        # the lock orders timestamps as the queue, so the expired messages are at the front
        while batch and batch[0][1] < deadline:
            batch.popleft()
            expired += 1
        self._expired += expired
        delivered = 0
        messages = iter(batch)
        try:
            for member, stamp, data, targets in messages:
                for callback, peer in targets:
                    if peer._smd is not None:  # not unregistered since the post
                        delivered += 1
                        try:
                            callback(member, stamp, data)
                        except Exception:
                            log.exception("smd: callback %r raised on %r", callback, member)
        finally:
            self._delivered += delivered
            rest = list(messages)
            if rest and not self._closed:  # a BaseException left a callback: keep the rest
                with self._lock:
                    self._taken -= len(rest)
                    self._queue.extendleft(reversed(rest))
        return delivered

    def __repr__(self) -> str:
        return f"<Smd peers={len(self._peers)} queued={len(self._queue)}/{self._depth}>"


def _encode(payload: object) -> bytes:
    """Encode a str or dict payload (bytes-like objects are copied)."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, dict):
        import json  # only dict payloads need it; `import lwspy` stays cheap

        try:
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except TypeError as e:
            raise TypeError(f"SMD dict payload is not JSON-able: {e}") from e
        return text.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"SMD payload must be bytes, str or dict, not {type(payload).__name__}")
