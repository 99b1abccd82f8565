"""The per-thread service object (lws ``struct lws_context_per_thread``).

It owns the selector, the fd → wsi map, the sul timer heap and the wake fd (an eventfd,
or a pipe where there is none) that lets another thread interrupt a sleeping loop.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lwspy.core.sul import SulQueue

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["Pt"]


class Pt:
    """Selector, fd map, timers and the wake fd of one service thread."""

    __slots__ = ("_wake_lock", "fds", "sel", "suls", "wake_r", "wake_w")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.sel: selectors.BaseSelector = selectors.DefaultSelector()
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
            self.sel.modify(fd, old._events, new)
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
