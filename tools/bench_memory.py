"""Memory per idle connection: lwspy against asyncio and a bare socket list (issue 2).

Each server runs in a fresh process of its own and listens on 127.0.0.1; a separate
client process opens ``--conns`` (10,000) plain TCP connections to it and holds them
open. The server accepts every one (lwspy: a raw-skt wsi per connection, watched for
reads; asyncio: a ``Protocol`` per connection on the default loop; the floor: a blocking
``accept()`` loop that keeps the socket objects in a list, with no selector), then
reports how much it grew from just before the first connection to just after the last
(``gc.collect()`` at both ends), divided by the number of connections:

* **Python heap**: ``tracemalloc`` (every allocation made through Python's allocators);
  measured in its own server process, since tracing costs memory itself;
* **RSS**: ``VmRSS`` from ``/proc/self/status`` (pages the process touched: the heap
  above plus allocator slack and arena overhead), in a server process without tracing.

Counted: the server process only (the client's sockets live in another process). Not
counted: kernel memory (socket buffers, the fd table, epoll's own entries), which is the
same for every peer. The peers run interleaved in one run; the RSS figure is the median
of ``--reps`` (3) fresh processes, the heap figure is exact and measured once. For
lwspy, the largest heap growth is also listed by source line (tracemalloc ``lineno``).
RLIMIT_NOFILE's soft limit is raised to the hard one in every process. Usage::

    python tools/bench_memory.py            # 10,000 connections (about 40 s)
    python tools/bench_memory.py --quick    # 2,000 connections, one RSS run each
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

HOST = "127.0.0.1"
PEERS = ("lwspy", "asyncio", "sockets")
GOAL_BYTES = 800
TOP_LINES = 15


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < need:
        raise SystemExit(f"bench_memory: RLIMIT_NOFILE hard limit {hard} < {need} needed")


def vm_rss() -> int:
    """This process's resident set size in bytes (VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- the server side (one per process: ``--serve PEER --mode rss|heap``) ----------------------


