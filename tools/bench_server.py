"""Benchmark lwspy's core loop as an echo server driven by a C load generator (issue 2).

Three echo servers, each in its own process pinned to CPU 0, are driven in turn by
``tools/loadgen.c`` (compiled here with the system ``cc -O2`` into a temporary
directory) pinned to CPU 1:

* **lwspy**: raw-skt echo through the public API (``Context(netlink=False)``, a vhost
  listening on 127.0.0.1, ``wsi.write(data)`` on RAW_RX);
* **asyncio**: an ``asyncio.Protocol`` echo (default event loop, ``transport.write(data)``
  in ``data_received``);
* **selectors**: a bare ``selectors.DefaultSelector`` echo loop, the floor for a
  pure-Python loop (reads of 64 KiB, as lwspy's; a short send is buffered and flushed).

The load generator keeps one message of S bytes in flight per connection (send, wait for
the echo, compare every byte, repeat) for a warm-up period, then a measured period, and
reports round trips per second. While it runs, a ``SCHED_IDLE`` busy loop sits on each of
the two CPUs (``loadgen -k``): it only runs when a CPU would otherwise be idle and yields
at once, but it keeps the CPU from halting; in a VM, waking a halted vCPU costs tens to
hundreds of microseconds, which would otherwise swamp the loops' own costs at one
connection (``--no-keep-awake`` to see that). Cases: 1 conn x 128 B, 50 conns x 128 B,
20 conns x 16 KiB. Every server is first warmed up on each case (asyncio runs about 3x
slower on its first connections); then each case is measured ``--reps`` times (6: two
full rotations) with the servers interleaved, their order rotating, in short runs (1 s
measured after 0.3 s of warm-up on new connections), so that other work on the machine
falls on every server alike. Reported: median and min..max round trips/s, the server's
CPU time per round trip (from /proc, over the measured period), how busy the server's and
the load generator's cores were, and lwspy's ratios to asyncio and to the floor: of the
medians (the verdict), and the median and min..max of the per-repetition ratios.

It also measures ``python -X importtime -c "import lwspy"`` (cumulative time of
``lwspy``, median of 5 fresh processes) and checks that asyncio, pyroute2 and h11 are
not in ``sys.modules`` after ``import lwspy``. Usage::

    python tools/bench_server.py              # the full run (about 90 s)
    python tools/bench_server.py --quick      # about 25 s
    python tools/bench_server.py --profile 1x128 [--profile-peer selectors]  # cProfile
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
PEERS = ("lwspy", "asyncio", "selectors")
CASES = ((1, 128), (50, 128), (20, 16384))
RX_LEN = 65536  # the floor reads as much per event as lwspy (RX_CHUNK)
SERVER_CPU = 0
LOADGEN_CPU = 1
IMPORT_GOAL_MS = 30.0
FORBIDDEN = ("asyncio", "pyroute2", "h11")
HERE = os.path.dirname(os.path.abspath(__file__))


# -- the servers (each runs in its own process: ``--serve PEER``) -----------------------------


def _listen() -> socket.socket:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, 0))
    lsock.listen(socket.SOMAXCONN)
    return lsock


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def serve_lwspy() -> None:
    from lwspy import Context, Protocol, Reason

    raw_rx = Reason.RAW_RX

    def echo(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is raw_rx:
            wsi.write(data)
        return 0

    with Context(protocols=[Protocol("echo", echo)], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=HOST)
        assert vh.port is not None
        _announce(vh.port)
        ctx.run()


def serve_asyncio() -> None:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, HOST, 0)
        _announce(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until SIGTERM

    asyncio.run(main())


def serve_selectors() -> None:
    sel = selectors.DefaultSelector()
    lsock = _listen()
    lsock.setblocking(False)
    ev_read, ev_write = selectors.EVENT_READ, selectors.EVENT_WRITE

    def connection(conn: socket.socket) -> Any:
        recv, send = conn.recv, conn.send
        pending: list[memoryview] = []

        def close() -> None:
            sel.unregister(conn)
            conn.close()

        def on_event(mask: int) -> None:
            if pending:  # writable again: flush what a short send left, then read again
                try:
                    n = send(pending[0])
                except BlockingIOError:
                    return
                except OSError:
                    close()
                    return
                if n < len(pending[0]):
                    pending[0] = pending[0][n:]
                    return
                pending.clear()
                sel.modify(conn, ev_read, on_event)
                return
            try:
                data = recv(RX_LEN)
            except BlockingIOError:
                return
            except OSError:
                close()
                return
            if not data:
                close()
                return
            try:
                n = send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                close()
                return
            if n != len(data):  # stop reading until the rest is sent
                pending.append(memoryview(data)[n:])
                sel.modify(conn, ev_write, on_event)

        return on_event

    def on_accept(mask: int) -> None:
        for _ in range(64):
            try:
                conn, _addr = lsock.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            sel.register(conn, ev_read, connection(conn))

    sel.register(lsock, ev_read, on_accept)
    _announce(lsock.getsockname()[1])
    select = sel.select
    while True:
        for key, mask in select():
            key.data(mask)


SERVERS = {"lwspy": serve_lwspy, "asyncio": serve_asyncio, "selectors": serve_selectors}


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(peer: str, cpu: int | None, profile_to: str | None) -> int:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    signal.signal(signal.SIGTERM, _sigterm)
    if profile_to is None:
        SERVERS[peer]()
        return 0
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        SERVERS[peer]()
    finally:
        prof.disable()
        prof.dump_stats(profile_to)
    return 0


# -- the load generator ------------------------------------------------------------------------


def build_loadgen(tmpdir: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_server: no C compiler (cc) on PATH")
    exe = os.path.join(tmpdir, "loadgen")
    subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "loadgen.c")], check=True)
    return exe


@dataclass
class Server:
    peer: str
    proc: subprocess.Popen[str]
    port: int


def start_server(peer: str, cpu: int | None, profile_to: str | None = None) -> Server:
    cmd = [sys.executable, os.path.abspath(__file__), "--serve", peer]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if profile_to is not None:
        cmd += ["--profile-to", profile_to]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.match(r"PORT (\d+)", line)
    if m is None:
        proc.kill()
        raise SystemExit(f"bench_server: the {peer} server did not start ({line!r})")
    return Server(peer, proc, int(m.group(1)))


def stop_server(srv: Server) -> None:
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait()


@dataclass
class Run:
    rate: float  # round trips/s
    rt: int
    secs: float
    cpu_lg: float  # load generator CPU s in the measured period
    cpu_srv: float  # server CPU s in the measured period
    steal: float  # share of the machine's CPU time the hypervisor took during the run


def steal_ticks() -> int:
    """Clock ticks the hypervisor took from this VM's CPUs (the "steal" column)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def loadgen(
    exe: str,
    srv: Server,
    conns: int,
    size: int,
    warm: float,
    secs: float,
    pin: bool,
    keep_awake: bool,
) -> Run:
    if srv.proc.poll() is not None:
        raise SystemExit(f"bench_server: the {srv.peer} server died")
    cmd = [exe, "-p", str(srv.port), "-n", str(conns), "-s", str(size)]
    cmd += ["-w", str(warm), "-d", str(secs), "-P", str(srv.proc.pid)]
    if pin:
        cmd += ["-c", str(LOADGEN_CPU)]
    if keep_awake:
        cpus = (SERVER_CPU, LOADGEN_CPU) if pin else sorted(os.sched_getaffinity(0))
        cmd += ["-k", ",".join(map(str, cpus))]
    st0, t0 = steal_ticks(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    steal = (steal_ticks() - st0) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - t0)
    if proc.returncode != 0:
        raise SystemExit(f"bench_server: loadgen against {srv.peer} failed: {proc.stderr.strip()}")
    kv = dict(item.split("=", 1) for item in proc.stdout.split())
    if int(kv["bytes_checked"]) < int(kv["rt"]) * size:
        raise SystemExit(f"bench_server: loadgen checked too few bytes: {proc.stdout}")
    return Run(
        rate=float(kv["rt_per_s"]),
        rt=int(kv["rt"]),
        secs=float(kv["secs"]),
        cpu_lg=float(kv["cpu_s"]),
        cpu_srv=float(kv["srv_cpu_s"]),
        steal=steal / (os.cpu_count() or 1),
    )


