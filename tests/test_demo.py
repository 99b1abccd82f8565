"""``lwspy demo`` without the network lab: the loopback part, and what it skipped and why.

The lab itself is tests/netns/test_demo.py. Here the demo runs with --no-lab, and, where
this process is root and unshare exists, as an unprivileged user (uid 65534 in a user
namespace of its own, with no capability on the host's namespaces), which is what a
newcomer without root gets.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lwspy import _demo, _lab
from lwspy.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _check_loopback_story(text: str) -> None:
    assert "First, on loopback: an echo server listens on 127.0.0.1 port" in text
    assert "20 bytes made the round trip in" in text
    for term in ("CAO", "HEAD", "WON", "CONMON"):  # each explained once, before its table
        explained = f"  {term}: {_demo.TERMS[term][:20]}"
        assert text.count(explained) == 1, term
        assert text.index(explained) < text.index("  HEAD 127.0.0.1")
    assert "  cao  address   family source    iface gateway result" in text
    assert "no DNS (a literal address: 127.0.0.1)" in text
    assert "Skipped the network lab" in text
    assert text.rstrip().splitlines()[-1].startswith("Demo finished in ")


def test_no_lab_runs_the_loopback_part_and_says_why_it_skipped_the_rest() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwspy", "demo", "--no-lab"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    _check_loopback_story(r.stdout)
    flat = " ".join(r.stdout.split())
    assert "--no-lab was given. Run it without --no-lab to see them." in flat
    assert "as root" not in flat
    assert "SYSTEM_STATE" not in r.stdout and "[smd" not in r.stdout  # no raw dumps without -v


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_an_unprivileged_user_gets_the_loopback_part_and_the_reason() -> None:
    # A new user namespace with no mapping: the demo runs as uid 65534 without any
    # capability on the host's namespaces, yet may still read an interpreter under a
    # home directory only root can enter (pyenv's, in CI), which setpriv could not.
    r = subprocess.run(
        ["unshare", "--user", sys.executable, "-m", "lwspy", "demo"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    _check_loopback_story(r.stdout)
    flat = " ".join(r.stdout.split())
    assert "making network namespaces needs root (this is uid 65534)." in flat
    assert "Run it as root to see them." in flat


def test_verbose_also_prints_each_smd_message() -> None:
    out = io.StringIO()
    assert main(["demo", "--no-lab", "-v"], out) == 0
    text = out.getvalue()
    assert '[smd SYSTEM_STATE] {"state":"OPERATIONAL"}' in text
    _check_loopback_story(text)


def test_why_not_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _lab.why_not() == "making network namespaces needs root (this is uid 1000)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert _lab.why_not() == "iproute2's ip command is not installed"
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(_lab, "DNSMASQ", "/nonexistent/dnsmasq")
    assert _lab.why_not() == "/nonexistent/dnsmasq is not installed (Debian package dnsmasq-base)"
    assert _lab.why_not_and_fix() == (
        "/nonexistent/dnsmasq is not installed (Debian package dnsmasq-base)",
        "Install dnsmasq-base to see them.",
    )
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = io.StringIO()
    assert main(["demo"], out) == 0
    flat = " ".join(out.getvalue().split())
    assert "iproute2's ip command is not installed. Install iproute2" in flat
    assert "as root" not in flat


def test_a_failing_step_is_reported_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo, "_echo_rtt", lambda ctx, wsi: None)
    out = io.StringIO()
    assert main(["demo", "--no-lab"], out) == 1
    text = out.getvalue()
    assert "!! unexpected: the loopback echo did not come back" in text
    assert "with 1 unexpected results." in text


def test_demo_help_has_an_example_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and "lwspy demo --no-lab" in text and "130 interrupted" in text


def test_without_iproute2_on_the_path_it_runs_the_loopback_part(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwspy", "demo"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={**os.environ, "PATH": str(tmp_path)},  # an empty directory: no ip, no unshare
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    _check_loopback_story(r.stdout)
    flat = " ".join(r.stdout.split())
    why = "iproute2's ip command is not installed" if os.geteuid() == 0 else "needs root"
    assert why in flat


def test_a_zombie_demo_counts_as_dead() -> None:
    # A killed demo that nobody reaped yet still answers kill(pid, 0): sweep() must not
    # keep its leftovers for it.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # it has exited, not reaped
        os.kill(pid, 0)  # still reachable
        assert not _lab._alive(pid)
        assert _lab._alive(os.getpid())
    finally:
        os.waitpid(pid, 0)
    assert not _lab._alive(pid)  # reaped: gone


def test_alive_without_proc_trusts_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("no /proc")

    monkeypatch.setattr(_lab, "open", no_proc, raising=False)
    assert _lab._alive(os.getpid())
