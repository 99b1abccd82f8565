"""The namespace lab: private network namespaces made by the tests themselves.

Two namespaces joined by a veth pair, documentation addresses only:

    ns "a" (lwspy under test)              ns "b" (gateway and peer)
    va 198.51.100.1/24, 2001:db8:1::1/64 -- vb 198.51.100.2/24, 2001:db8:1::2/64
    203.0.113.0/24 via 198.51.100.2         lo 203.0.113.1/32, 2001:db8:2::1/128
    2001:db8:2::/64 via 2001:db8:1::2       forwarding on

The test thread enters a namespace with setns(2) for as long as it creates sockets
there: a socket stays in the namespace it was made in. Where namespaces cannot be made
the tests skip with the reason, unless LWSPY_REQUIRE_NETNS=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import pytest

from lwspy._lab import setns_thread

DNSMASQ = "/usr/sbin/dnsmasq"
RTN_NAMES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}


def _why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    name = f"lwspy-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


_WHY = _why_no_netns()


def require_netns() -> None:
    """Skip (or, under LWSPY_REQUIRE_NETNS=1, fail) when namespaces cannot be made."""
    if _WHY is not None:
        if os.environ.get("LWSPY_REQUIRE_NETNS") == "1":
            pytest.fail(f"LWSPY_REQUIRE_NETNS=1 but {_WHY}")
        pytest.skip(_WHY)


def require_dnsmasq() -> None:
    """Skip (or, under LWSPY_REQUIRE_NETNS=1, fail) when dnsmasq is not installed."""
    if not os.access(DNSMASQ, os.X_OK):
        why = f"{DNSMASQ} is not installed (Debian dnsmasq-base)"
        if os.environ.get("LWSPY_REQUIRE_NETNS") == "1":
            pytest.fail(f"LWSPY_REQUIRE_NETNS=1 but {why}")
        pytest.skip(why)


class Lab:
    """Two namespaces "a" and "b" joined by a veth pair; see the module docstring."""

    A_ADDR = "198.51.100.1"
    B_ADDR = "198.51.100.2"
    PEER = "203.0.113.1"
    A_ADDR6 = "2001:db8:1::1"
    B_ADDR6 = "2001:db8:1::2"
    PEER6 = "2001:db8:2::1"

    def __init__(self) -> None:
        tag = f"{os.getpid()}"
        self.ns = {"a": f"lwspy{tag}a", "b": f"lwspy{tag}b"}
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}
        self.current: str | None = None

    def ip(self, ns: str, *args: str, check: bool = True) -> str:
        """Run ``ip -n <ns> args...``; returns its stdout."""
        r = subprocess.run(
            ["ip", "-n", self.ns[ns], *args], capture_output=True, text=True, check=False
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def sysctl(self, ns: str, key: str, value: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.ns[ns], "sysctl", "-qw", f"{key}={value}"], check=True
        )

    def build(self) -> None:
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
        for key, name in self.ns.items():
            self._fds[key] = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        a, b = self.ns["a"], self.ns["b"]
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                "va",
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "name",
                "vb",
                "netns",
                b,
            ],
            check=True,
        )
        self.sysctl("b", "net.ipv4.ip_forward", "1")
        self.sysctl("b", "net.ipv6.conf.all.forwarding", "1")
        for ns, dev, v4, v6 in (
            ("a", "va", self.A_ADDR, self.A_ADDR6),
            ("b", "vb", self.B_ADDR, self.B_ADDR6),
        ):
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", f"{v4}/24", "dev", dev)
            self.ip(ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self.ip(ns, "link", "set", dev, "up")
        self.ip("b", "addr", "add", f"{self.PEER}/32", "dev", "lo")
        self.ip("b", "addr", "add", f"{self.PEER6}/128", "dev", "lo")
        self.ip("a", "route", "add", "203.0.113.0/24", "via", self.B_ADDR)
        self.ip("a", "route", "add", "2001:db8:2::/64", "via", self.B_ADDR6)

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Run the block with this thread in namespace ``ns``; sockets made there stay there."""
        before = self.current
        self.enter(ns)
        try:
            yield
        finally:
            if before is None:
                self.leave()
            else:
                self.enter(before)

    def enter(self, ns: str) -> None:
        setns_thread(self._fds[ns])
        self.current = ns

    def leave(self) -> None:
        setns_thread(self._home)
        self.current = None

    def kernel_json(
        self, ns: str = "a", family: int | None = None, numeric: bool = False
    ) -> Iterator[tuple[int, str, int, dict[str, Any]]]:
        """The routes of tables main and local (of ``family``, default both) as
        ``ip -j route show table all`` gives them (``numeric``: with ``-N``), each as
        ``(family, prefix with its length, table number, the JSON object)``."""
        for fam, width in ((socket.AF_INET, 32), (socket.AF_INET6, 128)):
            if family is not None and fam != family:
                continue
            args = ["-N"] if numeric else []
            text = self.ip(ns, *args, "-j", f"-{4 if width == 32 else 6}", "route", "show",
                           "table", "all")  # fmt: skip
            for r in json.loads(text or "[]"):
                if numeric:
                    table = int(r.get("table", 254))
                else:  # by name: main, local or another (0)
                    table = {"main": 254, "local": 255}.get(r.get("table", "main"), 0)
                if table not in (254, 255):
                    continue
                dst = r["dst"]
                if dst == "default":
                    dst = "0.0.0.0/0" if width == 32 else "::/0"
                elif "/" not in dst:
                    dst = f"{dst}/{width}"
                yield int(fam), dst, table, r

    def kernel_routes(self, ns: str = "a") -> set[tuple[object, ...]]:
        """Tables main and local as ``ip -j route show table all`` gives them, normalised
        to (family, prefix, table, type, gateway, ifindex, metric)."""
        index = {name: idx for idx, name in socket.if_nameindex()}
        return {
            (
                fam,
                str(ipaddress.ip_network(dst, strict=False)),
                table,
                r.get("type", "unicast"),
                r.get("gateway"),
                index.get(r.get("dev", "")),
                r.get("metric", 0),
            )
            for fam, dst, table, r in self.kernel_json(ns)
        }

    @staticmethod
    def table_routes(table: Iterable[Any]) -> set[tuple[object, ...]]:
        """lwspy's RouteTable in the same normal form as :meth:`kernel_routes`."""
        return {
            (
                r.family,
                f"{r.dst}/{r.dst_len}",
                r.table,
                RTN_NAMES.get(r.type, str(r.type)),
                r.gateway,
                r.oif,
                r.priority,
            )
            for r in table
        }

    def destroy(self) -> None:
        self.leave()
        for fd in self._fds.values():
            os.close(fd)
        os.close(self._home)
        for name in self.ns.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    lab = Lab()
    try:
        lab.build()
        lab.enter("a")
        yield lab
    finally:
        lab.destroy()