class Meter:
    """Takes the baseline and the final reading in one of the two modes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.base = 0
        self.snap0: tracemalloc.Snapshot | None = None

    def start(self) -> None:
        gc.collect()
        if self.mode == "heap":
            tracemalloc.start(1)
            self.snap0 = tracemalloc.take_snapshot()
            self.base = tracemalloc.get_traced_memory()[0]
        else:
            self.base = vm_rss()

    def finish(self, conns: int, held: int) -> dict[str, Any]:
        gc.collect()
        out: dict[str, Any] = {"conns": conns, "held": held}
        if self.mode == "heap":
            out["bytes"] = tracemalloc.get_traced_memory()[0] - self.base
            assert self.snap0 is not None
            own = [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, os.path.abspath(__file__)),
            ]
            snap = tracemalloc.take_snapshot().filter_traces(own)
            diff = snap.compare_to(self.snap0.filter_traces(own), "lineno")
            out["top"] = [
                (str(d.traceback[0].filename), d.traceback[0].lineno, d.size_diff, d.count_diff)
                for d in diff[:TOP_LINES]
            ]
            tracemalloc.stop()
        else:
            out["bytes"] = vm_rss() - self.base
        return out


def _ready(port: int) -> None:
    print(f"PORT {port}", flush=True)


def _result(res: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(res), flush=True)
    sys.stdin.read()  # hold everything until the parent is done with the client


def serve_lwspy(conns: int, meter: Meter) -> None:
    from lwspy import Context, Protocol, Reason

    adopted = [0]
    raw_adopt = Reason.RAW_ADOPT

    def idle(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is raw_adopt:
            adopted[0] += 1
            if adopted[0] == conns:
                wsi.ctx.stop()
        return 0

    with Context(protocols=[Protocol("idle", idle)], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=HOST)
        assert vh.port is not None
        ctx.service(0)  # one pass: anything the first pass sets up is not per connection
        meter.start()
        _ready(vh.port)
        ctx.run()
        held = sum(1 for w in ctx.pt.fds.values() if w.role.name == "raw_skt")
        res = meter.finish(conns, held)
        _result(res)


def serve_asyncio(conns: int, meter: Meter) -> None:
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        all_in = loop.create_future()
        held: list[Any] = []

        class Idle(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                held.append(None)
                if len(held) == conns:
                    all_in.set_result(None)

        server = await loop.create_server(Idle, HOST, 0, backlog=socket.SOMAXCONN)
        await asyncio.sleep(0)
        meter.start()
        _ready(server.sockets[0].getsockname()[1])
        await all_in
        await asyncio.sleep(0.05)  # let every transport finish its setup callbacks
        res = meter.finish(conns, len(held))
        del held[:]  # the count only; the transports are held by the loop
        _result(res)

    asyncio.run(main())


def serve_sockets(conns: int, meter: Meter) -> None:
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(socket.SOMAXCONN)
    socks: list[socket.socket] = []
    meter.start()
    _ready(lsock.getsockname()[1])
    accept, keep = lsock.accept, socks.append
    for _ in range(conns):
        conn, _addr = accept()
        keep(conn)
    res = meter.finish(conns, len(socks))
    _result(res)


SERVERS = {"lwspy": serve_lwspy, "asyncio": serve_asyncio, "sockets": serve_sockets}


# -- the client side (``--client PORT N``) ----------------------------------------------------


def client(port: int, conns: int) -> int:
    raise_nofile(conns + 64)
    socks = []
    for _ in range(conns):
        s = socket.socket()
        s.connect((HOST, port))
        socks.append(s)
    print("CONNECTED", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    for s in socks:
        s.close()
    return 0


# -- the run ----------------------------------------------------------------------------------


def one(peer: str, mode: str, conns: int) -> dict[str, Any]:
    """Start a server and a client, return the server's figures."""
    me = os.path.abspath(__file__)
    srv = subprocess.Popen(
        [sys.executable, me, "--serve", peer, "--mode", mode, "--conns", str(conns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    cli = None
    try:
        assert srv.stdout is not None and srv.stdin is not None
        line = srv.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"bench_memory: the {peer} server did not start: {line!r}")
        port = int(line.split()[1])
        t0 = time.perf_counter()
        cli = subprocess.Popen(
            [sys.executable, me, "--client", str(port), str(conns)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = srv.stdout.readline()
        if not line.startswith("RESULT "):
            raise SystemExit(f"bench_memory: the {peer} server failed: {line!r}")
        res: dict[str, Any] = json.loads(line[len("RESULT ") :])
        res["secs"] = time.perf_counter() - t0
        if res["held"] != conns:
            raise SystemExit(f"bench_memory: {peer} holds {res['held']} of {conns} connections")
        return res
    finally:
        if cli is not None:
            assert cli.stdin is not None
            cli.stdin.close()
            cli.wait(timeout=60)
        if srv.stdin is not None:
            srv.stdin.close()
        srv.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="2,000 connections, one RSS run each")
    ap.add_argument("--conns", type=int, help="connections (10,000; --quick 2,000)")
    ap.add_argument("--reps", type=int, help="RSS runs per peer (3; --quick 1)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--serve", choices=PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=("rss", "heap"), default="rss", help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    conns = args.conns or (2000 if args.quick else 10000)

    if args.client:
        return client(*args.client)
    if args.serve:
        raise_nofile(conns + 64)
        SERVERS[args.serve](conns, Meter(args.mode))
        return 0

    reps = args.reps or (1 if args.quick else 3)
    peers = [p for p in args.peers.split(",") if p]
    if set(peers) - set(PEERS):
        raise SystemExit(f"unknown peers: {sorted(set(peers) - set(PEERS))}; choose from {PEERS}")
    raise_nofile(64)
    import lwspy

    print(
        f"bench_memory: lwspy {lwspy.__version__} ({os.path.dirname(lwspy.__file__)}), "
        f"Python {platform.python_version()}, {conns:,} connections, RSS median of {reps}, "
        f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )
    started = time.perf_counter()
    heap: dict[str, dict[str, Any]] = {}
    rss: dict[str, list[float]] = {p: [] for p in peers}
    for rep in range(reps):
        order = peers[rep % len(peers) :] + peers[: rep % len(peers)]
        for p in order:
            if rep == 0:
                heap[p] = one(p, "heap", conns)
                print(f"  {p:<8} heap {heap[p]['bytes'] / conns:7.0f} B/conn", flush=True)
            r = one(p, "rss", conns)
            rss[p].append(r["bytes"] / conns)
            print(
                f"  {p:<8} rss  {rss[p][-1]:7.0f} B/conn  (rep {rep + 1}, {r['secs']:.1f} s)",
                flush=True,
            )

    print(f"\n### Server memory per idle connection, {conns:,} connections\n")
    print("| server | Python heap B/conn (tracemalloc) | RSS B/conn (median) | RSS min..max |")
    print("|---|---:|---:|---:|")
    for p in peers:
        r = sorted(rss[p])
        name = "bare socket list (floor)" if p == "sockets" else p
        print(
            f"| {name} | {heap[p]['bytes'] / conns:,.0f} | {statistics.median(r):,.0f} "
            f"| {r[0]:,.0f}..{r[-1]:,.0f} |"
        )
    if "lwspy" in peers:
        h = heap["lwspy"]["bytes"] / conns
        r_med = statistics.median(rss["lwspy"])
        for what, v in (("Python heap", h), ("RSS", r_med)):
            verdict = "met" if v <= GOAL_BYTES else f"MISSED by {v - GOAL_BYTES:,.0f} B"
            print(f"\nlwspy {what}: {v:,.0f} B per wsi; goal <= {GOAL_BYTES} B: {verdict}", end="")
        print("\n\nlwspy heap growth by source line (tracemalloc lineno, per connection):\n")
        print("| bytes/conn | allocations/conn | where |")
        print("|---:|---:|---|")
        for filename, lineno, size, count in heap["lwspy"]["top"]:
            code = linecache.getline(filename, lineno).strip()
            short = filename
            if "/lwspy/" in filename:
                short = "lwspy/" + filename.rsplit("/lwspy/", 1)[1]
            elif "/python3" in filename:
                short = os.path.basename(filename)
            where = f"{short}:{lineno}" + (f" `{code}`" if code else "")
            print(f"| {size / conns:,.1f} | {count / conns:.2f} | {where} |")
    print(f"\nTotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
