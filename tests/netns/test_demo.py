"""``lwspy demo`` with its network lab, as root: run as a subprocess, twice in a row, and
interrupted; in-process for what a subprocess cannot show (an error in a step).

The narration is checked for each step's facts (the black-holed IPv6 attempt lost the
race, the second connect went straight, "route lost" with the loopback connection
kept, the gateway change's cpdcheck), and after every run the namespaces are gone.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lwspy import _demo, _lab
from lwspy.cli import main
from tests.netns.conftest import require_dnsmasq, require_netns

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def _netns() -> None:
    require_netns()
    require_dnsmasq()


def _lab_namespaces(pid: int) -> list[str]:
    """What the demo run ``pid`` left: its namespaces and its temporary directory."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    left = [line.split()[0] for line in out.stdout.splitlines() if f"lwspydemo{pid}" in line]
    return left + [str(p) for p in Path(tempfile.gettempdir()).glob(f"lwspy-demo-{pid}-*")]


def _check_story(text: str) -> None:
    flat = " ".join(text.split())
    assert "Built a private network lab in" in flat
    lines = text.splitlines()
    lost = [line.split() for line in lines if " LOST_RACE " in f"{line} "]
    # connect #1: the table row and the timeline row of the black-holed IPv6 attempt
    assert [row[1] for row in lost if row[0] == "1"] == [_lab.Lab.HOLE6]
    assert any(row[0] == _lab.Lab.HOLE6 for row in lost)
    heads = [line.split() for line in lines if line.startswith("  HEAD ")]
    assert [h[1:3] for h in heads] == [
        ["127.0.0.1", "IPv4"],
        [_lab.Lab.PEER, "IPv4"],
        [_lab.Lab.PEER, "IPv4"],
    ]
    assert heads[1][4:6] == ["va", _lab.Lab.B_ADDR]  # interface and gateway of the route
    assert "IPv6 went first (RFC 6724 prefers it)." in flat
    assert "Connect #2 took" in flat and "no race" in flat
    assert "DNS came from lwspy's resolver cache" in flat
    assert "What this showed: lwspy records every connect attempt" in flat
    assert "close_reason 'route lost'." in flat
    assert "The loopback connection was left alone: it still echoes" in flat
    assert flat.count('{"trigger":"cpdcheck","src":"gw-change"}') == 2
    for term in _demo.TERMS:  # each explained exactly once
        assert flat.count(f" {term}: {_demo.TERMS[term][:24]}") == 1, term
    assert "At start-up captive portal detection found NO_INTERNET" in flat
    assert "so lwspy also ran CPD again: NO_INTERNET" in flat
    assert "result CAPTIVE_PORTAL, portal URL http://portal.lab.test/login," in flat
    assert flat.count('{"type":"cpd","result":"No internet"}') == 1  # after the delete
    assert flat.count('{"type":"cpd","result":"Captive"}') == 1  # after the gateway change
    assert "!! unexpected" not in text
    assert lines[-1].startswith("Demo finished in ")


def test_the_demo_runs_the_lab_to_its_end_twice_in_a_row_and_leaves_nothing() -> None:
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "lwspy", "demo"],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stderr == ""
        _check_story(proc.stdout)
        assert "[smd" not in proc.stdout  # no raw dumps without -v
        ns = [line for line in proc.stdout.splitlines() if line.startswith("Removed the lab")]
        assert len(ns) == 1
        match = re.search(r"lwspydemo(\d+)a", ns[0])
        assert match is not None
        pid = int(match.group(1))
        assert _lab_namespaces(pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_removes_the_lab(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwspy", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # interrupt in the middle of the story, the lab built
        seen.append(line)
        if line.startswith("Step 1."):
            break
    assert _lab_namespaces(proc.pid) != []
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, "".join(seen) + rest + err
    assert "Interrupted; everything the demo made has been removed." in rest
    assert "Removed the lab" in rest
    assert _lab_namespaces(proc.pid) == []


def test_a_killed_run_is_swept_by_the_next_one() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwspy", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Step 1."):
            break
    proc.kill()  # no cleanup possible: the namespaces stay
    proc.wait(10)
    proc.stdout.close()
    assert len(_lab_namespaces(proc.pid)) == 3  # two namespaces and the directory
    out = io.StringIO()
    assert main(["demo"], out) == 0
    assert "(removed 2 namespaces left by an earlier, killed run)" in out.getvalue()
    assert _lab_namespaces(proc.pid) == []
    assert not _dnsmasq_of(proc.pid)  # it died with its parent, or the sweep stopped it


def _dnsmasq_of(pid: int) -> bool:
    """Whether a dnsmasq of the demo run ``pid`` still runs (its files carry the pid)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(_lab.DNSMASQ.encode()) and f"lwspy-demo-{pid}-".encode() in cmd:
                return True
    return False


def test_an_error_in_a_step_still_removes_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a step broke")

    monkeypatch.setattr(_demo, "_cpd_step", broken)
    out = io.StringIO()
    assert main(["demo", "-v"], out) == 1
    text = out.getvalue()
    assert "The demo failed: a step broke" in text
    assert '[smd NETWORK] {"rt":"del"}' in text  # -v: the raw messages too
    assert _lab_namespaces(os.getpid()) == []


def test_a_lab_whose_servers_do_not_start_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_namespace(fd: int) -> None:
        raise OSError("setns refused")

    monkeypatch.setattr(_lab, "setns_thread", no_namespace)
    out = io.StringIO()
    assert main(["demo"], out) == 1
    assert "The demo failed: the lab's servers did not start: setns refused" in out.getvalue()
    assert _lab_namespaces(os.getpid()) == []


def test_a_connect_that_fails_is_told_and_the_demo_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the route to the echo server only the black-holed IPv6 address is left.
    monkeypatch.setattr(_lab.Lab, "add_peer_route", lambda self: None)
    out = io.StringIO()
    assert main(["demo"], out) == 1
    text = " ".join(out.getvalue().split())
    assert "!! unexpected: connect #1 failed:" in text
    assert "with 1 unexpected results." in text
    assert _lab_namespaces(os.getpid()) == []
