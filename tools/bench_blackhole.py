"""Benchmark a bulk load of blackhole routes against open connections (issue 7's figure).

A two-namespace lab (veth, 198.51.100.0/24; ns A has ``default via 198.51.100.2``, ns B
holds peers 203.0.113.1-10 on lo and a plain listening socket). One lwspy context in A
opens ``--conns`` (1,000) connections to the peers, all over the default route: the
worst case for a design that checks every connection against every new route. Then one
``ip -batch`` adds ``--routes`` (20,000) blackhole /32 routes in 198.18.0.0/15 (none
covers a peer) and, last, ``blackhole 203.0.113.1/32`` (covers a tenth of the
connections). Figures, from ``ip`` returning: wall time until every route is in
``ctx.routes`` and the covered connections are closed ("route lost"), the longest single
``service()`` pass, the CPU time of the passes, and the connections left open (must be
the uncovered ones).

Needs root and ``ip``. Namespaces are named ``lwbh<pid>...`` and deleted on the way out;
documentation ranges and 198.18.0.0/15 only, traffic inside the namespaces. Usage::

    python tools/bench_blackhole.py [--conns 1000] [--routes 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from lwspy import Context, Protocol, Reason, WsiState
from lwspy._lab import setns_thread

A_ADDR, B_ADDR = "198.51.100.1", "198.51.100.2"
PEERS = [f"203.0.113.{i}" for i in range(1, 11)]


def ip(*args: str, stdin: str | None = None) -> None:
    r = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args[:6])}: {r.stderr.strip()}")


def run(conns: int, routes: int) -> dict[str, Any]:
    tag = f"lwbh{os.getpid()}"
    a, b = tag + "a", tag + "b"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ip("netns", "add", a)
    ip("netns", "add", b)
    fds = {n: os.open(f"/run/netns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in (a, b)}
    ctx: Context | None = None
    listener: socket.socket | None = None
    try:
        ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, addr in ((a, "va", A_ADDR), (b, "vb", B_ADDR)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", b, "-batch", "-", stdin="".join(f"addr add {p}/32 dev lo\n" for p in PEERS))
        ip("-n", a, "route", "add", "default", "via", B_ADDR)
        setns_thread(fds[b])
        listener = socket.socket()
        setns_thread(fds[a])
        listener.bind(("0.0.0.0", 0))
        listener.listen(socket.SOMAXCONN)
        port = listener.getsockname()[1]
        up = 0

        def cb(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
            nonlocal up
            if reason is Reason.RAW_CONNECTED:
                up += 1
            elif reason is Reason.CLIENT_CONNECTION_ERROR:
                raise RuntimeError(f"connect failed: {data}")
            return 0

        ctx = Context(protocols=[Protocol("raw", cb)], netlink=True)
        watcher = ctx._netlink
        assert watcher is not None
        while not watcher.coldplug_done:
            ctx.service(10)
        wsis = []
        for start in range(0, conns, 200):  # the peer's backlog takes them unaccepted
            batch = [
                ctx.connect(PEERS[i % len(PEERS)], port, protocol="raw")
                for i in range(start, min(conns, start + 200))
            ]
            wsis += batch
            while up < len(wsis):
                ctx.service(10)
        for _ in range(10):
            ctx.service(0)
        covered = [w for w in wsis if w.peer is not None and w.peer[0] == PEERS[0]]
        text = "".join(
            f"route add blackhole 198.18.{i // 256}.{i % 256}/32\n" for i in range(routes)
        )
        text += f"route add blackhole {PEERS[0]}/32\n"
        table = ctx.routes
        assert table is not None
        want = len(table) + routes + 1
        subprocess.run(["ip", "-n", a, "-batch", "-"], input=text, text=True, check=True)
        t0 = time.perf_counter()
        longest = cpu = 0.0
        while len(table) < want or any(w.state is not WsiState.CLOSED for w in covered):
            p0, c0 = time.perf_counter(), time.process_time()
            ctx.service(10)
            longest = max(longest, time.perf_counter() - p0)
            cpu += time.process_time() - c0
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("not done in 120 s")
        wall = time.perf_counter() - t0
        open_left = sum(w.state is WsiState.ESTABLISHED for w in wsis)
        reasons = {w.close_reason for w in covered}
        return {
            "wall": wall,
            "longest": longest,
            "cpu": cpu,
            "open": open_left,
            "want_open": conns - len(covered),
            "reasons": reasons,
        }
    finally:
        if ctx is not None:
            ctx.destroy()
        if listener is not None:
            listener.close()
        setns_thread(home)
        os.close(home)
        for n, fd in fds.items():
            os.close(fd)
            subprocess.run(["ip", "netns", "del", n], capture_output=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_blackhole: needs root (network namespaces)", file=sys.stderr)
        return 2
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(
        f"# bench_blackhole: {args.conns:,} connections, {args.routes:,} + 1 blackholes, "
        f"nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    rows = [run(args.conns, args.routes) for _ in range(args.reps)]
    for r in rows:
        if r["open"] != r["want_open"] or r["reasons"] != {"route lost"}:
            raise RuntimeError(f"wrong culls: {r}")
    med = statistics.median
    runs = ", ".join(f"{r['wall']:.3f}" for r in rows)
    print(
        f"wall until done: median {med(r['wall'] for r in rows):.3f} s "
        f"(runs {runs}); "
        f"longest pass median {med(r['longest'] for r in rows) * 1e3:.1f} ms; "
        f"CPU in service {med(r['cpu'] for r in rows):.3f} s; "
        f"{rows[0]['open']:,} connections left open, as they should be"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
