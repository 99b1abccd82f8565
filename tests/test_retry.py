"""RetryPolicy: delays, the last repeated, jitter within its bound, argument checks."""

from __future__ import annotations

from typing import Any

import pytest

from lwspy import RetryPolicy


def test_delays_count_from_one_and_the_last_repeats() -> None:
    p = RetryPolicy([0.5, 1, 4])
    assert [p.delay(n) for n in range(1, 7)] == [0.5, 1.0, 4.0, 4.0, 4.0, 4.0]
    assert p.conceal == 3
    assert "conceal=3" in repr(p)


def test_jitter_adds_up_to_its_percentage() -> None:
    rolls = iter([0.0, 0.5, 0.999])
    p = RetryPolicy([2.0], conceal=9, jitter_percent=50, rng=lambda: next(rolls))
    assert [p.delay(1), p.delay(2), p.delay(3)] == [2.0, 2.5, pytest.approx(2.999)]
    assert RetryPolicy([0.0], jitter_percent=50, rng=lambda: 1.0).delay(1) == 0.0


def test_jitter_without_an_rng_stays_in_its_bound() -> None:
    p = RetryPolicy([1.0], jitter_percent=10)
    for n in range(1, 50):
        assert 1.0 <= p.delay(n) <= 1.1


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        (("12",), {}, TypeError, "sequence"),
        (([],), {}, ValueError, "at least one"),
        ((["1"],), {}, TypeError, "number of seconds"),
        (([True],), {}, TypeError, "number of seconds"),
        (([-1],), {}, ValueError, "finite"),
        (([float("inf")],), {}, ValueError, "finite"),
        (([1],), {"conceal": 1.5}, TypeError, "conceal"),
        (([1],), {"conceal": -1}, ValueError, "conceal"),
        (([1],), {"jitter_percent": "5"}, TypeError, "jitter"),
        (([1],), {"jitter_percent": 101}, ValueError, "jitter"),
        (([1],), {"rng": 3}, TypeError, "rng"),
    ],
)
def test_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], exc: type, match: str
) -> None:
    with pytest.raises(exc, match=match):
        RetryPolicy(*args, **kwargs)


def test_delay_rejects_a_bad_retry_number() -> None:
    p = RetryPolicy([1])
    with pytest.raises(ValueError, match="from 1"):
        p.delay(0)
    with pytest.raises(TypeError, match="int"):
        p.delay(1.0)  # type: ignore[arg-type]