# -- import time ------------------------------------------------------------------------------


def import_time(
    n: int, cwd: str, lwspy_file: str
) -> tuple[list[float], list[tuple[float, str]], list[str]]:
    """Cumulative ms of ``lwspy`` in ``-X importtime`` (n fresh processes); the median run's
    slowest imports under it (self ms, module); forbidden modules left in sys.modules."""
    # As after ``pip install``: the bytecode is cached (a first import writes it, even
    # where PYTHONDONTWRITEBYTECODE is set), so no run compiles lwspy's sources.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import lwspy"], check=True, cwd=cwd, env=env)
    runs: list[tuple[float, list[tuple[float, str]]]] = []
    for _ in range(n):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import lwspy"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,  # not the project root: -c puts the cwd first on sys.path
            env=env,
        )
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
        rows = []
        for ln in lines[1:]:  # the first is the header
            _, self_us, cum_us, name = (part for part in re.split(r":|\|", ln, maxsplit=3))
            rows.append((int(self_us), int(cum_us), name.rstrip()[1:]))
        # the lines printed while lwspy was imported end with lwspy's own (depth 0) line
        end = next(i for i, r in enumerate(rows) if r[2].strip() == "lwspy")
        start = end
        while start > 0 and rows[start - 1][2].startswith("  "):
            start -= 1
        under = sorted(((r[0] / 1000, r[2].strip()) for r in rows[start : end + 1]), reverse=True)
        runs.append((rows[end][1] / 1000, under))
    runs.sort(key=lambda r: r[0])
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lwspy; "
            f"print(lwspy.__file__, ','.join(m for m in {FORBIDDEN!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=env,
    )
    where, _, left = check.stdout.strip().partition(" ")
    if os.path.dirname(where) != os.path.dirname(lwspy_file):
        raise SystemExit(f"bench_server: a fresh process imports {where}, not {lwspy_file}")
    present = [m for m in left.split(",") if m]
    return [r[0] for r in runs], runs[len(runs) // 2][1], present


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Case:
    conns: int
    size: int
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.conns}x{self.size}"

    @property
    def title(self) -> str:
        size = f"{self.size // 1024} KiB" if self.size >= 1024 else f"{self.size} B"
        return f"{self.conns} conn{'s' if self.conns > 1 else ''} x {size}"


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"


