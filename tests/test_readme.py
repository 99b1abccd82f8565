"""The README's example runs as printed (docs are part of the product)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs_and_echoes() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1 and len(blocks[0].splitlines()) <= 20
    out = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("echoed: b'hello\\n' in ")


def test_readme_gives_exactly_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "    pip install . && lwspy demo\n" in text
    assert "    pip install tox && tox\n" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install tox && tox" in ci
