"""The bounded coverage-guided fuzzing run (atheris) of every target, from the corpus.

Each target runs in a process of its own (atheris instruments lwspy as it is imported
and ends the process when done): ``-runs`` inputs (full size: ``-max_total_time``
seconds), new inputs going to a scratch folder, the committed corpus read as seeds. A
crash fails the test and names the input libFuzzer wrote; commit it to the corpus (the
normal suite replays it) together with the fix.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS
from tests.stress.conftest import FULL, ROOT, record

CORPUS = ROOT / "tests" / "fuzz" / "corpus"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_survives_a_bounded_run(target: str, tmp_path: Path) -> None:
    # A fixed seed: CI's run is the same every time (a longer, seeded-at-random run is
    # docs/reliability.md's); what it finds is committed to the corpus with its fix.
    budget = ["-max_total_time=30", "-runs=100000000"] if FULL else ["-runs=3000"]
    budget.append("-seed=1")
    scratch = tmp_path / "new"
    scratch.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            *budget,
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
            str(scratch),
            str(CORPUS / target),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    crashes = sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash", "oom", "timeout"))
    )
    assert run.returncode == 0 and not crashes, run.stderr[-4000:]
    runs = re.search(r"stat::number_of_executed_units: (\d+)", run.stderr)
    took = re.search(r"Done (\d+) runs in (\d+) second", run.stderr)
    assert runs is not None and took is not None
    cov = re.findall(r"cov: (\d+)", run.stderr)
    record(
        "fuzz",
        target=target,
        inputs=int(runs.group(1)),
        seconds=int(took.group(2)),
        cov=int(cov[-1]) if cov else 0,
    )
