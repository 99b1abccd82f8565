"""Every example users read runs to its end as printed, and type-checks under mypy --strict.

The examples are the python code blocks of README.md and docs/ (```python fences in
Markdown, ``.. code-block:: python`` in reST), the ``::`` literal blocks in the docstrings
of the public names (the API reference renders them) and the doctests of every module.
Each block is a whole program: it imports what it uses and ends by itself.
"""

from __future__ import annotations

import configparser
import doctest
import importlib
import inspect
import os
import pkgutil
import re
import runpy
import socket
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest

import lwspy

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TIMEOUT = 30  # seconds: an example that waits forever fails instead of hanging the suite

_FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.S | re.M)


def _markdown_blocks(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    return [
        (f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}", m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1) == "python"
    ]


def _indented_after(lines: list[str], start: int) -> str:
    """The block indented under ``lines[start]`` (a ``::`` line or a directive), dedented."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip() + "\n"


def _rst_blocks(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        (f"{path.name}:{i + 1}", _indented_after(lines, i))
        for i, line in enumerate(lines)
        if line.strip() == ".. code-block:: python"
    ]


def _docstring_blocks() -> list[tuple[str, str]]:
    """The ``::`` literal blocks of the public names' docstrings (and their members')."""
    seen: set[int] = set()
    out: list[tuple[str, str]] = []

    def scan(where: str, doc: str | None) -> None:
        if not doc or id(doc) in seen:
            return
        seen.add(id(doc))
        lines = inspect.cleandoc(doc).splitlines()
        out.extend(
            (f"{where} docstring", _indented_after(lines, i))
            for i, line in enumerate(lines)
            if line.rstrip().endswith("::")
        )

    for name in lwspy.__all__:
        obj = getattr(lwspy, name)
        scan(name, getattr(obj, "__doc__", None) if inspect.isclass(obj) or callable(obj) else None)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") or attr == "__init__":
                    scan(f"{name}.{attr}", getattr(member, "__doc__", None))
    return out


def _all_blocks() -> list[tuple[str, str]]:
    blocks = _markdown_blocks(README)
    for path in sorted(DOCS.iterdir()):
        if path.suffix == ".md":
            blocks += _markdown_blocks(path)
        elif path.suffix == ".rst":
            blocks += _rst_blocks(path)
    return blocks + _docstring_blocks()


BLOCKS = _all_blocks()


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the example did not end within {TIMEOUT} s:\n{code}\n{e.stdout!r}")


def test_every_fence_says_what_it_holds() -> None:
    # an untagged or "py" fence would be a python example that slips past these tests
    for path in [README, *DOCS.glob("*.md")]:
        for m in _FENCE.finditer(path.read_text(encoding="utf-8")):
            assert m.group(1) in ("python", "text", "console", "sh", "ini"), (path, m.group(0))


def test_the_examples_are_found() -> None:
    where = {w.split(":")[0].split(" ")[0] for w, _ in BLOCKS}
    assert {"README.md", "guide.md", "routing.md", "smd.rst", "Context", "Protocol"} <= where
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_example_runs_to_its_end(where: str, code: str, tmp_path: Path) -> None:
    out = _run(code, tmp_path)
    assert out.returncode == 0, f"{where}:\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr  # e.g. a callback that raised


def test_examples_type_check_under_mypy_strict(tmp_path: Path) -> None:
    try:
        import mypy  # noqa: F401
    except ImportError:  # pragma: no cover - mypy is in the test extra
        if os.environ.get("CI"):
            raise
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    files = []
    for n, (_, code) in enumerate(BLOCKS):
        f = tmp_path / f"example_{n}.py"
        f.write_text(code, encoding="utf-8")
        files.append(str(f))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-version=3.10",
            "--config-file=",
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env=dict(os.environ, MYPYPATH=str(ROOT)),
    )
    # name the block and its line, not the temporary file
    text = re.sub(
        r"example_(\d+)\.py:(\d+):",
        lambda m: f"{BLOCKS[int(m.group(1))][0]}, its line {m.group(2)}:",
        out.stdout + out.stderr,
    )
    assert out.returncode == 0, text


@pytest.mark.parametrize(
    "module", sorted(m.name for m in pkgutil.walk_packages(lwspy.__path__, "lwspy."))
)
def test_doctests_of_the_modules_pass(module: str) -> None:
    if module == "lwspy.__main__":
        return  # running it is the console script: tested below
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _readme_example() -> str:
    blocks = _markdown_blocks(README)
    assert len(blocks) == 1
    return blocks[0][1]


def test_readme_example_echoes_and_ends(tmp_path: Path) -> None:
    out = _run(_readme_example(), tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("echoed: b'hello\\n' in ") and lines[0].endswith(" us")
    assert lines[1:] == ["closed: done"]


def test_readme_example_ends_when_the_connect_fails(tmp_path: Path) -> None:
    code = _readme_example()
    target = 'ctx.connect("127.0.0.1", vh.listen_port'
    assert target in code
    with socket.socket() as bound:  # bound, never listening: a connect to it is refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        out = _run(code.replace(target, f'ctx.connect("127.0.0.1", {port}'), tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["connection error: connect refused"]


def test_readme_gives_the_commands_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "    pip install . && lwspy demo\n" in text
    assert "    pip install tox && tox\n" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install tox && tox" in ci
    # the line that runs every interpreter instead of skipping the missing ones
    assert "TOX_SKIP_MISSING_INTERPRETERS=false" in ci
    assert "    TOX_SKIP_MISSING_INTERPRETERS=false tox\n" in text
    assert "skip_missing_interpreters = true" in (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert ".tox/docs_out/index.html" in text
    assert "{toxworkdir}/docs_out" in (ROOT / "tox.ini").read_text(encoding="utf-8")


def test_install_pulls_in_nothing_the_code_does_not_import() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    # h11 alone, and only because the HTTP client (CPD's probe) imports it
    assert cfg["options"]["install_requires"].split() == ["h11>=0.14"]
    assert "import h11" in (ROOT / "lwspy" / "roles" / "h1.py").read_text(encoding="utf-8")
    test_extra = cfg["options.extras_require"]["test"]
    assert "pyroute2" in test_extra and "mypy" in test_extra


def test_python_dash_m_lwspy_is_the_console_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["lwspy", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("lwspy", run_name="__main__")
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: lwspy ")
    assert "``" not in help_text and "demo" in help_text


def test_every_public_name_is_importable_from_lwspy_and_documented() -> None:
    from lwspy.system import smd

    assert lwspy.USER_BASE == smd.USER_BASE == 1 << 24
    assert lwspy.MAX_PAYLOAD == smd.MAX_PAYLOAD == 384
    for name in lwspy.__all__:
        obj: Any = getattr(lwspy, name)
        # a type alias (Callback) is documented in the reference; Python 3.10 calls its
        # generic alias a class
        if typing.get_origin(obj) is None and (inspect.isclass(obj) or inspect.isfunction(obj)):
            assert obj.__doc__, name
    reference = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.rst"))
    missing = [n for n in lwspy.__all__ if n not in reference]
    assert missing == []
