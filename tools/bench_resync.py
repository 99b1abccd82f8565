"""Benchmark the netlink role's recovery from an overflow (ENOBUFS) on a big table.

A fresh namespace holds a veth link with 198.51.100.1/24 and 160,000 routes: 120,000
IPv4 host routes in 198.18.0.0/15 via 198.51.100.2 and 40,000 IPv6 host routes in
2001:db8:ff::/96 via 2001:db8:1::2 (loaded with ``ip -batch``; they carry no traffic).
lwspy cold-plugs it; then its event socket's buffer is shrunk and 2,000 changes
(1,000 deletes, 1,000 adds) overflow it; the buffer is restored, and the loop is
serviced (``ctx.service(0)`` in a tight loop) until the table has been dumped again and
equals the kernel's once more. Figures: the longest loop pass during the recovery (the
goal: no pass holds the loop much longer than a cold-plug slice, ~50 ms, where the old
single-pass resync took ~1 s), the number of passes, and the recovery's wall time.

Needs root and ``ip`` (iproute2). The namespace is named ``lwresync<pid>`` and deleted on
the way out. Usage::

    python tools/bench_resync.py              # 3 runs
    python tools/bench_resync.py --runs 1
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lwspy import Context
from lwspy._lab import setns_thread

N4, N6 = 120_000, 40_000
BASE4 = int(ipaddress.IPv4Address("198.18.0.0"))
CHANGES = 1_000


def ip(*args: str, stdin: str | None = None) -> None:
    r = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args[:6])}: {r.stderr.strip()}")


@contextmanager
def namespace() -> Iterator[str]:
    name = f"lwresync{os.getpid()}"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ip("netns", "add", name)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ip("-n", name, "addr", "add", "198.51.100.1/24", "dev", "v0")
        ip("-n", name, "addr", "add", "2001:db8:1::1/64", "dev", "v0", "nodad")
        for dev in ("lo", "v0", "v1"):
            ip("-n", name, "link", "set", dev, "up")
        lines = [
            f"route add {ipaddress.IPv4Address(BASE4 + i)}/32 via 198.51.100.2" for i in range(N4)
        ]
        lines += [
            f"route add 2001:db8:ff::{i >> 16:x}:{i & 0xFFFF:x}/128 via 2001:db8:1::2"
            for i in range(N6)
        ]
        ip("-n", name, "-batch", "-", stdin="\n".join(lines) + "\n")
        setns_thread(fd)
        yield name
    finally:
        setns_thread(home)
        os.close(home)
        os.close(fd)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _busy(watcher: object) -> bool:
    """The role is still bringing its table up to date (a role without phases, as before
    the two-socket design, is done when its resync is counted)."""
    phase = getattr(watcher, "phase", None)
    return phase is not None and phase.name != "LIVE"


def run(ns: str, round_no: int) -> dict[str, float]:
    t0 = time.perf_counter()
    ctx = Context(netlink=True)
    watcher = ctx._netlink
    assert watcher is not None and ctx.routes is not None
    while not watcher.coldplug_done:
        ctx.service(100)
    coldplug = time.perf_counter() - t0
    try:
        routes_before = len(ctx.routes)
        resyncs = watcher.stats["resyncs"]
        watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        off = N4 + round_no * CHANGES  # new prefixes each round
        lines = [
            f"route del {ipaddress.IPv4Address(BASE4 + i)}/32"
            for i in range(round_no * CHANGES, (round_no + 1) * CHANGES)
        ]
        lines += [
            f"route add {ipaddress.IPv4Address(BASE4 + off + i)}/32 via 198.51.100.2"
            for i in range(CHANGES)
        ]
        ip("-n", ns, "-batch", "-", stdin="\n".join(lines) + "\n")
        watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        passes: list[float] = []
        t1 = time.perf_counter()
        while watcher.stats["resyncs"] == resyncs or _busy(watcher):
            p0 = time.perf_counter()
            ctx.service(0)
            passes.append(time.perf_counter() - p0)
            if time.perf_counter() - t1 > 60:
                raise RuntimeError("no resync within 60 s")
        recovery = time.perf_counter() - t1
        if watcher.stats["enobufs"] < 1:
            raise RuntimeError("the burst did not overflow the event socket")
        if len(ctx.routes) != routes_before:
            raise RuntimeError(f"{len(ctx.routes)} routes after the resync, {routes_before} before")
        return {
            "coldplug": coldplug,
            "max_pass": max(passes),
            "passes": len(passes),
            "recovery": recovery,
            "routes": len(ctx.routes),
        }
    finally:
        ctx.destroy()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    with namespace() as ns:
        results = [run(ns, i) for i in range(args.runs)]
    for r in results:
        print(
            f"routes {r['routes']:.0f}  cold plug {r['coldplug']:.3f} s"
            f"  recovery {r['recovery']:.3f} s in {r['passes']:.0f} passes,"
            f" longest pass {r['max_pass'] * 1000:.1f} ms"
        )
    worst = max(r["max_pass"] for r in results)
    print(
        f"median recovery {statistics.median(r['recovery'] for r in results):.3f} s,"
        f" longest pass of all runs {worst * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
