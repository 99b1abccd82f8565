"""Scheduled callbacks (lws ``lws_sorted_usec_list_t``): a heap of timers on a clock.

A :class:`Sul` is reusable: ``schedule()`` again moves it, ``cancel()`` takes it off. The
queue is a heap with lazy deletion: a moved or cancelled timer leaves a stale entry that is
skipped when it surfaces, and the heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

__all__ = ["Sul", "SulQueue"]

Clock = Callable[[], float]


class Sul:
    """One timer: ``callback()`` runs once from the loop when the timer is due.

    Made by ``ctx.sul(callback)`` (users never call the constructor), for example
    ``tick = ctx.sul(lambda: print("tick"))``, then ``tick.schedule(0.5)``.
    """

    __slots__ = ("_callback", "_due", "_queue", "_seq")

    def __init__(self, queue: SulQueue, callback: Callable[[], Any]) -> None:
        if not callable(callback):
            raise TypeError(f"sul callback must be callable, not {callback!r}")
        self._queue = queue
        self._callback = callback
        self._due = 0.0
        self._seq = 0  # 0: not scheduled; else the sequence number of the live heap entry

    @property
    def scheduled(self) -> bool:
        """True while the timer is waiting to fire."""
        return self._seq != 0

    @property
    def due(self) -> float | None:
        """The clock time at which it fires, or None when not scheduled."""
        return self._due if self._seq else None

    def schedule(self, seconds: float) -> None:
        """Fire ``seconds`` from now (0 = on the next pass); moves a scheduled timer."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, not {seconds!r}")
        self._queue.push(self, self._queue.clock() + seconds)

    def cancel(self) -> None:
        """Take the timer off; a cancelled timer never fires. Safe when not scheduled."""
        if self._seq:
            self._seq = 0
            self._queue.stale += 1


class SulQueue:
    """The per-thread timer heap; the loop asks :meth:`next_due` and calls :meth:`run_due`."""

    __slots__ = ("_counter", "clock", "heap", "stale")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Sul]] = []
        self.stale = 0
        self._counter = 0

    def __len__(self) -> int:
        return len(self.heap) - self.stale

    def push(self, sul: Sul, due: float) -> None:
        """(Re)schedule ``sul`` at clock time ``due``; an earlier entry of it goes stale."""
        if sul._seq:
            self.stale += 1
        self._counter += 1
        sul._seq = self._counter
        sul._due = due
        heapq.heappush(self.heap, (due, self._counter, sul))
        if self.stale > 64 and self.stale * 2 > len(self.heap):
            self._compact()

    def _compact(self) -> None:
        # In place: run_due may be walking this very list when a callback reschedules.
        self.heap[:] = [e for e in self.heap if e[2]._seq == e[1]]
        heapq.heapify(self.heap)
        self.stale = 0

    def clear(self) -> None:
        """Take every timer off (the context is going away): none of them fires."""
        for _, seq, sul in self.heap:
            if sul._seq == seq:
                sul._seq = 0
        self.heap.clear()
        self.stale = 0

    def _drop_stale_top(self) -> None:
        heap = self.heap
        while heap and heap[0][2]._seq != heap[0][1]:
            heapq.heappop(heap)
            self.stale -= 1

    def next_due(self) -> float | None:
        """The clock time of the earliest live timer, or None."""
        self._drop_stale_top()
        return self.heap[0][0] if self.heap else None

    def run_due(self, now: float, call: Callable[[Callable[[], Any]], None]) -> int:
        """Fire, in time order, every timer due at ``now``; returns how many fired.

        A timer scheduled by a callback for ``now`` or earlier fires on the next pass, so a
        callback that reschedules itself at 0 cannot starve the loop.
        """
        heap = self.heap
        limit = self._counter
        fired = 0
        while heap:
            due, seq, sul = heap[0]
            if sul._seq != seq:
                heapq.heappop(heap)
                self.stale -= 1
                continue
            if due > now or seq > limit:
                break
            heapq.heappop(heap)
            sul._seq = 0
            fired += 1
            call(sul._callback)
        return fired
