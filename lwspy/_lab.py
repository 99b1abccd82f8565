"""The demo's private network lab: two network namespaces joined by a veth pair.

Documentation addresses only, inside namespaces this process makes and removes::

    ns "a" (the demo's lwspy context)        ns "b" (router, DNS, echo server, portal)
    va 198.51.100.1/24, 2001:db8:1::1/64 --- vb 198.51.100.2/24, 2001:db8:1::2/64
    203.0.113.0/25 via 198.51.100.2          lo 203.0.113.1/32 (the echo server's address)
                                             lo 203.0.113.200/32 (the captive portal's)
                                             dnsmasq on 198.51.100.2:53

dnsmasq answers ``echo.lab.test`` with AAAA 2001:db8:1::99 (on the veth subnet and held by
nobody: a connect to it hangs in neighbour discovery, a black hole) and A 203.0.113.1;
``check.lab.test`` (the CPD probe's host) and ``portal.lab.test`` with 203.0.113.200,
where the portal listens: outside 203.0.113.0/25, so reachable only once "a" has a
default route.

The lab runs the ``ip`` and ``dnsmasq`` programs (the library proper runs none). Namespace
names carry the pid, so parallel runs do not collide; :meth:`Lab.destroy` removes
everything, and :func:`sweep` removes what a killed earlier run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import glob
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["DNSMASQ", "Lab", "sweep", "why_not", "why_not_and_fix"]

DNSMASQ = "/usr/sbin/dnsmasq"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PREFIX = "lwspydemo"
_NAME = re.compile(rf"^{PREFIX}(\d+)[ab]\b")


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded once (``find_library`` may run a program: not per call)."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def why_not() -> str | None:
    """Why the lab cannot be built here (a sentence), or None when it can."""
    found = why_not_and_fix()
    return None if found is None else found[0]


def why_not_and_fix() -> tuple[str, str] | None:
    """Why the lab cannot be built here and what would make it run (two sentences), or
    None when it can."""
    if not os.path.exists("/proc/self/ns/net"):
        return "network namespaces are a Linux feature", "Run it on Linux to see them."
    if os.geteuid() != 0:
        return (
            f"making network namespaces needs root (this is uid {os.geteuid()})",
            "Run it as root to see them.",
        )
    if shutil.which("ip") is None:
        return (
            "iproute2's ip command is not installed",
            "Install iproute2 (Debian package iproute2) to see them.",
        )
    if not os.access(DNSMASQ, os.X_OK):
        return (
            f"{DNSMASQ} is not installed (Debian package dnsmasq-base)",
            "Install dnsmasq-base to see them.",
        )
    return None


def _run(*args: str) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a zombie (state Z, exited but not reaped yet,
    which ``kill(pid, 0)`` still reaches) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return True  # no /proc to look at: kill() found it
    # "pid (comm) state ...": comm may hold spaces and parentheses, so split at the last ")".
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def sweep() -> list[str]:
    """Delete the lab namespaces of demo runs that no longer exist, stopping what still
    runs in them (a killed run's dnsmasq), and their temporary directories; returns the
    names of the namespaces."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    gone = []
    for line in r.stdout.splitlines():
        m = _NAME.match(line)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            name = line.split()[0]
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGTERM)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            gone.append(name)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "lwspy-demo-*-*")):
        pid = os.path.basename(path).split("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return gone


def _die_with_parent() -> None:
    # Runs in the child before exec: if the demo is killed outright, dnsmasq goes too.
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _dns_query(name: str, qid: int) -> bytes:
    """A minimal DNS query for the A record of ``name`` (RFC 1035 §4.1), recursion desired."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


class Lab:
    """The namespaces, the veth pair, the routes and dnsmasq; see the module docstring."""

    A_ADDR = "198.51.100.1"
    B_ADDR = "198.51.100.2"
    A_ADDR6 = "2001:db8:1::1"
    B_ADDR6 = "2001:db8:1::2"
    PEER = "203.0.113.1"
    PEER_NET = "203.0.113.0/25"
    PORTAL_ADDR = "203.0.113.200"
    HOLE6 = "2001:db8:1::99"
    NAME = "echo.lab.test"
    CHECK = "check.lab.test"
    PORTAL = "portal.lab.test"

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = {"a": f"{PREFIX}{pid}a", "b": f"{PREFIX}{pid}b"}
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}
        self._made: list[str] = []
        self._dir = tempfile.mkdtemp(prefix=f"lwspy-demo-{pid}-")
        self.dnsmasq: subprocess.Popen[bytes] | None = None
        self.inside_a = False

    def ip(self, ns: str, *args: str) -> str:
        """Run ``ip -n <namespace> args...``; returns its output, raises on failure."""
        return _run("ip", "-n", self.ns[ns], *args)

    def build(self) -> None:
        """Make the namespaces, link them, address them, start dnsmasq and wait for it."""
        for key, name in self.ns.items():
            _run("ip", "netns", "add", name)
            self._made.append(name)
            self._fds[key] = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        a, b = self.ns["a"], self.ns["b"]
        _run("ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb",
             "netns", b)  # fmt: skip
        _run("ip", "netns", "exec", b, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns, dev, v4, v6 in (
            ("a", "va", self.A_ADDR, self.A_ADDR6),
            ("b", "vb", self.B_ADDR, self.B_ADDR6),
        ):
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", f"{v4}/24", "dev", dev)
            self.ip(ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self.ip(ns, "link", "set", dev, "up")
        self.ip("b", "addr", "add", f"{self.PEER}/32", "dev", "lo")
        self.ip("b", "addr", "add", f"{self.PORTAL_ADDR}/32", "dev", "lo")
        self.add_peer_route()
        self._start_dnsmasq()

    def add_peer_route(self) -> None:
        """The route from "a" to the echo server's network, through "b"."""
        self.ip("a", "route", "add", self.PEER_NET, "via", self.B_ADDR)

    def _start_dnsmasq(self) -> None:
        hosts = os.path.join(self._dir, "hosts")
        with open(hosts, "w", encoding="ascii") as f:
            f.write(f"{self.HOLE6} {self.NAME}\n{self.PEER} {self.NAME}\n")
            f.write(f"{self.PORTAL_ADDR} {self.CHECK} {self.PORTAL}\n")
        _libc()  # loaded here, not in the child between fork and exec
        log = open(os.path.join(self._dir, "dnsmasq.log"), "wb")  # noqa: SIM115
        with log:
            self.dnsmasq = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.ns["b"],
                    DNSMASQ,
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    f"--addn-hosts={hosts}",
                    "--local=/test/",
                    "--local-ttl=300",
                    f"--listen-address={self.B_ADDR}",
                    "--bind-interfaces",
                    "--port=53",
                    "--user=root",
                    f"--pid-file={os.path.join(self._dir, 'dnsmasq.pid')}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet
            )
        with self.inside("a"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(0.1)
            for qid in range(1, 51):  # ready when it answers
                if self.dnsmasq.poll() is not None:
                    break
                try:
                    sock.sendto(_dns_query(self.NAME, qid), (self.B_ADDR, 53))
                    if sock.recv(512)[:2] == struct.pack("!H", qid):
                        return
                except OSError:
                    time.sleep(0.05)
        with open(os.path.join(self._dir, "dnsmasq.log"), encoding="utf-8", errors="replace") as f:
            raise RuntimeError(f"dnsmasq did not start: {f.read().strip()}")

    @contextlib.contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Run the block with this thread in namespace ``ns``; sockets made there stay there."""
        _setns(self._fds[ns])
        try:
            yield
        finally:
            _setns(self._fds["a"] if self.inside_a else self._home)

    def enter_a(self) -> None:
        """Move this thread into namespace "a" until :meth:`destroy`."""
        _setns(self._fds["a"])
        self.inside_a = True

    def ns_fd(self, ns: str) -> int:
        """An open fd of namespace ``ns`` (for another thread's setns)."""
        return self._fds[ns]

    def destroy(self) -> None:
        """Stop dnsmasq, leave the namespaces and delete them; safe to call twice."""
        if self.dnsmasq is not None:
            self.dnsmasq.terminate()
            try:
                self.dnsmasq.wait(5)
            except subprocess.TimeoutExpired:
                self.dnsmasq.kill()
                self.dnsmasq.wait()
            self.dnsmasq = None
        if self._home >= 0:
            _setns(self._home)
            os.close(self._home)
            self._home = -1
        self.inside_a = False
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        while self._made:
            subprocess.run(
                ["ip", "netns", "del", self._made.pop()], capture_output=True, check=False
            )
        shutil.rmtree(self._dir, ignore_errors=True)


def setns_thread(fd: int) -> None:
    """Move the calling thread into the network namespace open as ``fd`` (setns(2): the
    ``os.setns`` of Python 3.12, for 3.10 too)."""
    _setns(fd)
