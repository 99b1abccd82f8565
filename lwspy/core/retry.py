"""Retry and backoff (lws ``lws_retry_bo_t``): how long to wait before retry n, and how many
failed connects are retried silently before the application hears of it.

Pure: no clock, no I/O. The jitter's randomness comes from ``rng`` (default
``random.random``), so a test can pin it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["RetryPolicy"]


class RetryPolicy:
    """``RetryPolicy(delays, conceal=None, jitter_percent=0)``.

    ``delays`` are the seconds to wait before retry 1, 2, ...; the last one repeats.
    ``conceal`` is how many failed connects are retried silently before
    CLIENT_CONNECTION_ERROR (default ``len(delays)``). ``jitter_percent`` adds up to that
    percentage of each delay, at random, so that many clients do not retry in step::

        from lwspy import RetryPolicy

        policy = RetryPolicy([1, 2, 5], conceal=10, jitter_percent=20)
        print(policy.delay(1))  # 1.0 .. 1.2
        print(policy.delay(7))  # 5.0 .. 6.0 (the last delay repeats)

    An application pacing its own reconnects (after RAW_CLOSE) calls ``delay(n)`` itself.
    """

    __slots__ = ("_rng", "conceal", "delays", "jitter_percent")

    def __init__(
        self,
        delays: Sequence[float],
        conceal: int | None = None,
        jitter_percent: float = 0,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(delays, (str, bytes)) or not isinstance(delays, Sequence):
            raise TypeError("delays must be a sequence of seconds")
        if not delays:
            raise ValueError("delays must hold at least one delay")
        out: list[float] = []
        for d in delays:
            if isinstance(d, bool) or not isinstance(d, (int, float)):
                raise TypeError(f"a delay must be a number of seconds, not {type(d).__name__}")
            if not math.isfinite(d) or d < 0:
                raise ValueError(f"a delay must be finite and >= 0, not {d!r}")
            out.append(float(d))
        if conceal is None:
            conceal = len(out)
        if isinstance(conceal, bool) or not isinstance(conceal, int):
            raise TypeError(f"conceal must be an int, not {type(conceal).__name__}")
        if conceal < 0:
            raise ValueError(f"conceal must be >= 0, not {conceal}")
        if isinstance(jitter_percent, bool) or not isinstance(jitter_percent, (int, float)):
            raise TypeError("jitter_percent must be a number")
        if not 0 <= jitter_percent <= 100:
            raise ValueError(f"jitter_percent must be in 0..100, not {jitter_percent!r}")
        if rng is not None and not callable(rng):
            raise TypeError("rng must be callable")
        self.delays: tuple[float, ...] = tuple(out)
        self.conceal = conceal
        self.jitter_percent = float(jitter_percent)
        self._rng = rng

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(delays={list(self.delays)!r}, conceal={self.conceal}, "
            f"jitter_percent={self.jitter_percent:g})"
        )

    def delay(self, n: int) -> float:
        """Seconds to wait before retry ``n`` (from 1), jitter applied."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 1:
            raise ValueError(f"retries count from 1, not {n}")
        base = self.delays[min(n, len(self.delays)) - 1]
        if not self.jitter_percent or not base:
            return base
        rng = self._rng
        if rng is None:
            import random  # only a policy with jitter pays for it

            rng = random.random
        return base + base * self.jitter_percent / 100 * rng()
