"""Benchmark the netlink route decoder and the route table (issue 4's figures).

* **cold plug**: ``--routes`` (100,000) RTM_NEWROUTE messages for /32 routes in
  198.18.0.0/15 via 198.51.100.1, plus the few routes of a connected interface (default,
  connected /24, local and broadcast), laid out as the kernel dumps them (rtmsg, then
  RTA_TABLE, RTA_DST, [RTA_PRIORITY], [RTA_PREFSRC], RTA_GATEWAY, RTA_OIF; NLM_F_MULTI;
  datagrams of at most 32 KiB, the last one ending in NLMSG_DONE), built here with
  ``struct``. Timed: what the netlink role does with the datagrams it reads,
  ``RouteTable.load(nlmsg.decode(datagram))`` for each (also with the garbage collector
  off, to show its share); and ``decode`` alone. Peers on the same bytes, decoding
  only: a naive ``struct`` loop (a dict of attributes per message, then a dict per
  route, as one writes it first) and pyroute2's ``MarshalRtnl().parse`` (the parser
  behind ``IPRoute.get_routes()``).
* **lookup**: ``RouteTable.lookup`` on that table, for random addresses in
  198.18.0.0/15 (about 3/4 hit a /32, the rest the default route), given as ``str`` and
  as ``ipaddress.IPv4Address``; and ``routable``.

Every peer's result is checked (route count, a sample of routes). Figures are the best
and the median of ``--repeat`` runs (5; pyroute2: ``--pyroute2-repeat``, 3), peers
interleaved in each repetition, with the garbage collector on, as in an application.
Reading the dump from the kernel is not part of this (it needs a namespace; the issue
measured 0.08 s for these bytes). Usage::

    PYTHONPATH=. python tools/bench_route.py               # the full run (about a minute)
    PYTHONPATH=. python tools/bench_route.py --no-pyroute2 --repeat 3
    PYTHONPATH=. python tools/bench_route.py --profile     # cProfile of the cold plug
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
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from lwspy.net import nlmsg
from lwspy.net.nlmsg import (
    AF_INET,
    NLM_F_MULTI,
    NLMSG_DONE,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PREFSRC,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_NEWROUTE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_UNICAST,
    RTPROT_BOOT,
    RTPROT_KERNEL,
    RouteMsg,
)
from lwspy.net.route import RouteTable

BASE = int(ipaddress.IPv4Address("198.18.0.0"))
SPAN = 1 << 17  # 198.18.0.0/15
GATEWAY = "198.51.100.1"
HOST_ADDR = "198.51.100.2"
OIF = 2
SEQ = 1
PID = 4242
DATAGRAM = 32768  # the kernel's largest dump skb with a large enough receive buffer
COLD_PLUG = "lwspy decode + RouteTable.load"


class BenchError(RuntimeError):
    """A peer did not decode what was encoded."""


# -- the dump, as the kernel writes it -------------------------------------------------------


def _attr(atype: int, payload: bytes) -> bytes:
    pad = -len(payload) % 4
    return struct.pack("=HH", 4 + len(payload), atype) + payload + bytes(pad)


def route_message(
    dst: str | None,
    dst_len: int,
    *,
    table: int = RT_TABLE_MAIN,
    protocol: int = RTPROT_BOOT,
    scope: int = RT_SCOPE_UNIVERSE,
    rtype: int = RTN_UNICAST,
    gateway: str | None = None,
    priority: int | None = None,
    prefsrc: str | None = None,
) -> bytes:
    """One RTM_NEWROUTE of a dump (attribute order of the kernel's fib_dump_info)."""
    body = struct.pack("=BBBBBBBBI", AF_INET, dst_len, 0, 0, table, protocol, scope, rtype, 0)
    attrs = _attr(RTA_TABLE, struct.pack("=I", table))
    if dst is not None:
        attrs += _attr(RTA_DST, socket.inet_aton(dst))
    if priority is not None:
        attrs += _attr(RTA_PRIORITY, struct.pack("=I", priority))
    if prefsrc is not None:
        attrs += _attr(RTA_PREFSRC, socket.inet_aton(prefsrc))
    if gateway is not None:
        attrs += _attr(RTA_GATEWAY, socket.inet_aton(gateway))
    attrs += _attr(RTA_OIF, struct.pack("=I", OIF))
    length = 16 + len(body) + len(attrs)
    return struct.pack("=IHHII", length, RTM_NEWROUTE, NLM_F_MULTI, SEQ, PID) + body + attrs


def system_routes() -> list[bytes]:
    """What one interface with 198.51.100.2/24 and a default gateway puts in the tables."""
    return [
        route_message(
            HOST_ADDR,
            32,
            table=RT_TABLE_LOCAL,
            protocol=RTPROT_KERNEL,
            scope=RT_SCOPE_HOST,
            rtype=RTN_LOCAL,
            prefsrc=HOST_ADDR,
        ),
        route_message(
            "198.51.100.255",
            32,
            table=RT_TABLE_LOCAL,
            protocol=RTPROT_KERNEL,
            scope=RT_SCOPE_LINK,
            rtype=RTN_BROADCAST,
            prefsrc=HOST_ADDR,
        ),
        route_message(None, 0, gateway=GATEWAY, priority=100),
        route_message(
            "198.51.100.0",
            24,
            protocol=RTPROT_KERNEL,
            scope=RT_SCOPE_LINK,
            prefsrc=HOST_ADDR,
            priority=100,
        ),
    ]


def dump_datagrams(count: int) -> tuple[list[bytes], int]:
    """The dump of the system routes and ``count`` /32 routes, cut into datagrams."""
    if count > SPAN:
        raise SystemExit(f"--routes: at most {SPAN} fit in 198.18.0.0/15")
    messages = system_routes()
    messages += [
        route_message(str(ipaddress.IPv4Address(BASE + i)), 32, gateway=GATEWAY)
        for i in range(count)
    ]
    messages.append(struct.pack("=IHHIIi", 20, NLMSG_DONE, NLM_F_MULTI, SEQ, PID, 0))
    datagrams: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for msg in messages:
        if size + len(msg) > DATAGRAM:
            datagrams.append(b"".join(current))
            current, size = [], 0
        current.append(msg)
        size += len(msg)
    datagrams.append(b"".join(current))
    return datagrams, len(messages) - 1


# -- the peers -------------------------------------------------------------------------------


def lwspy_cold_plug(datagrams: list[bytes]) -> RouteTable:
    """What the netlink role does with a dump: decode each datagram, load the routes."""
    table = RouteTable()
    decode = nlmsg.decode
    for data in datagrams:
        table.load(decode(data))
    return table


def lwspy_cold_plug_gc_off(datagrams: list[bytes]) -> RouteTable:
    """The same with the garbage collector off: how much of the time is CPython's GC
    tracking the new routes (a Route, a tuple subclass, is never untracked)."""
    gc.disable()
    try:
        return lwspy_cold_plug(datagrams)
    finally:
        gc.enable()


def lwspy_decode(datagrams: list[bytes]) -> list[Any]:
    """Decoding alone."""
    decode = nlmsg.decode
    return [decode(data) for data in datagrams]


_HDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")


def naive_decode(datagrams: list[bytes]) -> list[dict[str, Any]]:
    """A plain struct loop: a dict of attributes per message, a dict per route."""
    routes = []
    for data in datagrams:
        off = 0
        while off + 16 <= len(data):
            length, mtype, _flags, _seq, _pid = _HDR.unpack_from(data, off)
            if mtype == RTM_NEWROUTE:
                family, dst_len, _src_len, _tos, table, proto, scope, rtype, _rflags = (
                    _RTMSG.unpack_from(data, off + 16)
                )
                attrs = {}
                a = off + 28
                while a < off + length:
                    alen, atype = _NLA.unpack_from(data, a)
                    attrs[atype] = data[a + 4 : a + alen]
                    a += (alen + 3) & ~3
                route = {
                    "family": family,
                    "dst_len": dst_len,
                    "table": table,
                    "type": rtype,
                    "protocol": proto,
                    "scope": scope,
                    "dst": socket.inet_ntop(family, attrs[RTA_DST]) if RTA_DST in attrs else None,
                    "gateway": (
                        socket.inet_ntop(family, attrs[RTA_GATEWAY])
                        if RTA_GATEWAY in attrs
                        else None
                    ),
                    "prefsrc": (
                        socket.inet_ntop(family, attrs[RTA_PREFSRC])
                        if RTA_PREFSRC in attrs
                        else None
                    ),
                    "oif": _U32.unpack(attrs[RTA_OIF])[0] if RTA_OIF in attrs else None,
                    "priority": _U32.unpack(attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else 0,
                }
                if RTA_TABLE in attrs:
                    route["table"] = _U32.unpack(attrs[RTA_TABLE])[0]
                routes.append(route)
            off += (length + 3) & ~3
    return routes


def pyroute2_decode(datagrams: list[bytes]) -> list[Any]:
    """pyroute2's marshal, message objects decoded (what IPRoute hands out)."""
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    marshal = MarshalRtnl()
    out: list[Any] = []
    for data in datagrams:
        out.extend(msg for msg in marshal.parse(data) if msg["header"]["type"] == RTM_NEWROUTE)
    return out


# -- checks ----------------------------------------------------------------------------------


def sample_indexes(count: int) -> list[int]:
    return sorted({0, 1, count // 2, count - 1})


def check_table(table: RouteTable, count: int) -> None:
    if len(table) != count + 4:
        raise BenchError(f"lwspy: {len(table)} routes in the table, not {count + 4}")
    for i in sample_indexes(count):
        addr = str(ipaddress.IPv4Address(BASE + i))
        route = table.lookup(addr)
        if route is None or (route.dst, route.dst_len, route.gateway, route.oif) != (
            addr,
            32,
            GATEWAY,
            OIF,
        ):
            raise BenchError(f"lwspy: wrong route for {addr}: {route}")
    default = table.lookup("203.0.113.1")
    if default is None or default.dst_len != 0 or default.priority != 100:
        raise BenchError(f"lwspy: wrong default route: {default}")


def check_decode(records: list[Any], count: int) -> None:
    routes = [
        r for recs in records for rec in recs if isinstance(rec, RouteMsg) for r in rec.routes
    ]
    if len(routes) != count + 4:
        raise BenchError(f"lwspy decode: {len(routes)} routes, not {count + 4}")


def check_naive(routes: list[dict[str, Any]], count: int) -> None:
    if len(routes) != count + 4:
        raise BenchError(f"naive: {len(routes)} routes, not {count + 4}")
    for i in sample_indexes(count):
        route = routes[4 + i]
        if (route["dst"], route["gateway"]) != (str(ipaddress.IPv4Address(BASE + i)), GATEWAY):
            raise BenchError(f"naive: wrong route {route}")


def check_pyroute2(msgs: list[Any], count: int) -> None:
    if len(msgs) != count + 4:
        raise BenchError(f"pyroute2: {len(msgs)} routes, not {count + 4}")
    for i in sample_indexes(count):
        msg = msgs[4 + i]
        if msg.get_attr("RTA_DST") != str(ipaddress.IPv4Address(BASE + i)):
            raise BenchError(f"pyroute2: wrong route {msg}")


# -- running ---------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def lookup_rates(table: RouteTable, count: int, repeat: int) -> dict[str, list[float]]:
    """Lookups per second for ``count`` random addresses in 198.18.0.0/15."""
    rng = random.Random(4)
    texts = [str(ipaddress.IPv4Address(BASE + rng.randrange(SPAN))) for _ in range(count)]
    objects = [ipaddress.IPv4Address(text) for text in texts]
    lookup = table.lookup
    routable = table.routable
    rates: dict[str, list[float]] = {
        "lookup(str)": [],
        "lookup(IPv4Address)": [],
        "routable(str)": [],
    }
    for _ in range(repeat):
        for name, fn, addrs in (
            ("lookup(str)", lookup, texts),
            ("lookup(IPv4Address)", lookup, objects),
            ("routable(str)", routable, texts),
        ):
            start = time.perf_counter()
            for addr in addrs:
                fn(addr)
            rates[name].append(count / (time.perf_counter() - start))
    hits = [table.lookup(addr) for addr in texts[:10000]]
    misses = sum(1 for route in hits if route is not None and route.dst_len == 0)
    print(f"  ({misses / 100:.0f}% of the addresses fall to the default route)")
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--routes", type=int, default=100_000, help="routes in 198.18.0.0/15")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each lwspy/naive figure")
    ap.add_argument("--pyroute2-repeat", type=int, default=3, help="runs of pyroute2's parse")
    ap.add_argument("--no-pyroute2", action="store_true", help="skip pyroute2 (slow)")
    ap.add_argument("--lookups", type=int, default=100_000, help="addresses per lookup run")
    ap.add_argument("--profile", action="store_true", help="cProfile one lwspy cold plug")
    args = ap.parse_args(argv)

    datagrams, count = dump_datagrams(args.routes)
    total = sum(map(len, datagrams))
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{count:,} routes ({args.routes:,} in 198.18.0.0/15 + 4 system), "
        f"{total:,} bytes in {len(datagrams)} datagrams"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(lwspy_cold_plug, datagrams)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0

    peers: list[tuple[str, Callable[[], Any], Callable[[Any, int], None], int]] = [
        (COLD_PLUG, lambda: lwspy_cold_plug(datagrams), check_table, 0),
        (f"{COLD_PLUG}, GC off", lambda: lwspy_cold_plug_gc_off(datagrams), check_table, 0),
        ("lwspy decode only", lambda: lwspy_decode(datagrams), check_decode, 0),
        ("naive struct loop (decode only)", lambda: naive_decode(datagrams), check_naive, 0),
    ]
    if not args.no_pyroute2:
        peers.append(
            (
                "pyroute2 MarshalRtnl.parse (decode only)",
                lambda: pyroute2_decode(datagrams),
                check_pyroute2,
                args.pyroute2_repeat,
            )
        )
    times: dict[str, list[float]] = {name: [] for name, *_ in peers}
    table: RouteTable | None = None
    for rep in range(max(args.repeat, args.pyroute2_repeat)):
        order = peers[rep % len(peers) :] + peers[: rep % len(peers)]
        for name, run, check, reps in order:
            if rep >= (reps or args.repeat):
                continue
            seconds, result = timed(run)
            check(result, args.routes)
            times[name].append(seconds)
            if name == COLD_PLUG:
                table = result
            del result
    assert table is not None

    print(f"\ncold plug of {count:,} routes (seconds; best / median of the runs):")
    ours = min(times[COLD_PLUG])
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        ratio = f"  {best / ours:5.1f}x" if name != COLD_PLUG else ""
        print(f"  {name:44s} {best:7.3f} / {median:7.3f}  ({len(values)} runs){ratio}")
    print("  (the ratio: the peer's best time over lwspy decode + load's best time)")

    print(f"\nlookups on the {len(table):,}-route table (per second; best / median):")
    rates = lookup_rates(table, args.lookups, args.repeat)
    for name, values in rates.items():
        print(f"  {name:44s} {max(values):11,.0f} / {statistics.median(values):11,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