class Dnsmasq:
    """dnsmasq in namespace "b" on port 53 of ``listen`` (default: ``B_ADDR``), answering
    the names of ``hosts`` (hosts-file text) and nothing else under ``.test``; ready when
    made (it answered an A query for ``probe``), until :meth:`stop`. ``ttl``: the TTL of
    its answers (None: dnsmasq's default, 0)."""

    def __init__(
        self,
        lab: Lab,
        workdir: Path,
        hosts: str,
        probe: str,
        listen: Sequence[str] = (),
        ttl: int | None = 300,
    ) -> None:
        listen = list(listen) or [lab.B_ADDR]
        (workdir / "hosts").write_text(hosts)
        self.log_path = workdir / "dnsmasq.log"
        self.log = self.log_path.open("w")
        args = [
            "ip", "netns", "exec", lab.ns["b"], DNSMASQ,
            "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--addn-hosts={workdir / 'hosts'}", "--local=/test/",
            *([f"--local-ttl={ttl}"] if ttl is not None else []),
            *(f"--listen-address={a}" for a in listen),
            "--bind-interfaces", "--port=53", f"--pid-file={workdir / 'dnsmasq.pid'}",
            "--user=root", "--log-facility=-",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait(dns.message.make_query(probe, "A"), listen[0])
        except BaseException:
            self.stop()
            raise

    def _wait(self, query: dns.message.Message, server: str) -> None:
        for _ in range(100):  # ready when it answers
            try:
                dns.query.udp(query, server, timeout=0.1)
                return
            except (dns.exception.Timeout, OSError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"dnsmasq exited: {self.log_path.read_text()}") from None
        raise RuntimeError("dnsmasq did not answer")

    def stop(self) -> None:
        """Stop it (and close its log); safe to call twice."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(5)
        self.log.close()
