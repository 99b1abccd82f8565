"""Benchmark lwspy's core loop against asyncio, Twisted and a bare ``selectors`` loop.

Every peer is measured in the same run, on loopback (127.0.0.1), with the server and its
clients living in one loop of that peer:

* **ping-pong**: N connections each bounce a 64-byte message off an echo server for a
  fixed number of round trips; figure: round trips per second (all connections).
* **bulk**: one connection streams a fixed amount of data, in 32 KiB writes (``--chunk-kib``),
  to a server that counts and discards it; figure: MB/s (10**6 bytes). With 64 KiB writes
  every loop, the bare one included, flips between two speeds about 2x apart from one run
  to the next (a loopback TCP window effect, same syscalls), which hides the loops' own
  costs; 32 KiB writes give steady figures.

The bare ``selectors.DefaultSelector`` loop is the floor: the least a pure-Python loop
can do for the same work (its reads take 64 KiB, as lwspy's do). Every peer checks its
work (every echo's bytes, the round-trip count, the byte count on both ends), so no peer
is measured doing less. Each figure is the median of ``--reps`` runs (3); the peers are
interleaved within a repetition and their order rotates between repetitions. Twisted's
reactor cannot be restarted, so each Twisted run is a child process; if Twisted is
missing it is skipped with a note. Usage::

    python tools/bench_echo.py            # the full run (< 60 s on 2 cores)
    python tools/bench_echo.py --quick    # a short run, smaller sizes
    python tools/bench_echo.py --profile pingpong50   # cProfile of lwspy, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import json
import os
import platform
import pstats
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lwspy
from lwspy import Context, Protocol, Reason

HOST = "127.0.0.1"
MSG = bytes(range(64))
MSG_LEN = len(MSG)
CHUNK_KIB = 32  # bulk write size (--chunk-kib); 64 KiB swings 1-2 GB/s for every peer
RX_LEN = 65536  # the bare loop reads as much per event as lwspy (RX_CHUNK)
MIB = 1024 * 1024
WATCHDOG_SECS = 120
WORKER_NO_TWISTED = 3

RAW_RX = Reason.RAW_RX
RAW_WRITEABLE = Reason.RAW_WRITEABLE
RAW_ADOPT = Reason.RAW_ADOPT
RAW_CONNECTED = Reason.RAW_CONNECTED
CLIENT_CONNECTION_ERROR = Reason.CLIENT_CONNECTION_ERROR

PEERS = ("selectors", "lwspy", "asyncio", "twisted")


class BenchError(RuntimeError):
    """A peer did not do the work it was asked for (lost, extra or wrong bytes)."""


class Pinger:
    """A client's side of ping-pong: checks each echo and counts the round trips left."""

    __slots__ = ("left", "pending")

    def __init__(self, rounds: int) -> None:
        self.left = rounds
        self.pending = b""

    def feed(self, data: bytes) -> int:
        """Echoed bytes in: 1 = a reply is complete, ping again; 0 = partial; -1 = all done."""
        if self.pending or len(data) != MSG_LEN:
            data = self.pending + data
            if len(data) < MSG_LEN:
                self.pending = data
                return 0
            self.pending = b""
        if data != MSG:
            raise BenchError(f"bad echo: {len(data)} bytes, not the 64 sent")
        self.left -= 1
        return 1 if self.left else -1


def check_pingpong(pingers: list[Pinger], conns: int) -> None:
    if len(pingers) != conns or any(p.left or p.pending for p in pingers):
        left = sum(p.left for p in pingers)
        raise BenchError(f"ping-pong incomplete: {len(pingers)} clients, {left} round trips left")


