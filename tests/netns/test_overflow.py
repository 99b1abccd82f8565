"""Overflow (ENOBUFS) never stops or corrupts the netlink role.

Storms of 50,000 mixed changes (route adds, deletes and replaces of both families, address
adds and deletes; in the re-dump storm also nexthop objects, groups and the routes over
them) made with ``ip -batch`` in small and large chunks, with a loop pass between chunks,
so that events overflow the event socket while a dump runs, and arrive during dumps
without overflowing. One storm runs during the cold plug, one after it (each overflow
then means a re-dump). Each must end with lwspy's tables equal to the kernel's (routes
compared as a multiset, addresses, nexthop objects), the connections the storm stranded
closed with the right reason, the others open, and later deletes still culling. The
event socket's buffer is made small so that a chunk of a few thousand changes overflows
it; the bulk routes are in 198.18.0.0/15 and carry no traffic.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import lwspy.roles.netlink as netlink_mod
from lwspy import Context, Reason, SystemState, Wsi, WsiState
from lwspy.roles.netlink import Phase, RouteWatcher
from tests.conftest import Recorder
from tests.netns.conftest import RTN_NAMES, Lab

pytestmark = pytest.mark.netns

SMALL_RCVBUF = 1 << 17  # the kernel doubles it: room for about 300 events
STORM = 50_000
PRELOAD4 = 8_000  # routes 198.19.0.0/16 before the storm
PRELOAD6 = 1_000  # routes 2001:db8:ff::/112 before the storm
BOUND4 = "198.51.100.9"  # deleted mid-storm: connections bound to it must close
KEPT4 = "198.51.100.8"  # untouched by the storm: deleted after it
# (lines that overflow the event socket, then how many chunks of 100 that do not), cycled:
# the passes after an overflow see a dump start, run and end with events queued, and the
# next overflow lands in one phase or another of it.
CYCLES = ((4000, 2), (4000, 10), (3000, 4), (5000, 12), (3000, 1), (4000, 8), (3000, 6))


def _ip_batch(lab: Lab, text: str) -> None:
    subprocess.run(["ip", "-n", lab.ns["a"], "-batch", "-"], input=text, text=True, check=True)


def _preload(lab: Lab) -> None:
    lines = [f"route add 198.19.{i // 256}.{i % 256}/32 via {Lab.B_ADDR}" for i in range(PRELOAD4)]
    lines += [f"route add 2001:db8:ff::{i:x}/128 via {Lab.B_ADDR6}" for i in range(PRELOAD6)]
    lines += [f"address add {BOUND4}/24 dev va", f"address add {KEPT4}/24 dev va"]
    _ip_batch(lab, "\n".join(lines) + "\n")


class _Pool:
    """A set with O(1) random pick and removal."""

    def __init__(self, items: list[str]) -> None:
        self.items = list(items)
        self.at = {item: i for i, item in enumerate(self.items)}

    def add(self, item: str) -> None:
        self.at[item] = len(self.items)
        self.items.append(item)

    def pop(self, rng: random.Random) -> str:
        return self.pop_item(self.items[rng.randrange(len(self.items))])

    def pop_item(self, item: str) -> str:
        i = self.at[item]
        last = self.items[-1]
        self.items[i] = last
        self.at[last] = i
        self.items.pop()
        del self.at[item]
        return item


class _Nexthops:
    """Nexthop objects (``ip nexthop``), groups of two, and the IPv4 routes over them, as
    the kernel will hold them after each line: deleting one takes its routes along and
    shrinks its groups (a group left empty goes too, with its routes), without a
    message for the routes."""

    def __init__(self) -> None:
        self.next_id = 1000  # ids and prefixes are never reused
        self.next_dst = 0
        self.groups: dict[int, set[int]] = {}  # group id -> member ids
        self.singles: list[int] = []
        self.routes: dict[int, list[str]] = {}  # nexthop id -> prefixes over it
        self.over: _Pool = _Pool([])  # every prefix over a nexthop object

    def line(self, rng: random.Random) -> str:
        op = rng.random()
        ids = [*self.singles, *self.groups]
        if op < 0.25 or not ids:
            nhid = self.next_id
            self.next_id += 1
            self.routes[nhid] = []
            if len(self.singles) >= 2 and rng.random() < 0.3:
                members = set(rng.sample(self.singles, 2))
                self.groups[nhid] = members
                return f"nexthop add id {nhid} group {'/'.join(map(str, sorted(members)))}"
            self.singles.append(nhid)
            return f"nexthop add id {nhid} via {Lab.B_ADDR} dev va"
        if op < 0.75:
            nhid = rng.choice(ids)
            dst = f"198.18.{200 + self.next_dst // 256}.{self.next_dst % 256}/32"
            self.next_dst += 1
            self.routes[nhid].append(dst)
            self.over.add(dst)
            return f"route add {dst} nhid {nhid}"
        if op < 0.85 and self.over.items:
            dst = self.over.pop(rng)
            for dsts in self.routes.values():
                if dst in dsts:
                    dsts.remove(dst)
            return f"route del {dst}"
        nhid = rng.choice(ids)
        self._gone(nhid)
        return f"nexthop del id {nhid}"

    def _gone(self, nhid: int) -> None:
        for dst in self.routes.pop(nhid):
            self.over.pop_item(dst)
        if nhid in self.groups:
            del self.groups[nhid]
            return
        self.singles.remove(nhid)
        for gid, members in list(self.groups.items()):
            members.discard(nhid)
            if not members:
                self._gone(gid)


def storm_lines(seed: int, nexthops: bool = False) -> list[str]:
    """50,000 valid ``ip -batch`` lines: adds, deletes and replaces of IPv4 and IPv6
    routes, address adds and deletes (and, with ``nexthops``, nexthop objects, groups
    and routes over them coming and going); half-way, the routes and address the test's
    connections use are deleted."""
    rng = random.Random(seed)
    nh = _Nexthops()
    v4 = _Pool([f"198.19.{i // 256}.{i % 256}/32" for i in range(PRELOAD4)])
    v6 = _Pool([f"2001:db8:ff::{i:x}/128" for i in range(PRELOAD6)])
    addrs4 = _Pool([])
    addrs6 = _Pool([])
    free4 = [f"198.51.100.{i}" for i in range(100, 250)]
    n4 = n6 = n_addr6 = 0
    lines: list[str] = []
    while len(lines) < STORM:
        if len(lines) == STORM // 2:
            lines += ["route del 2001:db8:2::/64", f"address del {BOUND4}/24 dev va"]
        if nexthops and rng.random() < 0.06:
            lines.append(nh.line(rng))
            continue
        op = rng.random()
        if op < 0.36:
            via = f"via {Lab.B_ADDR}" if rng.random() < 0.8 else "dev va"
            dst = f"198.18.{n4 // 256 % 256}.{n4 % 256}/32"
            n4 += 1
            if dst not in v4.at:
                v4.add(dst)
                lines.append(f"route add {dst} {via}")
        elif op < 0.62 and v4.items:
            lines.append(f"route del {v4.pop(rng)}")
        elif op < 0.72 and v4.items:
            dst = v4.items[rng.randrange(len(v4.items))]
            via = f"via {Lab.B_ADDR}" if rng.random() < 0.5 else "dev va"
            lines.append(f"route replace {dst} {via}")
        elif op < 0.82:
            dst = f"2001:db8:fe::{n6:x}/128"
            n6 += 1
            v6.add(dst)
            lines.append(f"route add {dst} via {Lab.B_ADDR6}")
        elif op < 0.92 and v6.items:
            lines.append(f"route del {v6.pop(rng)}")
        elif op < 0.96:
            if free4 and rng.random() < 0.5:
                addr = free4.pop(rng.randrange(len(free4)))
                addrs4.add(addr)
                lines.append(f"address add {addr}/24 dev va")
            else:
                addr = f"2001:db8:1::a:{n_addr6:x}"
                n_addr6 += 1
                addrs6.add(addr)
                lines.append(f"address add {addr}/64 dev va nodad")
        elif addrs4.items and rng.random() < 0.5:
            addr = addrs4.pop(rng)
            free4.append(addr)
            lines.append(f"address del {addr}/24 dev va")
        elif addrs6.items:
            lines.append(f"address del {addrs6.pop(rng)}/64 dev va")
    return lines[:STORM]


def run_storm(lab: Lab, ctx: Context, lines: list[str]) -> None:
    """Send the storm in the chunks of :data:`CYCLES`, with one loop pass after each."""
    sizes = [size for big, small in CYCLES for size in (big, *[100] * small)]
    at = 0
    for i in itertools.count():
        if at >= len(lines):
            break
        size = sizes[i % len(sizes)]
        _ip_batch(lab, "\n".join(lines[at : at + size]) + "\n")
        at += size
        ctx.service(0)


def kernel_routes(lab: Lab) -> Counter[tuple[object, ...]]:
    """Tables main and local of ns "a", as a multiset of (family, prefix, table, type,
    gateway, ifindex, metric, prefsrc, nexthop object); a route over a nexthop object
    names it, not its paths."""
    index = {name: idx for idx, name in socket.if_nameindex()}
    out: Counter[tuple[object, ...]] = Counter()
    for fam, dst, table, r in lab.kernel_json("a"):
        nhid = r.get("nhid", 0)
        out[
            (
                int(fam),
                dst,
                table,
                r.get("type", "unicast"),
                None if nhid else r.get("gateway"),
                None if nhid else index.get(r.get("dev", "")),
                r.get("metric", 0),
                r.get("prefsrc"),
                nhid,
            )
        ] += 1
    return out


def table_routes(watcher: RouteWatcher) -> Counter[tuple[object, ...]]:
    """lwspy's table in the normal form of :func:`kernel_routes`."""
    return Counter(
        (
            r.family,
            f"{r.dst}/{r.dst_len}",
            r.table,
            RTN_NAMES.get(r.type, str(r.type)),
            None if r.nhid else r.gateway,
            None if r.nhid else r.oif,
            r.priority,
            r.prefsrc,
            r.nhid,
        )
        for r in watcher.table
    )


