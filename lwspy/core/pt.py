"""The per-thread service object (lws ``struct lws_context_per_thread``).

It owns the selector, the fd → wsi map, the sul timer heap and the wake fd (an eventfd,
or a pipe where there is none) that lets another thread interrupt a sleeping loop.

The selector is :class:`Poller`: on Linux ``select.epoll`` driven directly (what
``selectors.DefaultSelector`` is there, less its Python layers: no ``SelectorKey`` per
registration, no file-object lookup per call), elsewhere a ``selectors.DefaultSelector``
behind the same few calls. Events are ``selectors.EVENT_READ`` / ``EVENT_WRITE`` either way.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import selectors
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lwspy.core.sul import SulQueue

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["Poller", "Pt"]

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
# linux/eventpoll.h; read with a default so that this module imports where there is no epoll
_EPOLLIN = getattr(select, "EPOLLIN", 0x001)
_EPOLLOUT = getattr(select, "EPOLLOUT", 0x004)


class _SelectorsPoller:  # pragma: no cover - where there is no epoll (not Linux)
    """:class:`Poller`'s calls on a ``selectors.DefaultSelector``."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()

    def fileno(self) -> int:
        return self._sel.fileno() if hasattr(self._sel, "fileno") else -1

    def register(self, fd: int, events: int, data: Any) -> None:
        self._sel.register(fd, events, data)

    def modify(self, fd: int, events: int, data: Any) -> None:
        self._sel.modify(fd, events, data)

    def retarget(self, fd: int, data: Any) -> None:
        self._sel.modify(fd, self._sel.get_key(fd).events, data)

    def unregister(self, fd: int) -> None:
        self._sel.unregister(fd)

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        return [(key.data, mask) for key, mask in self._sel.select(timeout)]

    def get_map(self) -> dict[int, tuple[Any, int]]:
        return {key.fd: (key.data, key.events) for key in self._sel.get_map().values()}

    def close(self) -> None:
        self._sel.close()


