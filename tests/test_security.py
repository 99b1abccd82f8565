"""Security checks (issue 13): what the library opens, starts and listens on, and how
unpredictable its DNS queries are (source ports and ids), measured.

The answer checks (only the server asked, matching id and question) are in
tests/test_resolver.py and tests/test_dns_query.py; SMD's payload and queue limits in
tests/test_smd.py. The CPD probe's redirects are checked here: it never follows one.
"""

from __future__ import annotations

import itertools
import json
import math
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import lwspy
from lwspy import CpdResult
from lwspy.net.dns import DnsAnswer
from tests.conftest import service_until
from tests.dnsfake import FakeDns
from tests.httpfake import HttpFake, answer

ROOT = Path(__file__).parent.parent


def test_main_paths_open_only_resolv_conf_and_hosts_start_no_process_and_listen_as_asked(
    tmp_path: Path,
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.audit_probe", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    report = json.loads(out)
    # The paths ran: hosts name, DNS name, literal, NXDOMAIN, refused; SMD; a timer; CPD.
    assert report["outcomes"] == {
        "h.test": "connected",
        "a.test": "connected",
        "127.0.0.1": "connected",
        "nx.test": "error: DNS NXDOMAIN",
        "refused": "error: connect refused",
    }
    assert report["rx"] == {t: f"ping {t}" for t in ("h.test", "a.test", "127.0.0.1")}
    assert report["smd"] == 1 and report["timer"] == [1] and report["cpd"] == "INTERNET_OK"
    assert sorted(report["opened"]) == [str(tmp_path / "hosts"), str(tmp_path / "resolv.conf")]
    assert report["processes"] == []
    # The one listener is the vhost's; the resolver's UDP sockets are all connected.
    [listener] = report["listeners"]
    assert listener.startswith(f"tcp 0100007F:{report['vhost_port']:04X} inode ")


def _resolve_many(tmp_path: Path, n: int) -> list[tuple[str, int, int]]:
    """(name, source port, query id) of every query of ``n`` names resolved one after
    another."""
    got: list[DnsAnswer] = []
    with FakeDns() as srv:
        hosts = tmp_path / "hosts"
        hosts.write_text("")
        with lwspy.Context(hosts_file=hosts, netlink=False, nameservers=[srv.address]) as ctx:
            for i in range(n):
                ctx.resolver.resolve(f"n{i}.test", got.append)
                for _ in range(100):
                    if len(got) == 2 * (i + 1):
                        break
                    ctx.service(5)
                    srv.pump()
        queries = srv.queries
    assert len(got) == 2 * n and all(a.disposition == "NXDOMAIN" for a in got)
    return [(q.question[0].name.to_text(), src[1], q.id) for _tcp, q, src in queries]


def collision_entropy(values: list[int]) -> float:
    """Rényi collision entropy (bits) estimated from the pairs of equal values."""
    pairs = sum(c * (c - 1) // 2 for c in Counter(values).values())
    n = len(values)
    return math.log2(n * (n - 1) / 2 / max(pairs, 1))


def test_dns_source_ports_and_ids_are_unpredictable(tmp_path: Path) -> None:
    n = 1000
    seen = _resolve_many(tmp_path, n)
    assert len(seen) == 2 * n  # AAAA and A of each name
    # A socket per name: a name's two queries share a port (apart from the rare name
    # whose two ids are equal, which gets two sockets), and each name has its own.
    by_name: dict[str, list[int]] = {}
    for name, port, _ in seen:
        by_name.setdefault(name, []).append(port)
    assert len(by_name) == n
    assert sum(len(set(p)) > 1 for p in by_name.values()) <= 3
    ports = [p[0] for p in by_name.values()]
    ids = [i for _, _, i in seen]
    # Sequential or small-step allocation would show as small steps between names.
    steps = [abs(b - a) for a, b in itertools.pairwise(ports)]
    assert sum(s < 64 for s in steps) < n // 20
    # 1,000 uniform draws from Linux's 28,232 ephemeral ports give ~18 equal pairs, and
    # 2,000 ids from 65,536 ~31: an estimate far below the space means a weak source.
    assert collision_entropy(ports) > 12
    assert collision_entropy(ids) > 14
    for bit in range(16):  # every id bit is set about half the time
        assert 0.4 < sum(i >> bit & 1 for i in ids) / len(ids) < 0.6


@pytest.mark.parametrize(
    "status",
    [b"301 Moved Permanently", b"302 Found", b"307 Temporary Redirect", b"308 Permanent Redirect"],
)
def test_the_cpd_probe_never_follows_a_redirect(status: bytes) -> None:
    portal = socket.create_server(("127.0.0.1", 0))  # where the redirect points
    portal.setblocking(False)
    location = f"http://127.0.0.1:{portal.getsockname()[1]}/login"
    srv = HttpFake(
        answer(b"HTTP/1.1 " + status + b"\r\nLocation: " + location.encode() + b"\r\n\r\n")
    )
    try:
        with lwspy.Context(netlink=False, cpd_url=srv.url()) as ctx:
            service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
            for _ in range(20):  # a follow-up would connect in these passes
                ctx.service(5)
            assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL and ctx.cpd.portal_url == location
            assert ctx.cpd.probes == 1 and len(srv.requests) <= 1
            with pytest.raises(BlockingIOError):  # nobody ever connected to the portal
                portal.accept()
    finally:
        srv.close()
        portal.close()
