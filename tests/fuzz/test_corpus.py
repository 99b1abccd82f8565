"""Replay the committed fuzzing corpus through every target (no atheris needed).

Each seed (and each crash input found by a fuzzing run, once added to the corpus) is a
regression test: the target's invariants (tests/fuzz/targets.py) must hold for it. The
netlink seeds run in a process of their own: decoding hostile dumps moves the decoder's
process-wide state (the route id counter, the learnt layouts), which later tests of the
same process must not inherit.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import targets
from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).parent / "corpus"
ROOT = CORPUS.parent.parent.parent
APART = {"netlink"}
SEEDS = sorted((t, p) for t in TARGETS if t not in APART for p in (CORPUS / t).iterdir())


@pytest.fixture(autouse=True, scope="module")
def _destroy_the_http_context() -> Iterator[None]:
    yield
    for ctx in targets._http:  # the HTTP target's context, kept between its inputs
        ctx.destroy()
    targets._http.clear()


def test_every_target_has_a_corpus() -> None:
    assert all(any((CORPUS / t).iterdir()) for t in TARGETS)


@pytest.mark.parametrize(("target", "seed"), SEEDS, ids=[f"{t}/{p.name}" for t, p in SEEDS])
def test_seed_keeps_the_invariants(target: str, seed: Path) -> None:
    TARGETS[target](seed.read_bytes())


@pytest.mark.parametrize("target", sorted(APART))
def test_seeds_keep_the_invariants_in_a_process_of_their_own(target: str) -> None:
    code = (
        "import sys; from pathlib import Path; from tests.fuzz.targets import TARGETS\n"
        "seeds = sorted(Path(sys.argv[2]).iterdir())\n"
        "for p in seeds: TARGETS[sys.argv[1]](p.read_bytes())\n"
        "print(len(seeds))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, target, str(CORPUS / target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert int(run.stdout) == len(list((CORPUS / target).iterdir()))