class _EpollPoller:
    """``selectors.EpollSelector``'s behaviour, for the calls the loop makes, on
    ``select.epoll`` itself: the per-fd key is a (data, events) tuple in a dict."""

    # No __slots__: one per context, and a test may wrap an instance's select().

    _TO_EPOLL = (0, _EPOLLIN, _EPOLLOUT, _EPOLLIN | _EPOLLOUT)
    _NOT_IN = ~_EPOLLIN  # as selectors: an error or hang-up wakes both directions
    _NOT_OUT = ~_EPOLLOUT

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._keys: dict[int, tuple[Any, int]] = {}

    def fileno(self) -> int:
        """The epoll fd."""
        return self._ep.fileno()

    def register(self, fd: int, events: int, data: Any) -> None:
        """Watch ``fd`` for ``events`` (EVENT_READ | EVENT_WRITE); ``data`` comes with them."""
        if fd in self._keys:
            raise KeyError(f"fd {fd} is already registered")
        self._ep.register(fd, self._TO_EPOLL[events])
        self._keys[fd] = (data, events)

    def modify(self, fd: int, events: int, data: Any) -> None:
        """Watch a registered ``fd`` for ``events`` instead."""
        if self._keys[fd][1] != events:
            try:
                self._ep.modify(fd, self._TO_EPOLL[events])
            except BaseException:
                self.unregister(fd)
                raise
        self._keys[fd] = (data, events)

    def retarget(self, fd: int, data: Any) -> None:
        """Give a registered ``fd``'s events to ``data`` from now on (no system call)."""
        self._keys[fd] = (data, self._keys[fd][1])

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd`` (which may be closed already)."""
        del self._keys[fd]
        try:  # noqa: SIM105 - contextlib.suppress costs ten times more, twice per connect
            self._ep.unregister(fd)
        except OSError:
            pass

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """Wait up to ``timeout`` seconds (None: no bound); (data, events) per ready fd."""
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:  # rounded up to the millisecond epoll counts in, so it never wakes early
            wait = math.ceil(timeout * 1e3) * 1e-3
        keys = self._keys
        try:
            ready = self._ep.poll(wait, max(len(keys), 1))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; as selectors
            return []
        out = []
        not_in, not_out = self._NOT_IN, self._NOT_OUT
        for fd, ev in ready:
            key = keys.get(fd)
            if key is not None:
                mask = (_WRITE if ev & not_in else 0) | (_READ if ev & not_out else 0)
                out.append((key[0], mask & key[1]))
        return out

    def get_map(self) -> dict[int, tuple[Any, int]]:
        """Every registered fd: (data, events)."""
        return dict(self._keys)

    def close(self) -> None:
        """Release the epoll fd."""
        self._keys.clear()
        self._ep.close()


# The loop's selector: register, modify, retarget, unregister, select, get_map, close.
Poller: type[_EpollPoller] = _EpollPoller
if not hasattr(select, "epoll"):  # pragma: no cover - not Linux
    Poller = _SelectorsPoller  # type: ignore[assignment]


class Pt:
    """Selector, fd map, timers and the wake fd of one service thread."""

    __slots__ = ("_wake_lock", "fds", "sel", "suls", "wake_r", "wake_w")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.sel: _EpollPoller = Poller()
        self.fds: dict[int, Wsi] = {}
        self.suls = SulQueue(clock)
        self._wake_lock = threading.Lock()
        eventfd = getattr(os, "eventfd", None)
        if eventfd is not None:
            self.wake_r = self.wake_w = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - Linux has eventfd
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)

    def add(self, wsi: Wsi, events: int) -> None:
        """Put a wsi's fd in the map and, if ``events``, in the selector."""
        if wsi.fd in self.fds:
            raise ValueError(f"fd {wsi.fd} is already in this context")
        if events:
            self.sel.register(wsi.fd, events, wsi)
        self.fds[wsi.fd] = wsi
        wsi._events = events

    def set_events(self, wsi: Wsi, events: int) -> None:
        """Change what the selector watches for on a wsi's fd (0: nothing)."""
        if not wsi._events:
            self.sel.register(wsi.fd, events, wsi)
        elif events:
            self.sel.modify(wsi.fd, events, wsi)
        else:
            self.sel.unregister(wsi.fd)
        wsi._events = events

    def hand_over(self, old: Wsi, new: Wsi) -> None:
        """Give ``old``'s fd, registration and all, to ``new`` (a race's winner socket moves
        from its attempt to the user's wsi without leaving the selector)."""
        fd = old.fd
        self.fds[fd] = new
        if old._events:
            self.sel.retarget(fd, new)
        new._events, old._events = old._events, 0

    def forget(self, wsi: Wsi) -> None:
        """Take a wsi's fd out of the selector and the map (before the fd is closed)."""
        if wsi._events:
            self.sel.unregister(wsi.fd)
            wsi._events = 0
        if self.fds.get(wsi.fd) is wsi:
            del self.fds[wsi.fd]

    def wake(self) -> None:
        """Make a sleeping ``select`` return; safe from any thread."""
        with self._wake_lock:  # close() must not slip in between the check and the write
            fd = self.wake_w
            if fd >= 0:
                with contextlib.suppress(OSError):  # already awake (counter or pipe full)
                    os.write(fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def drain_wake(self) -> None:
        """Consume the wake-ups that made the fd readable."""
        try:
            while os.read(self.wake_r, 4096):
                if self.wake_r == self.wake_w:
                    break
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release the selector and the wake fd(s); later wake-ups do nothing."""
        self.sel.close()
        with self._wake_lock:  # a late post from another thread must not hit a reused fd
            wake_r, wake_w = self.wake_r, self.wake_w
            self.wake_r = self.wake_w = -1
        os.close(wake_r)
        if wake_w != wake_r:  # pragma: no cover - pipe fallback
            os.close(wake_w)