def report(cases: list[Case], peers: list[str]) -> list[str]:
    verdicts = []
    for case in cases:
        print(f"\n### {case.title}, one message in flight per connection\n")
        print(
            "| server | round trips/s (median) | min..max | server CPU µs/rt "
            "| server core busy | loadgen core busy |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        med = {}
        cpu_us = {}
        for p in peers:
            runs = case.runs[p]
            rates = sorted(r.rate for r in runs)
            med[p] = statistics.median(rates)
            us = cpu_us[p] = statistics.median(r.cpu_srv / r.rt * 1e6 for r in runs)
            busy = statistics.median(r.cpu_srv / r.secs for r in runs)
            lg = statistics.median(r.cpu_lg / r.secs for r in runs)
            name = f"{p} (floor)" if p == "selectors" else p
            print(
                f"| {name} | {fmt(med[p])} | {fmt(rates[0])}..{fmt(rates[-1])} | {us:.1f} "
                f"| {busy:.0%} | {lg:.0%} |"
            )
        if "lwspy" not in med:
            continue
        for peer, goal in (("asyncio", 1.0), ("selectors", 0.9)):
            if peer not in med:
                continue
            ratio = med["lwspy"] / med[peer]
            per_rep = sorted(
                a.rate / b.rate for a, b in zip(case.runs["lwspy"], case.runs[peer], strict=True)
            )
            verdict = "met" if ratio >= goal else f"MISSED by {(goal - ratio) / goal:.1%}"
            line = (
                f"{case.title}: lwspy/{peer} = {ratio:.2f}x (per rep median "
                f"{statistics.median(per_rep):.2f}x, {per_rep[0]:.2f}..{per_rep[-1]:.2f}; "
                f"by server CPU per round trip "
                f"{cpu_us[peer] / cpu_us['lwspy']:.2f}x); goal >= {goal:.1f}x: {verdict}"
            )
            verdicts.append(line)
            print(f"\n{line}", end="")
        print()
    return verdicts


def profile(
    exe: str, key: str, peer: str, pin: bool, keep_awake: bool, secs: float, limit: int
) -> None:
    """cProfile one server over one load generator run: the top functions by own time,
    in µs per round trip (under the profiler, so larger than without it)."""
    import pstats

    case = next((Case(c, s) for c, s in CASES if f"{c}x{s}" == key), None)
    if case is None:
        raise SystemExit(f"--profile: no case {key!r} (have {[f'{c}x{s}' for c, s in CASES]})")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "server.prof")
        srv = start_server(peer, SERVER_CPU if pin else None, out)
        try:  # no warm-up period: every round trip the profile saw is counted
            run = loadgen(exe, srv, case.conns, case.size, 0.0, secs, pin, keep_awake)
        finally:
            stop_server(srv)
        print(
            f"{peer} server under cProfile, {case.title}: {fmt(run.rate)} round trips/s, "
            f"{run.rt:,} round trips\n"
        )
        raw: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(out).stats  # type: ignore[attr-defined]
        rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
        total = sum(v[2] for v in raw.values())
        print(f"own time in all functions: {total / run.rt * 1e6:.2f} µs per round trip\n")
        print("| own µs/rt | cumulative µs/rt | calls/rt | function |")
        print("|---:|---:|---:|---|")
        for (filename, line, func), (_cc, nc, tt, ct, _callers) in rows:
            where = func if filename == "~" else f"{shorten(filename)}:{line}({func})"
            print(
                f"| {tt / run.rt * 1e6:.2f} | {ct / run.rt * 1e6:.2f} | {nc / run.rt:.2f} "
                f"| {where} |"
            )