def kernel_nexthops(lab: Lab) -> dict[int, tuple[int, ...]]:
    """The nexthop objects of ns "a": id -> the member ids of a group (() for one)."""
    shown = json.loads(lab.ip("a", "-j", "nexthop", "show") or "[]")
    return {nh["id"]: tuple(sorted(m["id"] for m in nh.get("group", ()))) for nh in shown}


def table_nexthops(watcher: RouteWatcher) -> dict[int, tuple[int, ...]]:
    return {
        nhid: tuple(sorted(m for m, _ in nh.group)) for nhid, nh in watcher.table.nexthops.items()
    }


def kernel_addrs(lab: Lab) -> set[tuple[object, ...]]:
    out: set[tuple[object, ...]] = set()
    for link in json.loads(lab.ip("a", "-j", "address", "show") or "[]"):
        for a in link.get("addr_info", []):
            fam = socket.AF_INET if a["family"] == "inet" else socket.AF_INET6
            out.add((int(fam), link["ifindex"], a["local"], a["prefixlen"]))
    return out


def table_addrs(watcher: RouteWatcher) -> set[tuple[object, ...]]:
    return {(a.family, a.index, a.local, a.prefixlen) for a in watcher.addrs.values()}


class StormNet:
    """lwspy in ns "a" (netlink on, its event socket's buffer small) and an echo server
    in ns "b"; the context is made with the storm's routes already in the kernel."""

    def __init__(self, lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lab = lab
        self.cli = Recorder("cli")
        self.overflows: list[Phase] = []  # the phase of each ENOBUFS
        _preload(lab)
        with lab.inside("b"):
            self.b = Context(protocols=[Recorder("srv", _echo).protocol], netlink=False)
            port = self.b.create_vhost("default", port=0).port
        assert port is not None
        self.port = port
        monkeypatch.setattr(netlink_mod, "RCVBUF", SMALL_RCVBUF)
        self.a = Context(protocols=[self.cli.protocol], netlink=True)
        watcher = self.a._netlink
        assert watcher is not None
        self.watcher = watcher

    def service(self, passes: int = 1) -> None:
        for _ in range(passes):
            self.a.service(5)
            with self.lab.inside("b"):
                self.b.service(5)

    def until(self, cond: Any, passes: int = 2000) -> None:
        for _ in range(passes):
            if cond():
                return
            self.service()
        raise AssertionError("condition not reached")

    def connect(self, host: str, iface: str | None = None) -> Wsi:
        w = self.a.connect(host, self.port, protocol="cli", iface=iface)
        self.until(lambda: Reason.RAW_CONNECTED in self.cli.reasons(w))
        return w

    def settle_on_kernel(self) -> None:
        """Service until lwspy's tables equal the kernel's, then check that they stay so.
        The kernel is read again each round: late changes of its own (an IPv6 link-local
        address after DAD) may still come."""
        for _ in range(40):
            want_routes, want_addrs = kernel_routes(self.lab), kernel_addrs(self.lab)
            want_nexthops = kernel_nexthops(self.lab)
            self.service(10)
            if (
                table_routes(self.watcher) == want_routes
                and table_addrs(self.watcher) == want_addrs
                and table_nexthops(self.watcher) == want_nexthops
            ):
                break
        got = table_routes(self.watcher)
        assert got == want_routes, (
            f"{sum((got - want_routes).values())} routes too many, "
            f"{sum((want_routes - got).values())} missing"
        )
        assert table_addrs(self.watcher) == want_addrs
        assert table_nexthops(self.watcher) == want_nexthops
        assert self.watcher.phase is Phase.LIVE and not self.watcher._queue

    def close(self) -> None:
        self.a.destroy()
        self.b.destroy()


def _echo(wsi: Wsi | None, reason: Reason, data: object) -> int:
    if reason is Reason.RAW_RX and wsi is not None:
        assert isinstance(data, bytes)
        wsi.write(data)
    return 0


@pytest.fixture
def storm_net(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[StormNet]:
    overflow = RouteWatcher._overflow

    def recording(watcher: RouteWatcher) -> None:
        n.overflows.append(watcher.phase)
        overflow(watcher)

    monkeypatch.setattr(RouteWatcher, "_overflow", recording)
    n = StormNet(lab, monkeypatch)
    try:
        yield n
    finally:
        n.close()


def _later_deletes_cull(n: StormNet) -> None:
    """After the storm the role still follows the kernel: a route delete and an address
    delete each close their connections, and only theirs."""
    far = n.connect(Lab.PEER)
    kept = n.connect(Lab.B_ADDR, iface=KEPT4)
    near = n.connect(Lab.B_ADDR)
    n.lab.ip("a", "route", "del", "203.0.113.0/24")
    n.until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    n.lab.ip("a", "address", "del", f"{KEPT4}/24", "dev", "va")
    n.until(lambda: kept.state is WsiState.CLOSED)
    assert kept.close_reason == "source address gone"
    n.service(5)
    assert near.state is WsiState.ESTABLISHED
    assert table_routes(n.watcher) == kernel_routes(n.lab)


def test_a_storm_during_the_cold_plug_ends_equal_to_the_kernel(storm_net: StormNet) -> None:
    n = storm_net
    assert not n.watcher.coldplug_done
    run_storm(n.lab, n.a, storm_lines(seed=7))
    assert Phase.DUMPING in n.overflows  # an overflow while the cold plug's dump ran
    n.until(lambda: n.a.system.state is SystemState.OPERATIONAL)
    n.settle_on_kernel()
    assert n.watcher.stats["dumps"] >= 2  # the overflow made it dump again
    _later_deletes_cull(n)


def test_a_storm_after_the_cold_plug_re_dumps_and_ends_equal_to_the_kernel(
    storm_net: StormNet,
) -> None:
    n = storm_net
    n.until(lambda: n.a.system.state is SystemState.OPERATIONAL)
    n.settle_on_kernel()
    far6 = n.connect(Lab.PEER6)  # its route goes mid-storm
    bound = n.connect(Lab.PEER, iface=BOUND4)  # its address goes mid-storm
    far = n.connect(Lab.PEER)  # untouched by the storm
    replayed = n.watcher.stats["replayed"]
    lines = storm_lines(seed=11, nexthops=True)
    assert sum(line.startswith("nexthop del") for line in lines) > 100
    run_storm(n.lab, n.a, lines)
    assert Phase.LIVE in n.overflows  # overflows that started a re-dump ...
    assert {Phase.DUMPING, Phase.SWAPPING, Phase.CATCHING_UP} & set(n.overflows)  # ... and in one
    n.settle_on_kernel()  # nexthop objects and the routes over them included
    assert any(r.nhid for r in n.watcher.table)  # some are left at the end
    assert n.watcher.stats["resyncs"] >= 1
    assert n.watcher.stats["replayed"] > replayed  # events came during dumps, applied after
    assert far6.state is WsiState.CLOSED and far6.close_reason == "route lost"
    assert bound.state is WsiState.CLOSED and bound.close_reason == "source address gone"
    assert far.state is WsiState.ESTABLISHED
    _later_deletes_cull(n)
