"""Benchmark lwspy's netlink role against its peers, measured in the same run.

Three goals of the netlink issue (see SPEC.md "Routing (netlink role)"), each with peers:

1. **Cold plug** of 100,000 routes: a fresh namespace holds a veth link with
   198.51.100.1/24 and 100,000 host routes in 198.18.0.0/15 via 198.51.100.2 (loaded with
   ``ip -batch``). With this thread inside that namespace, time ``Context(netlink=True)``
   plus servicing until ``ctx._netlink.coldplug_done`` (goal <= 0.35 s). Peers: ``ip
   route show`` (subprocess, wall time), pyroute2 ``IPRoute().get_routes()``,
   pyroute2's ``MarshalRtnl.parse`` of the raw dump bytes, a naive ``struct`` loop over
   the same bytes, lwspy's own decoder and ``RouteTable.load`` over them, and the raw
   recv of the dump (one RTM_GETROUTE dump request, recv until NLMSG_DONE, no
   decoding: the floor).
2. **Route deleted -> RAW_CLOSE**: a two-namespace lab (veth, 198.51.100.0/24; peers on
   lo 203.0.113.1-10 in the other namespace), 8,000 idle loopback connections in one
   lwspy context (16,000 wsi) plus 10 connections to the peers. The routes to the
   peers are deleted by one ``ip`` command; figure: time from ``ip`` returning to the
   10th (and first) RAW_CLOSE, with the loop serviced in a tight loop. Two shapes: one
   /28 route carrying all 10, and ten /32 routes deleted by one ``ip -batch``. Also
   ``stats["rechecked"]`` per deletion, and the reference cost of a scan-everything
   design (``ctx.routes.lookup(peer)`` for every wsi).
3. **lookup()** on the 100,000-route table: lookups/s for addresses in and out of the
   table; peer: a brute-force ``ipaddress`` longest-prefix scan of 1,000 routes, scaled.

Needs root and ``ip`` (iproute2). Every namespace is named ``lwbench<pid>...`` (never
the tests' names) and deleted on the way out. Only documentation ranges and
198.18.0.0/15 are used; traffic stays on loopback and inside the namespaces. Usage::

    python tools/bench_netlink.py                    # everything (about 1 min)
    python tools/bench_netlink.py --quick            # fewer runs, no IPRoute.get_routes
    python tools/bench_netlink.py --profile coldplug # cProfile of lwspy (coldplug|cull|lookup)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import ipaddress
import os
import platform
import pstats
import random
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lwspy
from lwspy import Context, Protocol, Reason, WsiState
from lwspy._lab import setns_thread
from lwspy.net.nlmsg import AF_UNSPEC, RTM_GETROUTE, decode, dump_request
from lwspy.net.route import RouteTable

SO_RCVBUFFORCE = 33
NLMSG_DONE = 3
RTM_NEWROUTE = 24
N_ROUTES = 100_000
BULK_BASE = int(ipaddress.IPv4Address("198.18.0.0"))  # routes 198.18.0.1 .. 198.19.134.160
LOCAL_ADDR = "198.51.100.1"
GATEWAY = "198.51.100.2"
PEERS = [f"203.0.113.{i}" for i in range(1, 11)]
LOOPBACK_CONNS = 8_000
CONNECT_BATCH = 1_000
COLDPLUG_GOAL = 0.35
CULL_GOAL = 0.001
LOOKUP_GOAL = 200_000

RAW_RX = Reason.RAW_RX
RAW_CLOSE = Reason.RAW_CLOSE
RAW_ADOPT = Reason.RAW_ADOPT
RAW_CONNECTED = Reason.RAW_CONNECTED
CLIENT_CONNECTION_ERROR = Reason.CLIENT_CONNECTION_ERROR


class BenchError(RuntimeError):
    """A peer did not do the work it was asked for."""


# -- namespaces ------------------------------------------------------------------------------


def ip(*args: str, stdin: str | None = None) -> str:
    """Run ``ip args...``; raise with its stderr if it fails."""
    r = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BenchError(f"ip {' '.join(args[:6])}: {r.stderr.strip()}")
    return r.stdout


class Namespaces:
    """The namespaces this run made; the thread can enter any of them and come home."""

    def __init__(self) -> None:
        self.tag = f"lwbench{os.getpid()}"
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def add(self, key: str) -> str:
        name = f"{self.tag}{key}"
        ip("netns", "add", name)
        self._fds[name] = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        return name

    def remove(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)

    @contextmanager
    def inside(self, name: str) -> Iterator[None]:
        setns_thread(self._fds[name])
        try:
            yield
        finally:
            setns_thread(self._home)

    def close(self) -> None:
        setns_thread(self._home)
        for name in list(self._fds):
            self.remove(name)
        os.close(self._home)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


# -- 1. cold plug ----------------------------------------------------------------------------


def build_coldplug_ns(nss: Namespaces) -> str:
    ns = nss.add("c")
    ip("-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    ip("-n", ns, "addr", "add", f"{LOCAL_ADDR}/24", "dev", "v0")
    for dev in ("lo", "v0", "v1"):
        ip("-n", ns, "link", "set", dev, "up")
    lines = [
        f"route add {ipaddress.IPv4Address(BULK_BASE + i)}/32 via {GATEWAY}\n"
        for i in range(1, N_ROUTES + 1)
    ]
    ip("-n", ns, "-batch", "-", stdin="".join(lines))
    return ns


def lwspy_coldplug(
    keep: list[Any] | None = None, prof: cProfile.Profile | None = None
) -> tuple[float, float, int]:
    """(wall s, CPU s, routes) for Context(netlink=True) until the cold plug is done."""
    gc.collect()
    if prof is not None:
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    ctx = Context(netlink=True)
    watcher = ctx._netlink
    if watcher is None:
        raise BenchError("no netlink watcher")
    while not watcher.coldplug_done:
        ctx.service(100)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof is not None:
        prof.disable()
    table = ctx.routes
    assert table is not None
    n = len(table)
    if keep is not None:
        keep[:] = [table]
    ctx.destroy()
    if n < N_ROUTES:
        raise BenchError(f"lwspy cold plug: {n} routes, not >= {N_ROUTES}")
    return dt, cpu, n


def ip_route_show(ns: str) -> tuple[float, float, int]:
    gc.collect()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(["ip", "-n", ns, "route", "show"], capture_output=True, check=True)
    dt = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    n = r.stdout.count(b"\n")
    if n < N_ROUTES:
        raise BenchError(f"ip route show: {n} lines")
    return dt, cpu, n


def raw_dump() -> tuple[float, float, list[bytes]]:
    """The floor: one RTM_GETROUTE dump, recv until NLMSG_DONE, no decoding."""
    gc.collect()
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        sock.bind((0, 0))
        recv = sock.recv
        tail = struct.Struct("=IH").unpack_from
        chunks: list[bytes] = []
        t0, c0 = time.perf_counter(), time.process_time()
        sock.send(dump_request(RTM_GETROUTE, AF_UNSPEC, 1))
        while True:
            data = recv(1 << 16)
            chunks.append(data)
            # NLMSG_DONE (20 bytes) ends the dump, in its own datagram or the last one's tail
            if len(data) >= 20 and tail(data, len(data) - 20) == (20, NLMSG_DONE):
                break
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        sock.close()
    return dt, cpu, chunks


def count_routes(chunks: list[bytes]) -> int:
    """RTM_NEWROUTE messages in the dump (header walk), to check every parser's count."""
    n = 0
    hdr = struct.Struct("=IH").unpack_from
    for data in chunks:
        off = 0
        while off + 16 <= len(data):
            length, mtype = hdr(data, off)
            if length < 16:
                break
            n += mtype == RTM_NEWROUTE
            off += (length + 3) & ~3
    return n