def shorten(filename: str) -> str:
    for marker in ("/lwspy/", "/tools/"):
        if marker in filename:
            return marker[1:] + filename.rsplit(marker, 1)[1]
    return os.path.basename(filename)


def import_report(cwd: str, lwspy_file: str) -> None:
    times, slowest, present = import_time(5, cwd, lwspy_file)
    med = statistics.median(times)
    verdict = "met" if med <= IMPORT_GOAL_MS else f"MISSED by {med - IMPORT_GOAL_MS:.0f} ms"
    print(
        f"\n### python -X importtime -c 'import lwspy' (5 fresh processes)\n\n"
        f"cumulative for lwspy: median {med:.1f} ms, min..max {times[0]:.1f}.."
        f"{times[-1]:.1f} ms; goal <= {IMPORT_GOAL_MS:.0f} ms: {verdict}"
    )
    print(
        "slowest imports under it (self ms, median run): "
        + ", ".join(f"{name} {ms:.1f}" for ms, name in slowest[:10])
    )
    print(
        f"after `import lwspy`, sys.modules holds of {', '.join(FORBIDDEN)}: "
        + (", ".join(present) + ": MISSED" if present else "none of them: met")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="shorter periods, one repetition less")
    ap.add_argument("--reps", type=int, help="repetitions per case (6; --quick 3)")
    ap.add_argument("--secs", type=float, help="measured seconds per run (1; --quick 0.5)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    ap.add_argument("--no-import", action="store_true", help="skip the import-time check")
    ap.add_argument(
        "--no-keep-awake", action="store_true", help="no SCHED_IDLE busy loop on the CPUs"
    )
    ap.add_argument("--profile", metavar="CASE", help="cProfile a server on 1x128, 50x128, ...")
    ap.add_argument("--profile-peer", default="lwspy", choices=PEERS, help="(lwspy)")
    ap.add_argument("--serve", choices=PEERS, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        return serve(args.serve, args.cpu, args.profile_to)

    reps = args.reps or (3 if args.quick else 6)
    secs = args.secs or (0.5 if args.quick else 1.0)
    warm_run = 0.5 if args.quick else 0.8  # per server and case, before the first rep
    warm_in = 0.2 if args.quick else 0.3  # inside each measured run, new connections
    peers = [p for p in args.peers.split(",") if p]
    if set(peers) - set(PEERS):
        raise SystemExit(f"unknown peers: {sorted(set(peers) - set(PEERS))}; choose from {PEERS}")
    pin = len(os.sched_getaffinity(0)) >= 2 and {SERVER_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)

    keep_awake = not args.no_keep_awake
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_loadgen(tmp)
        if args.profile:
            profile(exe, args.profile, args.profile_peer, pin, keep_awake, secs, 25)
            return 0
        import lwspy

        print(
            f"bench_server: lwspy {lwspy.__version__} ({os.path.dirname(lwspy.__file__)}), "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            + (
                f"servers on CPU {SERVER_CPU}, loadgen on CPU {LOADGEN_CPU}"
                if pin
                else "NOT pinned (fewer than 2 CPUs)"
            )
            + (", SCHED_IDLE keep-awake loops" if keep_awake else ", CPUs may halt when idle")
            + f", reps {reps}, {secs:g} s per run"
            + ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        )
        started = time.perf_counter()
        servers = {p: start_server(p, SERVER_CPU if pin else None) for p in peers}
        cases = [Case(c, s) for c, s in CASES]
        try:
            for case in cases:
                for p in peers:  # warm-up: not recorded
                    loadgen(exe, servers[p], case.conns, case.size, 0.0, warm_run, pin, keep_awake)
                for rep in range(reps):
                    order = peers[rep % len(peers) :] + peers[: rep % len(peers)]
                    for p in order:
                        run = loadgen(
                            exe, servers[p], case.conns, case.size, warm_in, secs, pin, keep_awake
                        )
                        case.runs.setdefault(p, []).append(run)
                        print(
                            f"  rep {rep + 1} {case.key:<9} {p:<9} {fmt(run.rate):>8} rt/s  "
                            f"server {run.cpu_srv / run.rt * 1e6:5.1f} µs/rt "
                            f"busy {run.cpu_srv / run.secs:4.0%}, "
                            f"loadgen busy {run.cpu_lg / run.secs:4.0%}, "
                            f"steal {run.steal:.0%}",
                            flush=True,
                        )
        finally:
            for srv in servers.values():
                stop_server(srv)
        verdicts = report(cases, peers)

        if not args.no_import:
            import_report(tmp, lwspy.__file__)
    for v in verdicts:
        print(v)
    print(f"\nTotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
