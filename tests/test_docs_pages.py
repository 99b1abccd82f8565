"""The guide pages say what they promise: every Reason in the callback model, every
command in the CLI page, the race diagram made by its tool, each page in the toctree."""

from __future__ import annotations

import re
from pathlib import Path

from lwspy import Reason, cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_reason_is_in_the_callback_table() -> None:
    text = (DOCS / "callbacks.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.M))
    assert rows == {r.name for r in Reason}


def test_every_command_and_exit_code_is_in_the_cli_page() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"| `lwspy {name}" in text, name
    codes = re.findall(r"^\| (\d+) \|", text, re.M)
    assert [int(c) for c in codes] == [0, 1, 2, 3, 4, 130]
    assert all(f"  {c} " in cli.EXIT_CODES for c in codes)


def test_the_race_diagram_is_the_tools_output() -> None:
    svg = (DOCS / "images" / "race.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg ") and "LOST_RACE" in svg and "WON" in svg
    assert "images/race.svg" in (DOCS / "caos.md").read_text(encoding="utf-8")
    assert (DOCS.parent / "tools" / "race_diagram.py").is_file()


def test_every_page_is_in_the_toctree() -> None:
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    pages = {p.stem for p in DOCS.iterdir() if p.suffix in (".md", ".rst")} - {"index"}
    listed = set(re.findall(r"^   ([\w-]+)$", index, re.M))
    assert pages == listed
