"""Replay the committed fuzzing corpus through every target (no atheris needed).

Each seed (and each crash input found by a fuzzing run, once added to the corpus) is a
regression test: the target's invariants (tests/fuzz/targets.py) must hold for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).parent / "corpus"
SEEDS = sorted((t, p) for t in TARGETS for p in (CORPUS / t).iterdir())


def test_every_target_has_a_corpus() -> None:
    assert {t for t, _ in SEEDS} == set(TARGETS)


@pytest.mark.parametrize(("target", "seed"), SEEDS, ids=[f"{t}/{p.name}" for t, p in SEEDS])
def test_seed_keeps_the_invariants(target: str, seed: Path) -> None:
    TARGETS[target](seed.read_bytes())
