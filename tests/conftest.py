"""Shared fixtures: a fake clock and a recording protocol."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

import lwspy
from lwspy import Protocol, Reason, Wsi

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Recorder:
    """A protocol callback that records (wsi, reason, data) and can run a handler."""

    def __init__(
        self, name: str, on: Callable[[Wsi | None, Reason, Any], int | None] | None = None
    ):
        self.events: list[tuple[Wsi | None, Reason, Any]] = []
        self.on = on
        self.protocol = Protocol(name, self)

    def __call__(self, wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        self.events.append((wsi, reason, data))
        if self.on is not None:
            return self.on(wsi, reason, data) or 0
        return 0

    def reasons(self, wsi: Wsi | None = None) -> list[Reason]:
        return [r for w, r, _ in self.events if wsi is None or w is wsi]

    def data(self, reason: Reason, wsi: Wsi | None = None) -> list[Any]:
        return [d for w, r, d in self.events if r is reason and (wsi is None or w is wsi)]


def service_until(ctx: lwspy.Context, cond: Callable[[], bool], passes: int = 2000) -> None:
    """Service the loop until ``cond()`` holds; fail after ``passes`` passes of <= 50 ms."""
    for _ in range(passes):
        if cond():
            return
        ctx.service(50)
    raise AssertionError("condition not reached")
