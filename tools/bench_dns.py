"""Benchmark lwspy's resolver against its peers on a real DNS server, in the same run.

Issue 10's resolver goal: resolving 1,000 distinct names (A and AAAA each) against
dnsmasq in a namespace, lwspy >= 2x the faster of asyncio's ``getaddrinfo`` (glibc in
the default thread pool) and dnspython's asyncio resolver.

Set-up: two namespaces ``lwbench<pid>dnsa`` / ``...dnsb`` joined by a veth pair
(198.51.100.1/24 and 198.51.100.2/24). dnsmasq (Debian dnsmasq-base) runs in "b" on
198.51.100.2:53, serving a hosts file of ``n0.bench.test`` .. ``n999.bench.test``, each
with an A (198.18.x.y) and an AAAA (2001:db8:b::x) record, ``--local=/test/``. The
measuring process runs in "a" with a private mount namespace in which
``/etc/resolv.conf`` is bind-mounted to ``nameserver 198.51.100.2`` (so glibc asks
dnsmasq too). Three floors show what the server and the design cost without any
resolver logic: one bare UDP socket for every query; a bare ``selectors`` loop with a
fresh socket per name carrying its AAAA and A query (lwspy's design: a random source
port per name); and the same with a socket per query (lwspy's earlier design). Every
peer asks both families of every name and every answer is checked. Each peer keeps at
most ``--inflight`` names (default 100) in flight, so no peer floods dnsmasq's socket
buffer (getaddrinfo is further bounded by the threads of asyncio's default executor,
which the benchmark checks it ran in, and reports); each round uses fresh resolvers
(no cache helps), and the peers take turns, ``--rounds`` times, after one untimed
warm-up round of 50 names each (imports, first-use caches, the thread pool).

Needs root, ``ip`` and ``unshare``. Usage::

    python tools/bench_dns.py                 # 1,000 names, 5 rounds
    python tools/bench_dns.py --names 200 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DNSMASQ = "/usr/sbin/dnsmasq"
SERVER = "198.51.100.2"
GOAL = 2.0
FLOOR = "floor: one bare UDP socket, no resolver"
FLOOR_PER_QUERY = "floor: bare selectors loop, a socket per query"
FLOOR_PER_NAME = "floor: bare selectors loop, a socket per name"
FLOORS = (FLOOR, FLOOR_PER_QUERY, FLOOR_PER_NAME)


def v4(i: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.1")) + i))


def v6(i: int) -> str:
    return f"2001:db8:b::{i + 1:x}"


def names(n: int) -> list[str]:
    return [f"n{i}.bench.test" for i in range(n)]


# -- the peers (run inside namespace "a") ----------------------------------------------


def bench_lwspy(
    todo: list[str], inflight: int, per_socket: int = 16
) -> dict[str, tuple[list[str], list[str]]]:
    import lwspy
    from lwspy.net.dns import DnsAnswer

    out: dict[str, tuple[list[str], list[str]]] = {}
    with lwspy.Context(
        hosts_file="/dev/null",
        nameservers=[SERVER],
        netlink=False,
        dns_queries_per_socket=per_socket,
    ) as ctx:
        queue = list(reversed(todo))
        pending = 0

        def start() -> None:
            nonlocal pending
            name = queue.pop()
            got: dict[int, list[str]] = {}
            pending += 1

            def on_answer(a: DnsAnswer) -> None:
                nonlocal pending
                got[a.family] = a.addresses
                if len(got) == 2:
                    out[name] = (got[socket.AF_INET], got[socket.AF_INET6])
                    pending -= 1
                    if queue:
                        start()

            ctx.resolver.resolve(name, on_answer)

        for _ in range(min(inflight, len(queue))):
            start()
        while pending:
            ctx.service(1000)
    return out


def bench_getaddrinfo(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    async def run() -> dict[str, tuple[list[str], list[str]]]:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(inflight)
        out: dict[str, tuple[list[str], list[str]]] = {}

        async def one(name: str) -> None:
            async with sem:
                infos = await loop.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
            a4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
            a6 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET6]
            out[name] = (a4, a6)

        await asyncio.gather(*(one(n) for n in todo))
        # the check that this is glibc in asyncio's own default pool, as an app gets it
        pool = getattr(loop, "_default_executor", None)
        if not isinstance(pool, concurrent.futures.ThreadPoolExecutor):
            raise SystemExit(f"getaddrinfo ran in {pool!r}, not the default thread pool")
        POOL_THREADS.append(pool._max_workers)
        return out

    return asyncio.run(run())


POOL_THREADS: list[int] = []
"""The size of the default executor each getaddrinfo round ran in (reported)."""


def bench_dnspython(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    import dns.asyncresolver

    async def run() -> dict[str, tuple[list[str], list[str]]]:
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [SERVER]
        r.cache = None
        sem = asyncio.Semaphore(inflight)
        out: dict[str, tuple[list[str], list[str]]] = {}

        async def one(name: str) -> None:
            async with sem:
                a, aaaa = await asyncio.gather(r.resolve(name, "A"), r.resolve(name, "AAAA"))
            out[name] = ([x.address for x in a], [x.address for x in aaaa])

        await asyncio.gather(*(one(n) for n in todo))
        return out

    return asyncio.run(run())


def bench_floor(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    """The floor: one UDP socket, queries made in advance, ``inflight`` names out at a time,
    answers matched by id (and decoded by lwspy's codec). A resolver does more than this."""
    from lwspy.net.dns import TYPE_A, TYPE_AAAA, decode_message, make_query, name_labels

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: room for every answer
    sock.connect((SERVER, 53))
    queries = []
    for i, name in enumerate(todo):
        labels = name_labels(name)
        queries.append(
            (name, make_query(2 * i, labels, TYPE_A), make_query(2 * i + 1, labels, TYPE_AAAA))
        )
    out: dict[str, tuple[list[str], list[str]]] = {}
    got: dict[int, str] = {}
    sent = 0
    t0 = time.perf_counter()
    while len(got) < 2 * len(todo):
        while sent < len(todo) and sent - len(got) // 2 < inflight:
            sock.send(queries[sent][1])
            sock.send(queries[sent][2])
            sent += 1
        sock.settimeout(max(0.1, 5 - (time.perf_counter() - t0)))
        try:
            data = sock.recv(4096)
        except TimeoutError:  # this floor has no retries: a lost datagram ends the run
            raise SystemExit("floor (one socket): an answer was lost; run again") from None
        msg = decode_message(data)
        got[msg.id] = str(msg.answers[0].value)
    sock.close()
    for i, name in enumerate(todo):
        out[name] = ([got[2 * i]], [got[2 * i + 1]])
    return out


def bench_floor_per_query(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    """The floor of lwspy's design: a bare ``selectors`` loop with a fresh connected UDP
    socket per query (what a random source port per query costs), no resolver logic."""
    import selectors

    from lwspy.net.dns import TYPE_A, TYPE_AAAA, decode_message, make_query, name_labels

    sel = selectors.DefaultSelector()
    queue: list[bytes] = []
    for i, name in enumerate(todo):
        labels = name_labels(name)
        queue += [make_query(2 * i, labels, TYPE_A), make_query(2 * i + 1, labels, TYPE_AAAA)]
    queue.reverse()
    got: dict[int, str] = {}

    def start() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        s.connect((SERVER, 53))
        s.send(queue.pop())
        sel.register(s, selectors.EVENT_READ)

    for _ in range(min(2 * inflight, len(queue))):
        start()
    while sel.get_map():
        events = sel.select(5)
        if not events:
            raise SystemExit("floor (a socket per query): no answer in 5 s")
        for key, _ in events:
            s = key.fileobj
            assert isinstance(s, socket.socket)
            data = s.recv(4096)
            sel.unregister(s)
            s.close()
            msg = decode_message(data)
            got[msg.id] = str(msg.answers[0].value)
            if queue:
                start()
    sel.close()
    return {name: ([got[2 * i]], [got[2 * i + 1]]) for i, name in enumerate(todo)}


def bench_floor_per_name(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    """The floor of lwspy's design: a bare ``selectors`` loop with a fresh connected UDP
    socket per name that carries its AAAA and A query, no resolver logic."""
    import selectors

    from lwspy.net.dns import TYPE_A, TYPE_AAAA, decode_message, make_query, name_labels

    sel = selectors.DefaultSelector()
    queue: list[tuple[bytes, bytes]] = []
    for i, name in enumerate(todo):
        labels = name_labels(name)
        queue.append((make_query(2 * i + 1, labels, TYPE_AAAA), make_query(2 * i, labels, TYPE_A)))
    queue.reverse()
    got: dict[int, str] = {}

    def start() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        s.connect((SERVER, 53))
        for query in queue.pop():
            s.send(query)
        sel.register(s, selectors.EVENT_READ, [2])

    for _ in range(min(inflight, len(queue))):
        start()
    while sel.get_map():
        events = sel.select(5)
        if not events:
            raise SystemExit("floor (a socket per name): no answer in 5 s")
        for key, _ in events:
            s = key.fileobj
            assert isinstance(s, socket.socket)
            left = key.data
            while left[0]:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                msg = decode_message(data)
                got[msg.id] = str(msg.answers[0].value)
                left[0] -= 1
            if not left[0]:
                sel.unregister(s)
                s.close()
                if queue:
                    start()
    sel.close()
    return {name: ([got[2 * i]], [got[2 * i + 1]]) for i, name in enumerate(todo)}


def bench_lwspy_per_name(todo: list[str], inflight: int) -> dict[str, tuple[list[str], list[str]]]:
    """lwspy with a socket per name (``dns_queries_per_socket=2``: glibc's exposure)."""
    return bench_lwspy(todo, inflight, per_socket=2)


LWSPY_PER_NAME = "lwspy, a socket per name (dns_queries_per_socket=2)"
PEERS: dict[str, Callable[[list[str], int], dict[str, tuple[list[str], list[str]]]]] = {
    "lwspy resolver": bench_lwspy,
    LWSPY_PER_NAME: bench_lwspy_per_name,
    "asyncio getaddrinfo (glibc, thread pool)": bench_getaddrinfo,
    "dnspython asyncio resolver": bench_dnspython,
    FLOOR: bench_floor,
    FLOOR_PER_QUERY: bench_floor_per_query,
    FLOOR_PER_NAME: bench_floor_per_name,
}


def inner(n: int, rounds: int, inflight: int, profile: bool = False) -> None:
    """Measure every peer ``rounds`` times in turn; print JSON results."""
    todo = names(n)
    if profile:
        import cProfile
        import pstats

        bench_lwspy(todo, inflight)  # imports and warm-up
        prof = cProfile.Profile()
        prof.runcall(bench_lwspy, todo, inflight)
        pstats.Stats(prof, stream=sys.stderr).sort_stats(
            os.environ.get("SORT", "tottime")
        ).print_stats(int(os.environ.get("TOP", "25")))
        return
    want = {name: ([v4(i)], [v6(i)]) for i, name in enumerate(todo)}
    times: dict[str, list[float]] = {p: [] for p in PEERS}
    cpu: dict[str, list[float]] = {p: [] for p in PEERS}
    for fn in PEERS.values():  # warm-up, not timed: imports, first-use caches, the pool
        fn(todo[:50], inflight)
    POOL_THREADS.clear()
    for _ in range(rounds):
        for peer, fn in PEERS.items():
            c0, t0 = time.process_time(), time.perf_counter()
            got = fn(todo, inflight)
            t1, c1 = time.perf_counter(), time.process_time()
            norm = {
                k: (sorted(a), sorted(str(ipaddress.ip_address(x)) for x in b))
                for k, (a, b) in got.items()
            }
            if norm != want:
                bad = [k for k in want if norm.get(k) != want[k]][:3]
                raise SystemExit(f"{peer}: wrong answers, e.g. {[(k, norm.get(k)) for k in bad]}")
            times[peer].append(t1 - t0)
            cpu[peer].append(c1 - c0)
    print(json.dumps({"times": times, "cpu": cpu, "pool": sorted(set(POOL_THREADS))}))


# -- the lab (outer process) -----------------------------------------------------------


def sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def outer(n: int, rounds: int, inflight: int, profile: bool = False) -> int:
    tag = f"lwbench{os.getpid()}dns"
    a, b = f"{tag}a", f"{tag}b"
    work = Path(tempfile.mkdtemp(prefix="lwspy-bench-dns-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, addr in ((a, "va", "198.51.100.1"), (b, "vb", SERVER)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        hosts = work / "hosts"
        hosts.write_text("".join(f"{v4(i)} {x}\n{v6(i)} {x}\n" for i, x in enumerate(names(n))))
        conf = work / "resolv.conf"
        conf.write_text(f"nameserver {SERVER}\noptions attempts:2 timeout:5\n")
        proc = subprocess.Popen(
            [
                "ip", "netns", "exec", b, DNSMASQ, "--keep-in-foreground",
                "--conf-file=/dev/null", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
                "--local=/test/", f"--listen-address={SERVER}", "--bind-interfaces",
                "--port=53", f"--pid-file={work / 'dnsmasq.pid'}", "--user=root",
                "--log-facility=/dev/null", "--dns-forward-max=1000",
            ],
        )  # fmt: skip
        time.sleep(0.5)
        script = (
            f"mount --bind {conf} /etc/resolv.conf && exec {sys.executable} {__file__} "
            f"--inner --names {n} --rounds {rounds} --inflight {inflight}"
            + (" --profile" if profile else "")
        )
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                a,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if r.returncode != 0 or profile:
            print(r.stdout, r.stderr, file=sys.stderr)
            return r.returncode
        report(json.loads(r.stdout.strip().splitlines()[-1]), n, rounds, inflight)
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


def report(res: dict[str, Any], n: int, rounds: int, inflight: int) -> None:
    times, cpu = res["times"], res["cpu"]
    print(f"\n**{n:,} distinct names, A + AAAA each, dnsmasq in a namespace, "
          f"{inflight} names in flight, {rounds} rounds**\n")  # fmt: skip
    print(
        "| peer | names/s (median) | wall s median (min..max) | CPU s (median) | time / lwspy's |"
    )
    print("|---|---:|---:|---:|---:|")
    med = {p: statistics.median(t) for p, t in times.items()}
    base = med["lwspy resolver"]
    for p, t in times.items():
        print(
            f"| {p} | {n / med[p]:,.0f} | {med[p]:.3f} ({min(t):.3f}..{max(t):.3f}) "
            f"| {statistics.median(cpu[p]):.3f} | {med[p] / base:.2f} |"
            if p != "lwspy resolver"
            else f"| {p} | {n / med[p]:,.0f} | {med[p]:.3f} ({min(t):.3f}..{max(t):.3f}) "
            f"| {statistics.median(cpu[p]):.3f} | 1.00 |"
        )
    peers = [p for p in med if not p.startswith("lwspy") and p not in FLOORS]
    best = min(med[p] for p in peers)
    ratio = best / base
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"\ngoal lwspy >= {GOAL:.0f}x the faster peer: {ratio:.2f}x -> {verdict}")
    # the same ratio round by round (the peers take turns, so a round is one moment)
    rounds_ratio = [
        min(times[p][i] for p in peers) / times["lwspy resolver"][i] for i in range(rounds)
    ]
    print("round by round: " + ", ".join(f"{r:.2f}x" for r in rounds_ratio))
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; getaddrinfo ran in asyncio's"
        f" default executor, a ThreadPoolExecutor of {res['pool']} threads"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="cProfile lwspy's run, print the top")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.names, args.rounds, args.inflight, args.profile)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    return outer(args.names, args.rounds, args.inflight, args.profile)


if __name__ == "__main__":
    sys.exit(main())