def make_chunk(chunk_len: int) -> bytes:
    """One bulk write's worth of bytes."""
    return (bytes(range(256)) * (chunk_len // 256 + 1))[:chunk_len]


def check_bulk(sent: int, got: int, total: int) -> None:
    if sent != total or got != total:
        raise BenchError(f"bulk: sent {sent}, received {got}, expected {total}")


# -- bare selectors: the floor --------------------------------------------------------------


def _socket_pairs(conns: int) -> tuple[socket.socket, list[tuple[socket.socket, socket.socket]]]:
    """``conns`` connected (server side, client side) pairs over loopback, non-blocking."""
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(socket.SOMAXCONN)
    pairs = []
    for _ in range(conns):
        c = socket.create_connection(lsock.getsockname())
        s, _addr = lsock.accept()
        s.setblocking(False)
        c.setblocking(False)
        pairs.append((s, c))
    return lsock, pairs


def selectors_pingpong(conns: int, rounds: int) -> float:
    lsock, pairs = _socket_pairs(conns)
    sel = selectors.DefaultSelector()
    pingers: list[Pinger] = []
    done = [0]

    def server(s: socket.socket) -> Callable[[], None]:
        recv, send = s.recv, s.send

        def on_readable() -> None:
            data = recv(RX_LEN)
            if not data:
                raise BenchError("server: peer closed")
            if send(data) != len(data):
                raise BenchError("server: short send")

        return on_readable

    def client(c: socket.socket, p: Pinger) -> Callable[[], None]:
        recv, send, feed = c.recv, c.send, p.feed

        def on_readable() -> None:
            data = recv(RX_LEN)
            if not data:
                raise BenchError("client: peer closed")
            r = feed(data)
            if r > 0:
                if send(MSG) != MSG_LEN:
                    raise BenchError("client: short send")
            elif r < 0:
                done[0] += 1

        return on_readable

    for s, c in pairs:
        p = Pinger(rounds)
        pingers.append(p)
        sel.register(s, selectors.EVENT_READ, server(s))
        sel.register(c, selectors.EVENT_READ, client(c, p))
    select = sel.select
    t0 = time.perf_counter()
    for _s, c in pairs:
        c.send(MSG)
    while done[0] < conns:
        for key, _mask in select():
            key.data()
    dt = time.perf_counter() - t0
    check_pingpong(pingers, conns)
    sel.close()
    for s, c in pairs:
        s.close()
        c.close()
    lsock.close()
    return dt


def selectors_bulk(total: int, chunk_len: int) -> float:
    lsock, [(s, c)] = _socket_pairs(1)
    sel = selectors.DefaultSelector()
    chunk = memoryview(make_chunk(chunk_len))
    st = {"sent": 0, "off": 0, "got": 0}
    recv, send = s.recv, c.send

    def on_writable() -> None:
        n = send(chunk[st["off"] :])
        st["sent"] += n
        st["off"] = (st["off"] + n) % chunk_len
        if st["sent"] >= total:
            sel.unregister(c)

    def on_readable() -> None:
        data = recv(RX_LEN)
        if not data:
            raise BenchError("server: peer closed")
        st["got"] += len(data)

    sel.register(s, selectors.EVENT_READ, on_readable)
    t0 = time.perf_counter()
    sel.register(c, selectors.EVENT_WRITE, on_writable)
    select = sel.select
    while st["got"] < total:
        for key, _mask in select():
            key.data()
    dt = time.perf_counter() - t0
    check_bulk(st["sent"], st["got"], total)
    sel.close()
    s.close()
    c.close()
    lsock.close()
    return dt


# -- lwspy ----------------------------------------------------------------------------------


@dataclass
class _LwsRun:
    want_ready: int
    ready: int = 0
    done: int = 0
    target: int = 0
    clients: list[Any] = field(default_factory=list)


def _lws_ready(run: _LwsRun, wsi: Any) -> None:
    run.ready += 1
    if run.ready == run.want_ready:
        wsi.ctx.stop()


def lwspy_pingpong(conns: int, rounds: int) -> float:
    run = _LwsRun(want_ready=2 * conns, target=conns)
    pingers: list[Pinger] = []

    def make_pinger() -> Pinger:
        p = Pinger(rounds)
        pingers.append(p)
        return p

    def srv(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is RAW_RX:
            wsi.write(data)
        elif reason is RAW_ADOPT:
            _lws_ready(run, wsi)
        return 0

    def cli(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is RAW_RX:
            r = user.feed(data)
            if r > 0:
                wsi.write(MSG)
            elif r < 0:
                run.done += 1
                if run.done == run.target:
                    wsi.ctx.stop()
        elif reason is RAW_CONNECTED:
            run.clients.append(wsi)
            _lws_ready(run, wsi)
        elif reason is CLIENT_CONNECTION_ERROR:
            raise BenchError(f"lwspy connect: {data}")
        return 0

    protos = [Protocol("srv", srv), Protocol("cli", cli, user_factory=make_pinger)]
    with Context(protocols=protos) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=HOST)
        for _ in range(conns):
            ctx.connect(HOST, vh.port, protocol="cli")
        ctx.run()
        t0 = time.perf_counter()
        for wsi in run.clients:
            wsi.write(MSG)
        ctx.run()
        dt = time.perf_counter() - t0
    check_pingpong(pingers, conns)
    return dt


def lwspy_bulk(total: int, chunk_len: int) -> float:
    run = _LwsRun(want_ready=2, target=total)
    st = {"sent": 0, "got": 0}
    chunk = make_chunk(chunk_len)

    def srv(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is RAW_RX:
            st["got"] += len(data)
            if st["got"] >= total:
                wsi.ctx.stop()
        elif reason is RAW_ADOPT:
            _lws_ready(run, wsi)
        return 0

    def cli(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is RAW_WRITEABLE:
            # lws style: one write per RAW_WRITEABLE; lwspy sends it now or buffers the rest
            wsi.write(chunk)
            st["sent"] += chunk_len
            if st["sent"] < total:
                wsi.callback_on_writable()
        elif reason is RAW_CONNECTED:
            run.clients.append(wsi)
            _lws_ready(run, wsi)
        elif reason is CLIENT_CONNECTION_ERROR:
            raise BenchError(f"lwspy connect: {data}")
        return 0

    with Context(protocols=[Protocol("srv", srv), Protocol("cli", cli)]) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=HOST)
        ctx.connect(HOST, vh.port, protocol="cli")
        ctx.run()
        t0 = time.perf_counter()
        run.clients[0].callback_on_writable()
        ctx.run()
        dt = time.perf_counter() - t0
    check_bulk(st["sent"], st["got"], total)
    return dt


# -- asyncio --------------------------------------------------------------------------------


async def _asyncio_pingpong(conns: int, rounds: int) -> float:
    loop = asyncio.get_running_loop()
    all_accepted = loop.create_future()
    all_done = loop.create_future()
    counts = {"accepted": 0, "done": 0}
    pingers: list[Pinger] = []

    class Srv(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.write = transport.write
            counts["accepted"] += 1
            if counts["accepted"] == conns:
                all_accepted.set_result(None)

        def data_received(self, data: bytes) -> None:
            self.write(data)

    class Cli(asyncio.Protocol):
        def __init__(self) -> None:
            self.pinger = Pinger(rounds)
            pingers.append(self.pinger)

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.write = transport.write

        def data_received(self, data: bytes) -> None:
            r = self.pinger.feed(data)
            if r > 0:
                self.write(MSG)
            elif r < 0:
                counts["done"] += 1
                if counts["done"] == conns:
                    all_done.set_result(None)

    server = await loop.create_server(Srv, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    clients = [(await loop.create_connection(Cli, HOST, port))[1] for _ in range(conns)]
    await all_accepted
    t0 = time.perf_counter()
    for c in clients:
        c.write(MSG)
    await all_done
    dt = time.perf_counter() - t0
    check_pingpong(pingers, conns)
    server.close()
    for c in clients:
        c.transport.close()
    await server.wait_closed()
    return dt


async def _asyncio_bulk(total: int, chunk_len: int) -> float:
    loop = asyncio.get_running_loop()
    chunk = make_chunk(chunk_len)
    accepted = loop.create_future()
    all_done = loop.create_future()
    st = {"sent": 0, "got": 0}

    class Srv(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            accepted.set_result(None)

        def data_received(self, data: bytes) -> None:
            st["got"] += len(data)
            if st["got"] >= total:
                all_done.set_result(None)

    class Cli(asyncio.Protocol):
        paused = False

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            self.produce()

        def produce(self) -> None:
            write = self.transport.write
            while not self.paused and st["sent"] < total:
                write(chunk)
                st["sent"] += chunk_len

    server = await loop.create_server(Srv, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    transport, cli = await loop.create_connection(Cli, HOST, port)
    await accepted
    t0 = time.perf_counter()
    cli.produce()
    await all_done
    dt = time.perf_counter() - t0
    check_bulk(st["sent"], st["got"], total)
    transport.close()
    server.close()
    await server.wait_closed()
    return dt


def asyncio_pingpong(conns: int, rounds: int) -> float:
    return asyncio.run(_asyncio_pingpong(conns, rounds))


def asyncio_bulk(total: int, chunk_len: int) -> float:
    return asyncio.run(_asyncio_bulk(total, chunk_len))


# -- Twisted (in a child process: its reactor runs once per process) -------------------------


def twisted_worker(kind: str, a: int, b: int) -> float:
    """One Twisted measurement in this process's (default) reactor."""
    from twisted.internet import protocol, reactor
    from twisted.internet.interfaces import IPushProducer
    from zope.interface import implementer

    rx: Any = reactor
    out: dict[str, float] = {}
    clients: list[Any] = []
    counts = {"ready": 0, "done": 0, "sent": 0, "got": 0}
    pingers: list[Pinger] = []
    conns = a if kind == "pingpong" else 1
    chunk = make_chunk(b) if kind == "bulk" else b""

    def ready(start: Callable[[], None]) -> None:
        counts["ready"] += 1
        if counts["ready"] == 2 * conns:
            out["t0"] = time.perf_counter()
            start()

    def finish() -> None:
        out["t1"] = time.perf_counter()
        rx.stop()

    def start_pingpong() -> None:
        for c in clients:
            c.transport.write(MSG)

    class PingSrv(protocol.Protocol):
        def connectionMade(self) -> None:
            self.write = self.transport.write
            ready(start_pingpong)

        def dataReceived(self, data: bytes) -> None:
            self.write(data)

    class PingCli(protocol.Protocol):
        def connectionMade(self) -> None:
            self.pinger = Pinger(b)
            pingers.append(self.pinger)
            self.write = self.transport.write
            clients.append(self)
            ready(start_pingpong)

        def dataReceived(self, data: bytes) -> None:
            r = self.pinger.feed(data)
            if r > 0:
                self.write(MSG)
            elif r < 0:
                counts["done"] += 1
                if counts["done"] == conns:
                    finish()

    def start_bulk() -> None:
        clients[0].resumeProducing()

    class BulkSrv(protocol.Protocol):
        def connectionMade(self) -> None:
            ready(start_bulk)

        def dataReceived(self, data: bytes) -> None:
            counts["got"] += len(data)
            if counts["got"] >= a:
                finish()

    @implementer(IPushProducer)
    class BulkCli(protocol.Protocol):
        paused = False

        def connectionMade(self) -> None:
            self.transport.registerProducer(self, True)
            clients.append(self)
            ready(start_bulk)

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False
            write = self.transport.write
            while not self.paused and counts["sent"] < a:
                write(chunk)
                counts["sent"] += b
            if counts["sent"] >= a:
                self.transport.unregisterProducer()

        def stopProducing(self) -> None:
            self.paused = True

    srv, cli = (PingSrv, PingCli) if kind == "pingpong" else (BulkSrv, BulkCli)
    port = rx.listenTCP(0, protocol.Factory.forProtocol(srv), interface=HOST)
    for _ in range(conns):
        rx.connectTCP(HOST, port.getHost().port, protocol.ClientFactory.forProtocol(cli))
    rx.run(installSignalHandlers=False)
    if "t1" not in out:
        raise BenchError("twisted: the reactor stopped before the work was done")
    if kind == "pingpong":
        check_pingpong(pingers, conns)
    else:
        check_bulk(counts["sent"], counts["got"], a)
    return out["t1"] - out["t0"]


def _twisted(kind: str, a: int, b: int) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), "--twisted-worker", kind, str(a), str(b)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WATCHDOG_SECS, check=False)
    if proc.returncode == WORKER_NO_TWISTED:
        raise ImportError(proc.stderr.strip() or "twisted cannot be imported")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"twisted worker failed: {tail[0]}")
    seconds: float = json.loads(proc.stdout)["seconds"]
    return seconds


def twisted_pingpong(conns: int, rounds: int) -> float:
    return _twisted("pingpong", conns, rounds)


def twisted_bulk(total: int, chunk_len: int) -> float:
    return _twisted("bulk", total, chunk_len)


# -- the run --------------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    title: str
    unit: str
    work: float  # round trips, or MB
    args: tuple[int, ...]
    fns: dict[str, Callable[..., float]]
    times: dict[str, list[float]] = field(default_factory=dict)


def pingpong_scenario(conns: int, rounds: int) -> Scenario:
    return Scenario(
        key=f"pingpong{conns}",
        title=f"ping-pong, {conns} conn x {rounds} round trips of {MSG_LEN} B",
        unit="round trips/s",
        work=conns * rounds,
        args=(conns, rounds),
        fns={
            "selectors": selectors_pingpong,
            "lwspy": lwspy_pingpong,
            "asyncio": asyncio_pingpong,
            "twisted": twisted_pingpong,
        },
    )


def bulk_scenario(total: int, chunk_len: int) -> Scenario:
    return Scenario(
        key="bulk",
        title=f"bulk, 1 conn streaming {total // MIB} MiB in {chunk_len // 1024} KiB writes",
        unit="MB/s",
        work=total / 1e6,
        args=(total, chunk_len),
        fns={
            "selectors": selectors_bulk,
            "lwspy": lwspy_bulk,
            "asyncio": asyncio_bulk,
            "twisted": twisted_bulk,
        },
    )


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"a measurement took more than {WATCHDOG_SECS} s")


def measure(fn: Callable[..., float], args: tuple[int, ...]) -> float:
    gc.collect()
    signal.alarm(WATCHDOG_SECS)  # a hung peer fails the run instead of hanging it
    try:
        return fn(*args)
    finally:
        signal.alarm(0)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def report(scenarios: list[Scenario], peers: list[str], notes: list[str]) -> None:
    for sc in scenarios:
        print(f"\n### {sc.title}\n")
        print(f"| peer | {sc.unit} (median) | min..max | vs selectors | vs asyncio |")
        print("|---|---:|---:|---:|---:|")
        rates = {p: sorted(sc.work / t for t in ts) for p, ts in sc.times.items() if ts}
        med = {p: statistics.median(r) for p, r in rates.items()}
        for p in peers:
            if p not in med:
                print(f"| {p} | skipped | | | |")
                continue
            vs_floor = f"{med[p] / med['selectors']:.2f}x" if "selectors" in med else "-"
            vs_aio = f"{med[p] / med['asyncio']:.2f}x" if "asyncio" in med else "-"
            span = f"{fmt(rates[p][0])}..{fmt(rates[p][-1])}"
            print(f"| {p} | {fmt(med[p])} | {span} | {vs_floor} | {vs_aio} |")
    for note in notes:
        print(f"\nNote: {note}")


def profile(scenarios: list[Scenario], key: str, peer: str, limit: int) -> None:
    sc = next((s for s in scenarios if s.key == key), None)
    if sc is None:
        raise SystemExit(f"--profile: no scenario {key!r} (have {[s.key for s in scenarios]})")
    fn = sc.fns[peer]
    measure(fn, sc.args)  # warm up
    prof = cProfile.Profile()
    prof.enable()
    dt = fn(*sc.args)
    prof.disable()
    print(f"{peer} {sc.title}: {fmt(sc.work / dt)} {sc.unit} under cProfile")
    pstats.Stats(prof).strip_dirs().sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="a short run with smaller sizes")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per figure (median)")
    ap.add_argument("--chunk-kib", type=int, default=CHUNK_KIB, help="bulk write size in KiB (32)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--profile", metavar="SCENARIO", help="cProfile one peer on one scenario")
    ap.add_argument("--profile-peer", default="lwspy", choices=PEERS[:3])
    ap.add_argument("--twisted-worker", nargs=3, metavar=("KIND", "A", "B"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.twisted_worker:
        kind, a, b = args.twisted_worker
        try:
            import twisted.internet  # noqa: F401
        except ImportError as e:
            print(f"twisted cannot be imported: {e}", file=sys.stderr)
            return WORKER_NO_TWISTED
        print(json.dumps({"seconds": twisted_worker(kind, int(a), int(b))}))
        return 0

    if args.chunk_kib <= 0 or (32 * MIB) % (args.chunk_kib * 1024):
        raise SystemExit("--chunk-kib must divide 32768 (a power of two up to 32 MiB)")
    if args.quick:
        scenarios = [
            pingpong_scenario(1, 3000),
            pingpong_scenario(50, 60),
            bulk_scenario(32 * MIB, args.chunk_kib * 1024),
        ]
    else:
        scenarios = [
            pingpong_scenario(1, 30000),
            pingpong_scenario(50, 600),
            bulk_scenario(256 * MIB, args.chunk_kib * 1024),
        ]
    signal.signal(signal.SIGALRM, _alarm)
    if args.profile:
        profile(scenarios, args.profile, args.profile_peer, 25)
        return 0

    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers: {sorted(unknown)}; choose from {PEERS}")
    notes: list[str] = []
    if "twisted" in peers and importlib.util.find_spec("twisted") is None:
        peers.remove("twisted")
        notes.append("twisted is not installed: skipped")

    print(
        f"bench_echo: lwspy {lwspy.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"selector {selectors.DefaultSelector.__name__}, reps {args.reps}"
        + (", quick" if args.quick else "")
        + ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    )
    started = time.perf_counter()
    asked = list(peers)
    for rep in range(args.reps):
        order = peers[rep % len(peers) :] + peers[: rep % len(peers)]
        for sc in scenarios:
            for p in order:
                if p not in peers:  # skipped in an earlier scenario
                    continue
                try:
                    dt = measure(sc.fns[p], sc.args)
                except ImportError as e:  # twisted is there but cannot be imported
                    notes.append(f"{p} skipped: {e}")
                    peers.remove(p)
                    continue
                sc.times.setdefault(p, []).append(dt)
                print(f"  rep {rep + 1} {sc.key:<11} {p:<9} {fmt(sc.work / dt):>10} {sc.unit}")
    report(scenarios, asked, notes)
    print(f"\nTotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