def pyroute2_marshal(chunks: list[bytes], want: int) -> tuple[float, float, int]:
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    marshal = MarshalRtnl()
    n = 0
    for data in chunks:
        for msg in marshal.parse(data):
            n += msg["header"]["type"] == RTM_NEWROUTE
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n != want:
        raise BenchError(f"pyroute2 marshal: {n} routes, not {want}")
    return dt, cpu, n


def pyroute2_get_routes() -> tuple[float, float, int]:
    from pyroute2 import IPRoute

    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    with IPRoute() as ipr:
        n = len(list(ipr.get_routes()))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n < N_ROUTES:
        raise BenchError(f"pyroute2 get_routes: {n} routes")
    return dt, cpu, n


_NLHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")


def naive_struct(chunks: list[bytes], want: int) -> tuple[float, float, int]:
    """A plain struct walk: every route message, every attribute, one tuple per route."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    hdr, rtm, rta, u32 = _NLHDR.unpack_from, _RTMSG.unpack_from, _RTA.unpack_from, _U32.unpack_from
    ntop, inet, inet6 = socket.inet_ntop, socket.AF_INET, socket.AF_INET6
    routes = []
    for data in chunks:
        off, n = 0, len(data)
        while off + 16 <= n:
            length, mtype, _flags, _seq, _pid = hdr(data, off)
            if length < 16:
                break
            if mtype == RTM_NEWROUTE:
                family, dst_len, _sl, _tos, table, _proto, _scope, rtype, _f = rtm(data, off + 16)
                af = inet if family == 2 else inet6
                dst = gw = None
                oif = prio = 0
                a, end = off + 28, off + length
                while a + 4 <= end:
                    alen, atype = rta(data, a)
                    if alen < 4:
                        break
                    if atype == 1:
                        dst = ntop(af, data[a + 4 : a + alen])
                    elif atype == 5:
                        gw = ntop(af, data[a + 4 : a + alen])
                    elif atype == 4:
                        oif = u32(data, a + 4)[0]
                    elif atype == 6:
                        prio = u32(data, a + 4)[0]
                    elif atype == 15:
                        table = u32(data, a + 4)[0]
                    a += (alen + 3) & ~3
                routes.append((family, dst, dst_len, gw, oif, prio, table, rtype))
            off += (length + 3) & ~3
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(routes) != want:
        raise BenchError(f"naive struct: {len(routes)} routes, not {want}")
    return dt, cpu, len(routes)


def lwspy_decode(chunks: list[bytes], want: int) -> tuple[float, float, int]:
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for data in chunks:
        for rec in decode(data):
            n += len(getattr(rec, "routes", ()))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if n != want:
        raise BenchError(f"lwspy decode: {n} routes, not {want}")
    return dt, cpu, n


def lwspy_decode_load(chunks: list[bytes]) -> tuple[float, float, int]:
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    table = RouteTable()
    for data in chunks:
        table.load(decode(data))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if len(table) < N_ROUTES:
        raise BenchError(f"lwspy decode+load: {len(table)} routes")
    return dt, cpu, len(table)


def bench_coldplug(
    nss: Namespaces, reps: int, slow_reps: int, slow_get_routes: int, keep: list[Any]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    ns = build_coldplug_ns(nss)
    setup = time.perf_counter() - t0
    print(f"  namespace with {N_ROUTES:,} routes loaded by ip -batch in {setup:.1f} s", flush=True)
    res: dict[str, list[tuple[float, float, int]]] = {}
    with nss.inside(ns):
        chunks: list[bytes] = []
        fast: list[tuple[str, Callable[[], tuple[float, float, int]]]] = [
            ("lwspy", lambda: lwspy_coldplug(keep)),
            ("ip route show", lambda: ip_route_show(ns)),
            ("raw recv", lambda: _raw_keep(chunks)),
        ]
        for rep in range(reps):
            order = fast[rep % len(fast) :] + fast[: rep % len(fast)]
            for name, fn in order:
                res.setdefault(name, []).append(fn())
        want = count_routes(chunks)
        dump_bytes = sum(map(len, chunks))
        for _rep in range(reps):
            res.setdefault("lwspy decode", []).append(lwspy_decode(chunks, want))
            res.setdefault("lwspy decode+load", []).append(lwspy_decode_load(chunks))
            res.setdefault("naive struct", []).append(naive_struct(chunks, want))
        for _ in range(slow_reps):
            res.setdefault("pyroute2 marshal", []).append(pyroute2_marshal(chunks, want))
        for _ in range(slow_get_routes):
            res.setdefault("pyroute2 get_routes", []).append(pyroute2_get_routes())
    nss.remove(ns)
    return {
        "runs": res,
        "dump_bytes": dump_bytes,
        "datagrams": len(chunks),
        "route_msgs": want,
    }


def _raw_keep(chunks: list[bytes]) -> tuple[float, float, int]:
    dt, cpu, got = raw_dump()
    chunks[:] = got
    return dt, cpu, count_routes(got)


# -- 2. route deleted -> RAW_CLOSE -----------------------------------------------------------


class CullLab:
    """ns A: lwspy, va 198.51.100.1/24; ns B: vb 198.51.100.2/24, peers on lo 203.0.113.1-10.

    One lwspy context in A holds LOOPBACK_CONNS loopback connections (both ends) and the
    10 connections to the peers; the peers are a plain listening socket made in B.
    """

    def __init__(self, nss: Namespaces) -> None:
        self.nss = nss
        self.a = nss.add("a")
        self.b = nss.add("b")
        ip(*f"link add va netns {self.a} type veth peer name vb netns {self.b}".split())
        for ns, dev, addr in ((self.a, "va", LOCAL_ADDR), (self.b, "vb", GATEWAY)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        ip(
            "-n",
            self.b,
            "-batch",
            "-",
            stdin="".join(f"addr add {p}/32 dev lo\n" for p in PEERS),
        )
        with nss.inside(self.b):
            self.listener = socket.socket()
        self.listener.bind(("0.0.0.0", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.closes: list[float] = []
        self.reasons: list[str | None] = []
        self.ready = 0
        self.far: list[Any] = []
        self.ctx: Context | None = None

    def callback(self, wsi: Any, reason: Reason, user: Any, data: Any) -> int:
        if reason is RAW_CLOSE:
            self.closes.append(time.perf_counter())
            self.reasons.append(wsi.close_reason)
        elif reason is RAW_CONNECTED or reason is RAW_ADOPT:
            self.ready += 1
        elif reason is CLIENT_CONNECTION_ERROR:
            raise BenchError(f"connect failed: {data}")
        return 0

    def start(self) -> Context:
        """The context in A with its loopback connections (the thread is in A)."""
        ctx = Context(protocols=[Protocol("raw", self.callback)], netlink=True)
        self.ctx = ctx
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        watcher = ctx._netlink
        assert watcher is not None and vh.port is not None
        self.service_until(lambda: watcher.coldplug_done)
        for start in range(0, LOOPBACK_CONNS, CONNECT_BATCH):
            n = min(CONNECT_BATCH, LOOPBACK_CONNS - start)
            want = self.ready + 2 * n
            for _ in range(n):
                ctx.connect("127.0.0.1", vh.port, protocol="raw")
            self.service_until(lambda want=want: self.ready >= want, secs=30)
        return ctx

    def service_until(self, cond: Callable[[], bool], secs: float = 10) -> None:
        assert self.ctx is not None
        end = time.monotonic() + secs
        while not cond():
            if time.monotonic() > end:
                raise BenchError("lab: condition not reached")
            self.ctx.service(10)

    def add_routes(self, shape: str) -> None:
        if shape == "one /28":
            ip("-n", self.a, "route", "add", "203.0.113.0/28", "via", GATEWAY)
        else:
            ip("-n", self.a, "-batch", "-", stdin="".join(self._lines("add")))
        table = self.ctx.routes if self.ctx is not None else None
        assert table is not None
        self.service_until(lambda: all(table.lookup(p) is not None for p in PEERS))

    def del_command(self, shape: str) -> tuple[list[str], str | None]:
        if shape == "one /28":
            return ["ip", "-n", self.a, "route", "del", "203.0.113.0/28"], None
        return ["ip", "-n", self.a, "-batch", "-"], "".join(self._lines("del"))

    @staticmethod
    def _lines(verb: str) -> list[str]:
        return [f"route {verb} {p}/32 via {GATEWAY}\n" for p in PEERS]

    def connect_far(self) -> None:
        ctx = self.ctx
        assert ctx is not None
        want = self.ready + len(PEERS)
        self.far = [ctx.connect(p, self.port, protocol="raw") for p in PEERS]
        self.service_until(lambda: self.ready >= want)
        if any(w._route_id is None for w in self.far):
            raise BenchError("a peer connection is not indexed by its route")
        for s in self.accepted:
            s.close()
        self.accepted = []
        end = time.monotonic() + 5
        while len(self.accepted) < len(PEERS):
            try:
                s, _ = self.listener.accept()
                self.accepted.append(s)
            except BlockingIOError:
                if time.monotonic() > end:
                    raise BenchError("peer: accepts missing") from None
                time.sleep(0.001)

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.destroy()
        for s in self.accepted:
            s.close()
        self.listener.close()


def full_scan(ctx: Context, reps: int) -> tuple[float, int]:
    """What a scan-everything design pays per change: lookup(peer) for every wsi."""
    table = ctx.routes
    assert table is not None
    lookup = table.lookup
    wsis = ctx.wsis
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for w in wsis:
            peer = w.peer
            if peer is not None:
                lookup(peer[0])
        times.append(time.perf_counter() - t0)
    return med(times), len(wsis)


def bench_cull(nss: Namespaces, reps: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * LOOPBACK_CONNS + 200:
        raise BenchError(f"RLIMIT_NOFILE hard limit {hard} < {2 * LOOPBACK_CONNS + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lab = CullLab(nss)
    out: dict[str, Any] = {}
    try:
        with nss.inside(lab.a):
            t0 = time.perf_counter()
            ctx = lab.start()
            nwsi = len(ctx.wsis)
            print(f"  {nwsi:,} loopback wsi up in {time.perf_counter() - t0:.1f} s", flush=True)
            watcher = ctx._netlink
            assert watcher is not None
            loop_wsis = list(ctx.wsis)
            for shape in ("one /28", "ten /32, one ip -batch"):
                firsts, tenths, rechecked, ip_wall = [], [], [], []
                for _ in range(reps):
                    lab.add_routes(shape)
                    lab.connect_far()
                    for _ in range(5):
                        ctx.service(0)
                    lab.closes.clear()
                    lab.reasons.clear()
                    r0 = watcher.stats["rechecked"]
                    cmd, stdin = lab.del_command(shape)
                    gc.collect()
                    t_ip = time.perf_counter()
                    if stdin is None:
                        subprocess.run(cmd, stdin=subprocess.DEVNULL, check=True)
                    else:
                        subprocess.run(cmd, input=stdin, text=True, check=True)
                    t_ret = time.perf_counter()
                    if profile is not None:  # only the loop's work, not the ip command
                        profile.enable()
                    closes = lab.closes
                    service = ctx.service
                    end = t_ret + 5
                    while len(closes) < len(PEERS):
                        service(0)
                        if time.perf_counter() > end:
                            raise BenchError(f"{len(closes)} RAW_CLOSE of {len(PEERS)} in 5 s")
                    if profile is not None:
                        profile.disable()
                    ip_wall.append(t_ret - t_ip)
                    firsts.append(closes[0] - t_ret)
                    tenths.append(closes[len(PEERS) - 1] - t_ret)
                    rechecked.append(watcher.stats["rechecked"] - r0)
                    for _ in range(5):
                        ctx.service(0)
                    if len(closes) != len(PEERS) or set(lab.reasons) != {"route lost"}:
                        raise BenchError(f"closes {len(closes)}, reasons {set(lab.reasons)}")
                out[shape] = {
                    "first": firsts,
                    "tenth": tenths,
                    "rechecked": rechecked,
                    "ip_wall": ip_wall,
                }
            alive = sum(w.state is WsiState.ESTABLISHED for w in loop_wsis)
            if alive != len(loop_wsis):
                raise BenchError(f"{len(loop_wsis) - alive} loopback connections were closed")
            lab.add_routes("one /28")
            lab.connect_far()
            scan, scanned = full_scan(ctx, 5)
            out["scan"] = scan
            out["scanned"] = scanned
            out["wsi"] = nwsi
    finally:
        lab.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return out


# -- 3. lookup -------------------------------------------------------------------------------


def bench_lookup(table: RouteTable, n: int, reps: int) -> dict[str, Any]:
    rnd = random.Random(4)
    inside = [str(ipaddress.IPv4Address(BULK_BASE + rnd.randint(1, N_ROUTES))) for _ in range(n)]
    outside_base = int(ipaddress.IPv4Address("198.19.160.0"))  # past the last route
    outside = [str(ipaddress.IPv4Address(outside_base + rnd.randrange(16384))) for _ in range(n)]
    inside_obj = [ipaddress.IPv4Address(a) for a in inside]
    lookup = table.lookup
    if any(lookup(a) is None for a in inside[:1000]) or any(lookup(a) for a in outside[:1000]):
        raise BenchError("lookup: wrong answers")
    cases = {"inside (str)": inside, "outside (str)": outside, "inside (IPv4Address)": inside_obj}
    rates: dict[str, float] = {}
    for name, addrs in cases.items():
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for a in addrs:
                lookup(a)
            times.append(time.perf_counter() - t0)
        rates[name] = n / med(times)
    # the reference: ipaddress, longest-prefix by scanning 1,000 networks, scaled to 100,000
    nets = [ipaddress.ip_network(f"{r.dst}/{r.dst_len}") for r in list(table)[:1000]]
    sample = inside[:200]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for s in sample:
            a = ipaddress.ip_address(s)
            best = None
            for net in nets:
                if a in net and (best is None or net.prefixlen > best.prefixlen):
                    best = net
        times.append(time.perf_counter() - t0)
    per_1000 = med(times) / len(sample)
    rates["brute force, 1,000 routes"] = 1 / per_1000
    rates["brute force, scaled to 100,000"] = 1 / (per_1000 * len(table) / len(nets))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for s in inside:
            ipaddress.ip_address(s)
        times.append(time.perf_counter() - t0)
    rates["ipaddress.ip_address(str) alone"] = n / med(times)
    # a floor for any str-keyed table: parse with inet_aton, one dict probe
    probe = {BULK_BASE + i: i for i in range(1, N_ROUTES + 1)}
    aton, frombytes = socket.inet_aton, int.from_bytes
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for s in inside:
            probe.get(frombytes(aton(s), "big"))
        times.append(time.perf_counter() - t0)
    rates["floor: inet_aton + one dict probe"] = n / med(times)
    return {"rates": rates, "table": len(table)}


# -- report ----------------------------------------------------------------------------------


def report_coldplug(r: dict[str, Any]) -> None:
    runs = r["runs"]
    print(
        f"\n**Cold plug: {r['route_msgs']:,} route messages in the dump "
        f"({r['dump_bytes'] / 1e6:.1f} MB, {r['datagrams']} datagrams)**\n"
    )
    print("| peer | wall s (median) | min..max | CPU s | runs | vs lwspy | vs raw recv |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = med([x[0] for x in runs["lwspy"]])
    floor = med([x[0] for x in runs["raw recv"]])
    for name, xs in runs.items():
        walls = [x[0] for x in xs]
        m = med(walls)
        print(
            f"| {name} | {m:.3f} | {min(walls):.3f}..{max(walls):.3f} | "
            f"{med([x[1] for x in xs]):.3f} | {len(xs)} | {m / base:.2f}x | {m / floor:.1f}x |"
        )
    verdict = "met" if base <= COLDPLUG_GOAL else "MISSED"
    print(f"\ngoal <= {COLDPLUG_GOAL} s: median {base:.3f} s -> {verdict}")


def report_cull(r: dict[str, Any]) -> None:
    print(f"\n**Route deleted -> RAW_CLOSE ({r['wsi']:,} wsi in the context, 10 affected)**\n")
    print(
        "| deletion | runs | 10th RAW_CLOSE median | p90 | max | 1st RAW_CLOSE median | "
        "rechecked per deletion | `ip` wall median |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for shape in ("one /28", "ten /32, one ip -batch"):
        s = r[shape]
        t = s["tenth"]
        print(
            f"| {shape} | {len(t)} | {med(t) * 1e3:.3f} ms | {p90(t) * 1e3:.3f} ms | "
            f"{max(t) * 1e3:.3f} ms | {med(s['first']) * 1e3:.3f} ms | "
            f"{sorted(set(s['rechecked']))} | {med(s['ip_wall']) * 1e3:.1f} ms |"
        )
    for shape in ("one /28", "ten /32, one ip -batch"):
        s = r[shape]
        each = med([(t - f) / 9 for t, f in zip(s["tenth"], s["first"], strict=True)])
        print(f"{shape}: each RAW_CLOSE after the first: {each * 1e6:.0f} us (median)")
    print(
        f"\nreference, scan everything: lookup(peer) for all {r['scanned']:,} wsi: "
        f"{r['scan'] * 1e3:.1f} ms per change"
    )
    for shape in ("one /28", "ten /32, one ip -batch"):
        m = med(r[shape]["tenth"])
        verdict = "met" if m <= CULL_GOAL else "MISSED"
        print(f"goal median <= 1 ms ({shape}): {m * 1e3:.3f} ms -> {verdict}")


def report_lookup(r: dict[str, Any]) -> None:
    print(f"\n**lookup() on the {r['table']:,}-route table**\n")
    print("| case | lookups/s | vs goal 200,000/s |")
    print("|---|---:|---:|")
    for name, rate in r["rates"].items():
        print(f"| {name} | {rate:,.0f} | {rate / LOOKUP_GOAL:.2f}x |")


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"nproc {os.cpu_count()}, Linux {platform.release()}, Python {platform.python_version()}"
        f", lwspy {lwspy.__version__}, load average {load:.2f} at start"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs, no IPRoute.get_routes")
    ap.add_argument("--profile", choices=("coldplug", "cull", "lookup"))
    ap.add_argument(
        "--slow-reps",
        type=int,
        help="runs of pyroute2 MarshalRtnl (3) and IPRoute.get_routes (1; 15 s each)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_netlink: needs root (network namespaces)", file=sys.stderr)
        return 2
    reps, slow_reps, cull_reps = (3, 0, 4) if args.quick else (5, 3, 10)
    slow_reps = args.slow_reps if args.slow_reps is not None else slow_reps
    print(f"# bench_netlink: {machine()}", flush=True)
    t_start = time.perf_counter()
    nss = Namespaces()
    try:
        if args.profile is not None:
            return profile(nss, args.profile)
        keep: list[Any] = []
        print("1. cold plug", flush=True)
        get_routes_reps = slow_reps if args.slow_reps is not None else min(slow_reps, 1)
        cold = bench_coldplug(nss, reps, slow_reps, get_routes_reps, keep)
        report_coldplug(cold)
        print("\n3. lookup", flush=True)
        report_lookup(bench_lookup(keep[0], 200_000, reps))
        keep.clear()
        gc.collect()
        print("\n2. route deleted -> RAW_CLOSE", flush=True)
        report_cull(bench_cull(nss, cull_reps, None))
    finally:
        nss.close()
    total, load = time.perf_counter() - t_start, os.getloadavg()[0]
    print(f"\ntotal {total:.0f} s, load average {load:.2f} at end")
    return 0


def profile(nss: Namespaces, what: str) -> int:
    prof = cProfile.Profile()
    if what == "coldplug":
        ns = build_coldplug_ns(nss)
        with nss.inside(ns):
            lwspy_coldplug()  # warm up (decoder shapes)
            lwspy_coldplug(prof=prof)
    elif what == "lookup":
        ns = build_coldplug_ns(nss)
        keep: list[Any] = []
        with nss.inside(ns):
            lwspy_coldplug(keep)
        addrs = [str(ipaddress.IPv4Address(BULK_BASE + i)) for i in range(1, 50_001)]
        prof.enable()
        for a in addrs:
            keep[0].lookup(a)
        prof.disable()
    else:
        bench_cull(nss, 10, prof)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    if what == "cull":
        cull_breakdown()
    return 0


def cull_breakdown() -> None:
    """Micro-timings (no profiler) of the steps one route deletion goes through."""
    import timeit

    from lwspy.net import nlmsg
    from lwspy.roles.netlink import _host

    def rta(kind: int, payload: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(payload), kind) + payload

    body = _RTMSG.pack(2, 32, 0, 0, 254, 4, 0, 1, 0) + b"".join(
        (
            rta(15, _U32.pack(254)),
            rta(1, socket.inet_aton(PEERS[0])),
            rta(5, socket.inet_aton(GATEWAY)),
            rta(4, _U32.pack(2)),
        )
    )
    msg = _NLHDR.pack(16 + len(body), 25, 0, 0, 0) + body  # one RTM_DELROUTE, as ip sends
    table = RouteTable()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("nlmsg.decode(one RTM_DELROUTE datagram)", lambda: decode(msg)),
        ("nlmsg._route(same message): the plain walker", lambda: nlmsg._route(msg, 0, len(msg))),
        ("netlink._host(peer) (ipaddress parse)", lambda: _host(PEERS[0])),
        ("RouteTable.lookup(peer)", lambda: table.lookup(PEERS[0])),
    ]
    print("\nper step, microseconds (timeit, no profiler):")
    for name, fn in steps:
        fn()
        n = 20_000
        print(f"  {timeit.timeit(fn, number=n) / n * 1e6:6.1f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
