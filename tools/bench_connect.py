"""Benchmark lwspy's connect machinery (resolve, RFC 6724 sort, Happy Eyeballs, the CAO
database) against its peers, measured in the same run.

1. **Happy Eyeballs in a namespace lab** (issue 10's goal: first connect <= 260 ms,
   second <= 5 ms). Namespace "a" (the clients) and "b" (a listener on every address)
   joined by a veth pair; ``va`` 198.51.100.1/24 + 2001:db8:1::1/64, ``vb``
   198.51.100.2/24 + 2001:db8:1::2/64. Two names, from a hosts file (lwspy:
   ``Context(hosts_file=)``; the others: the same file bind-mounted on /etc/hosts in a
   private mount namespace of this process):

   * ``deadv6.test``: AAAA 2001:db8:1::99 (on the veth subnet, held by nobody: a connect
     hangs about 3 s in neighbour discovery) and A 198.51.100.2;
   * ``deadv4.test``: A 198.51.100.99 (the same, for IPv4, listed first) and AAAA
     2001:db8:1::2.

   Figure: time from the connect call to "connected", first and second connect of a
   fresh client (lwspy: a fresh Context, which learns; the others learn nothing), the
   median of the runs. Peers: asyncio ``open_connection(happy_eyeballs_delay=0.25)``,
   trio ``open_tcp_stream``, aiohappyeyeballs ``start_connection`` and Twisted
   ``HostnameEndpoint`` (each if installed) and ``socket.create_connection``. The
   neighbour cache is flushed before every connect, so no client profits from another's
   failed neighbour lookup.
2. **Connect machinery cost**: 10,000 sequential loopback connects, each closed once
   connected: lwspy to a hosts-file name (through the resolver, the sort, the race and
   the CAO database, which records every one) against asyncio ``create_connection`` to
   the IP literal (which records nothing). Goal: lwspy >= 1.0x asyncio's connects/s.

Needs root and ``ip`` (iproute2) for part 1. Namespaces are named ``lwconn<pid>...``
and deleted on the way out; only documentation addresses are used. Usage::

    python tools/bench_connect.py            # both parts (about 1 min)
    python tools/bench_connect.py --quick    # one run each, 2,000 loopback connects
    python tools/bench_connect.py --part 2   # only the loopback cost
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lwspy
from lwspy import CaoResult, Context, Protocol, Reason, WsiState
from lwspy.roles import raw_skt

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
A4, B4, A6, B6 = "198.51.100.1", "198.51.100.2", "2001:db8:1::1", "2001:db8:1::2"
HOLE6, HOLE4 = "2001:db8:1::99", "198.51.100.99"
NAMES = {"deadv6.test": (HOLE6, B4), "deadv4.test": (HOLE4, B6)}
FIRST_GOAL_MS, SECOND_GOAL_MS = 260.0, 5.0
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


class Lab:
    """Namespaces "a" and "b", a veth pair, a listener in "b"; this thread can enter "a"."""

    def __init__(self) -> None:
        tag = f"lwconn{os.getpid()}"
        self.a, self.b = f"{tag}a", f"{tag}b"
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}
        for ns in (self.a, self.b):
            run("ip", "netns", "add", ns)
            self._fds[ns] = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        run("ip", "link", "add", "va", "netns", self.a, "type", "veth", "peer", "name", "vb",
            "netns", self.b)  # fmt: skip
        for ns, dev, v4, v6 in ((self.a, "va", A4, A6), (self.b, "vb", B4, B6)):
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            run("ip", "-n", ns, "link", "set", dev, "up")
        for _ in range(500):  # link-local DAD done: IPv6 neighbour discovery works
            if not any(run("ip", "-n", ns, "-6", "addr", "show", "tentative").strip()
                       for ns in (self.a, self.b)):  # fmt: skip
                break
            time.sleep(0.01)
        with self.inside(self.b):
            self.listener = socket.socket(socket.AF_INET6)
        self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.listener.bind(("::", 0))
        self.listener.listen(4096)
        self.port = self.listener.getsockname()[1]

    def drain(self) -> None:
        """Accept and drop what the clients connected, and forget the neighbours."""
        self.listener.setblocking(False)
        try:
            while True:
                self.listener.accept()[0].close()
        except BlockingIOError:
            pass
        run("ip", "-n", self.a, "neigh", "flush", "dev", "va")

    @contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        _check(_libc.setns(self._fds[ns], CLONE_NEWNET))
        try:
            yield
        finally:
            _check(_libc.setns(self._home, CLONE_NEWNET))

    def enter_a(self) -> None:
        _check(_libc.setns(self._fds[self.a], CLONE_NEWNET))

    def close(self) -> None:
        _check(_libc.setns(self._home, CLONE_NEWNET))
        self.listener.close()
        for ns, fd in self._fds.items():
            os.close(fd)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        os.close(self._home)


def private_hosts(text: str) -> str:
    """This process gets its own mount namespace with ``text`` on /etc/hosts (for
    getaddrinfo); returns the file's path (for lwspy's hosts_file)."""
    fd, path = tempfile.mkstemp(prefix="lwconn-hosts-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _check(_libc.unshare(CLONE_NEWNS))
    run("mount", "--make-rprivate", "/")
    run("mount", "--bind", path, "/etc/hosts")
    return path


# -- the clients: each returns (first_ms, second_ms) for one fresh client -----------------


def lwspy_client(lab: Lab, name: str, hosts: str) -> tuple[float, float]:
    out: list[float] = []
    state: dict[str, float] = {}

    def cb(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is Reason.RAW_CONNECTED:
            state["done"] = time.perf_counter()
            return 1
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            raise RuntimeError(f"lwspy: {data}")
        return 0

    with Context(protocols=[Protocol("c", cb)], hosts_file=hosts, netlink=True) as ctx:
        while ctx.system.state is not lwspy.SystemState.OPERATIONAL:
            ctx.service(5)
        for _ in range(2):
            lab.drain()
            state.clear()
            t0 = time.perf_counter()
            w = ctx.connect(name, lab.port)
            while "done" not in state:
                ctx.service(50)
            out.append((state["done"] - t0) * 1000)
            assert w.caos[0].result is CaoResult.WON
            while w.state is not WsiState.CLOSED:
                ctx.service(0)
    return out[0], out[1]


def asyncio_client(lab: Lab, name: str, hosts: str) -> tuple[float, float]:
    async def main() -> list[float]:
        out = []
        for _ in range(2):
            lab.drain()
            t0 = time.perf_counter()
            _, writer = await asyncio.open_connection(name, lab.port, happy_eyeballs_delay=0.25)
            out.append((time.perf_counter() - t0) * 1000)
            writer.close()
        return out

    first, second = asyncio.run(main())
    return first, second


def stdlib_client(lab: Lab, name: str, hosts: str) -> tuple[float, float]:
    out = []
    for _ in range(2):
        lab.drain()
        t0 = time.perf_counter()
        socket.create_connection((name, lab.port)).close()
        out.append((time.perf_counter() - t0) * 1000)
    return out[0], out[1]


def trio_client(lab: Lab, name: str, hosts: str) -> tuple[float, float]:
    import trio

    async def main() -> list[float]:
        out = []
        for _ in range(2):
            lab.drain()
            t0 = time.perf_counter()
            stream = await trio.open_tcp_stream(name, lab.port, happy_eyeballs_delay=0.25)
            out.append((time.perf_counter() - t0) * 1000)
            await stream.aclose()
        return out

    first, second = trio.run(main)
    return first, second


def aiohappyeyeballs_client(lab: Lab, name: str, hosts: str) -> tuple[float, float]:
    import aiohappyeyeballs

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        out = []
        for _ in range(2):
            lab.drain()
            t0 = time.perf_counter()
            infos = await loop.getaddrinfo(name, lab.port, type=socket.SOCK_STREAM)
            sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.25)
            out.append((time.perf_counter() - t0) * 1000)
            sock.close()
        return out

    first, second = asyncio.run(main())
    return first, second


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        print(f"   ({module} is not installed: its row is left out)")
        return False
    return True


def twisted_clients(lab: Lab, runs: int) -> dict[str, list[tuple[float, float]]] | None:
    """Every Twisted run in one reactor (it cannot be restarted)."""
    try:
        from twisted.internet import defer, endpoints, protocol, reactor
    except ImportError:
        return None
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in NAMES}
    failure: list[Any] = []

    @defer.inlineCallbacks  # type: ignore[misc]
    def go() -> Any:
        try:
            for name in NAMES:
                for _ in range(runs):
                    pair = []
                    for _ in range(2):
                        lab.drain()
                        ep = endpoints.HostnameEndpoint(reactor, name.encode(), lab.port)
                        t0 = time.perf_counter()
                        p = yield ep.connect(protocol.Factory.forProtocol(protocol.Protocol))
                        pair.append((time.perf_counter() - t0) * 1000)
                        p.transport.abortConnection()
                    results[name].append((pair[0], pair[1]))
        except Exception as e:  # reported after the reactor stops
            failure.append(e)
        finally:
            reactor.stop()

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    if failure:
        raise failure[0]
    return results


def part1(runs: int) -> None:
    text = "".join(f"{a} {n}\n{b} {n}\n" for n, (a, b) in NAMES.items())
    hosts = private_hosts(text)
    lab = Lab()
    try:
        lab.enter_a()
        clients: dict[str, Callable[[Lab, str, str], tuple[float, float]]] = {
            "lwspy": lwspy_client,
            "asyncio (happy_eyeballs_delay=0.25)": asyncio_client,
            "socket.create_connection": stdlib_client,
        }
        if _installed("trio"):
            clients["trio open_tcp_stream"] = trio_client
        if _installed("aiohappyeyeballs"):
            clients["aiohappyeyeballs start_connection"] = aiohappyeyeballs_client
        table: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for label, fn in clients.items():
            table[label] = {n: [fn(lab, n, hosts) for _ in range(runs)] for n in NAMES}
        tw = twisted_clients(lab, runs)
        if tw is not None:
            table["Twisted HostnameEndpoint"] = tw
        print("\n1. Happy Eyeballs in the lab: time to connected, ms (median of "
              f"{runs} fresh clients)")  # fmt: skip
        print(f"   {'client':38} {'dead AAAA first':>20} {'dead A first':>20}")
        print(f"   {'':38} {'first':>9} {'second':>10} {'first':>9} {'second':>10}")
        for label, per in table.items():
            cells = []
            for n in NAMES:
                firsts = [f for f, _ in per[n]]
                seconds = [s for _, s in per[n]]
                cells.append(f"{statistics.median(firsts):9.1f} {statistics.median(seconds):10.1f}")
            print(f"   {label:38} {' '.join(cells)}")
        ours = table["lwspy"]
        worst_first = max(statistics.median([f for f, _ in ours[n]]) for n in NAMES)
        worst_second = max(statistics.median([s for _, s in ours[n]]) for n in NAMES)
        print(f"   goal: lwspy first <= {FIRST_GOAL_MS:.0f} ms ({worst_first:.1f}: "
              f"{'met' if worst_first <= FIRST_GOAL_MS else 'NOT met'}), second <= "
              f"{SECOND_GOAL_MS:.0f} ms ({worst_second:.1f}: "
              f"{'met' if worst_second <= SECOND_GOAL_MS else 'NOT met'})")  # fmt: skip
    finally:
        lab.close()
        run("umount", "/etc/hosts")
        os.unlink(hosts)


# -- 2. the cost of the machinery on loopback ---------------------------------------------


def lwspy_loopback(n: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as f:
        f.write("127.0.0.1 lab.test\n")
        f.flush()
        done = [0]

        def cli(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
            if reason is Reason.RAW_CONNECTED:
                done[0] += 1
                return 1
            if reason is Reason.CLIENT_CONNECTION_ERROR:
                raise RuntimeError(data)
            return 0

        protos = [Protocol("c", cli), Protocol("s", lambda w, r, u, d: 0)]
        with Context(protocols=protos, hosts_file=f.name, netlink=False) as ctx:
            vh = ctx.create_vhost("default", port=0, iface="127.0.0.1", accept_protocol="s")
            assert vh.port is not None
            t0 = time.perf_counter()
            for i in range(n):
                ctx.connect("lab.test", vh.port, protocol="c")
                while done[0] == i:
                    ctx.service(50)
            dt = time.perf_counter() - t0
            assert len(ctx.cao_db) == min(n, ctx.cao_db.history)
    return n / dt


def asyncio_loopback(n: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        t0 = time.perf_counter()
        for _ in range(n):
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            transport.close()
        dt = time.perf_counter() - t0
        server.close()
        await server.wait_closed()
        return n / dt

    return asyncio.run(main())


def lwspy_loopback_full_close(n: int) -> float:
    """lwspy_loopback with every close taking the shutdown + drain path (the idle-socket
    fast path of roles/raw_skt.py off): the "before" of that change, in the same run."""
    idle = raw_skt._idle
    raw_skt._idle = lambda sock: False
    try:
        return lwspy_loopback(n)
    finally:
        raw_skt._idle = idle


def part2(n: int, runs: int) -> None:
    ours: list[float] = []
    full: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):  # in turns, so that a change of load hits all three alike
        ours.append(lwspy_loopback(n))
        full.append(lwspy_loopback_full_close(n))
        theirs.append(asyncio_loopback(n))
    a, f, b = statistics.median(ours), statistics.median(full), statistics.median(theirs)
    print(f"\n2. {n:,} sequential loopback connects (median of {runs} runs, in turns)")
    print(f"   lwspy, hosts-file name, CAOs recorded : {a:8.0f} connects/s")
    print(f"   the same, shutdown + drain at every close: {f:8.0f} connects/s ({f / b:.2f}x)")
    print(f"   asyncio create_connection, IP literal : {b:8.0f} connects/s")
    print(f"   goal: lwspy >= 1.0x asyncio ({a / b:.2f}x: {'met' if a >= b else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run each, 2,000 connects")
    ap.add_argument("--part", type=int, choices=(1, 2), help="only this part")
    args = ap.parse_args()
    runs = 1 if args.quick else 3
    print(f"lwspy {lwspy.__version__}, Python {platform.python_version()}, {platform.machine()}")
    if args.part in (None, 2):
        part2(2_000 if args.quick else 10_000, runs)
    if args.part in (None, 1):
        if os.geteuid() != 0:
            sys.exit("part 1 needs root (network and mount namespaces)")
        part1(runs)


if __name__ == "__main__":
    main()
