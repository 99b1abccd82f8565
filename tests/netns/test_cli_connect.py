"""``lwspy connect`` in the demo's lab, as a subprocess in namespace "a": the race against
the black-holed IPv6 address, then the learned straight connect, from real DNS.

The subprocess gets the lab's dnsmasq as its nameserver through a resolv.conf
bind-mounted over /etc/resolv.conf in a private mount namespace (``unshare -m``).
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwspy import _lab
from tests.netns.conftest import require_dnsmasq, require_netns

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parent.parent.parent
Lab = _lab.Lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[_lab.Lab, int, Path]]:
    require_netns()
    require_dnsmasq()
    lab = _lab.Lab()
    try:
        lab.build()
        with lab.inside("b"):
            peer = socket.socket(socket.AF_INET6)  # listening; the kernel accepts for us
        with peer:
            peer.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            peer.bind(("::", 0))
            peer.listen(16)
            resolv = tmp_path / "resolv.conf"
            resolv.write_text(f"nameserver {lab.B_ADDR}\n")
            yield lab, peer.getsockname()[1], resolv
    finally:
        lab.destroy()


def _connect_in_a(lab: _lab.Lab, resolv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = shlex.join([sys.executable, "-m", "lwspy", "connect", *args])
    return subprocess.run(
        ["ip", "netns", "exec", lab.ns["a"], "unshare", "-m", "sh", "-c",
         f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec {cmd}"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip


def test_connect_json_shows_the_race_then_the_learned_straight_connect(
    lab: tuple[_lab.Lab, int, Path],
) -> None:
    the_lab, port, resolv = lab
    r = _connect_in_a(the_lab, resolv, Lab.NAME, str(port), "-n", "2", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert [(c["address"], c["result"]) for c in first["caos"]] == [
        (Lab.PEER, "WON"),
        (Lab.HOLE6, "LOST_RACE"),
    ]
    head, lost = first["caos"]
    assert head["gateway"] == Lab.B_ADDR and head["local"][0] == Lab.A_ADDR
    assert head["started"] > lost["started"]  # IPv6 first, IPv4 after the delay
    assert head["ifindex"] == lost["ifindex"] is not None
    assert first["conmon"]["peer"] == Lab.PEER and first["conmon"]["dns_disp"] == 1
    assert sorted(first["conmon"]["dns"]) == sorted([Lab.PEER, Lab.HOLE6])
    assert [(c["address"], c["result"]) for c in second["caos"]] == [(Lab.PEER, "WON")]


def test_connect_text_through_an_interface(lab: tuple[_lab.Lab, int, Path]) -> None:
    the_lab, port, resolv = lab
    r = _connect_in_a(the_lab, resolv, Lab.PEER, str(port), "--iface", "va", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("  HEAD ")]
    assert [row[1:7] for row in rows] == [[Lab.PEER, "IPv4", Lab.A_ADDR, "va", Lab.B_ADDR, "WON"]]
    r = _connect_in_a(the_lab, resolv, "nothing.lab.test", str(port))
    assert r.returncode == 1
    assert "failed: DNS" in r.stdout and "CONMON: not connected; DNS NXDOMAIN" in r.stdout
