"""The netlink role: the routing table as live state (lws ``roles/netlink``, done right).

One ``AF_NETLINK/NETLINK_ROUTE`` socket in the same selector as every wsi, subscribed to
links, IPv4/IPv6 addresses, IPv4/IPv6 routes and nexthop objects. At start it dumps
links, then addresses, then nexthop objects, then routes (lws dumps routes only),
holding the system state at IFACE_COLDPLUG until the dumps end (or
:data:`COLDPLUG_TIMEOUT` passes). From then on every change is applied to
:class:`~lwspy.net.route.RouteTable` and, once per batch of messages, the connections
the change could affect are re-checked:

* a connection whose local address left the host closes with "source address gone";
* one whose route went (deleted, replaced, flushed with its link) is looked up again and
  closes with "route lost" if no route forwards to its peer any more;
* an added blackhole / unreachable / prohibit / throw route re-checks the connections
  whose peer it covers.

Connections are indexed by the id of the route they use and by their local address, so
a change costs O(connections it could affect), not O(connections). Loopback connections
are never indexed. The kernel drops some routes without any RTM_DELROUTE (IPv4 routes
whose every path died with its link or with the link's last IPv4 address, routes of
table main whose preferred source went, nexthop objects with their link's carrier and
every route over them); the table mirrors those rules on the NEWLINK / DELADDR /
DELNEXTHOP that does arrive (see :mod:`lwspy.net.route`). An IPv6 route with a lifetime
stops being used at its expiry, which a timer here follows (the kernel says nothing until
its garbage collector deletes the route). When the kernel drops events (ENOBUFS),
everything is dumped again and diffed against the table.
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import itertools
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lwspy.core.log import INFO, log
from lwspy.core.protocol import INTERNAL
from lwspy.core.role import InternalRole
from lwspy.core.sul import Sul
from lwspy.core.wsi import EV_READ, Wsi, WsiState
from lwspy.net.nlmsg import (
    AF_BRIDGE,
    AF_INET,
    AF_UNSPEC,
    IFF_LOWER_UP,
    IFF_RUNNING,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEXTHOP,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTMGRP_SUBSCRIBE,
    RTNLGRP_NEXTHOP,
    AddrMsg,
    DoneMsg,
    ErrorMsg,
    LinkMsg,
    NexthopMsg,
    NlRecord,
    Route,
    RouteMsg,
    decode,
    dump_request,
    fibmatch_request,
)
from lwspy.net.route import NOT_ROUTABLE, NexthopChange, RouteTable
from lwspy.system.smd import SmdClass
from lwspy.system.state import SystemState

if TYPE_CHECKING:
    from lwspy.core.context import Context

__all__ = ["COLDPLUG_TIMEOUT", "NETLINK", "NetlinkRole", "RouteWatcher", "open_netlink"]

COLDPLUG_TIMEOUT = 5.0
"""Seconds the system state waits at IFACE_COLDPLUG for the dumps before going on."""

RCVBUF = 8 << 20
"""The netlink socket's receive buffer (a 100,000-route dump arrives faster than it is read)."""

READS_PER_EVENT = 512
"""The most datagrams read per readable event, so a dump cannot starve the other fds."""

_DUMP_STEPS = (RTM_GETLINK, RTM_GETADDR, RTM_GETNEXTHOP, RTM_GETROUTE)
# An address as the kernel tells addresses apart (inet_rtm_deladdr): family, ifindex,
# local address, prefix length, and IFA_ADDRESS (the peer of a point-to-point address).
_AddrKey = tuple[int, int, str, int, str]
_QUERY_READS = 8  # datagrams read from the query socket for one answer
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
EXPIRY_SLACK = 0.02
"""Seconds added to a route's expiry before it is checked: ``rta_expires`` is in
1/100 s, rounded down, and the kernel must have passed the expiry when it is asked."""


def _entry(route: Route) -> tuple[object, ...]:
    """What names one IPv6 table entry (``fib6_add_rt2leaf``): prefix, source prefix,
    metric, gateway and device. Not its metrics, which the kernel changes in place (a
    router advertisement's hop limit)."""
    return (
        route.family,
        route.dst_num,
        route.dst_len,
        route.table,
        route.priority,
        route.src,
        route.src_len,
        route.gateway,
        route.oif,
        route.nexthops,
    )


def _addr_key(rec: AddrMsg) -> _AddrKey:
    return (rec.family, rec.index, rec.local, rec.prefixlen, rec.address)


def _count_locals(addrs: dict[_AddrKey, AddrMsg]) -> dict[str, int]:
    """How many address entries hold each local address."""
    counts: dict[str, int] = {}
    for key in addrs:
        counts[key[2]] = counts.get(key[2], 0) + 1
    return counts


def open_netlink() -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket bound to the route, address and link groups."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
    )
    try:
        try:  # root may exceed rmem_max; others get what the sysctl allows
            sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, RTMGRP_SUBSCRIBE))
        try:  # group 32 is past bind()'s 32-bit mask; kernels before 5.3 have no nexthops
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP)
        except OSError as e:
            log.debug("lwspy netlink: no nexthop group (%s)", e)
    except BaseException:
        sock.close()
        raise
    return sock


_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host(addr: str) -> _Ip:
    """The address of a socket name, IPv4-mapped IPv6 taken as IPv4."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(slots=True)
class _Batch:
    """What one readable event changed, to be settled once."""

    added: list[Route] = field(default_factory=list)
    removed: list[Route] = field(default_factory=list)
    gone_locals: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Dump:
    """A dump in progress (cold plug, or the re-dump after ENOBUFS)."""

    initial: bool
    seq: int = 0
    step: int = 0
    links: dict[int, LinkMsg] = field(default_factory=dict)
    addrs: dict[_AddrKey, AddrMsg] = field(default_factory=dict)
    routes: RouteTable = field(default_factory=RouteTable)


class NetlinkRole(InternalRole):
    """Reads the netlink socket; the watcher in ``wsi.user`` does the rest."""

    name = "netlink"

    def on_readable(self, wsi: Wsi) -> None:
        watcher = wsi.user
        assert isinstance(watcher, RouteWatcher)
        watcher.readable()


NETLINK = NetlinkRole()


class RouteWatcher:
    """Follows the kernel's links, addresses and routes; culls connections they strand.

    Made by the Context when netlink is on; ``ctx.routes`` is its :attr:`table`.
    """

    __slots__ = (
        "_coldplug_timer",
        "_deadlines",
        "_dump",
        "_early",
        "_expiry_timer",
        "_keys",
        "_pid",
        "_query",
        "_retry",
        "_seq",
        "_unnotify",
        "addrs",
        "by_local",
        "by_route",
        "coldplug_done",
        "ctx",
        "links",
        "local_count",
        "sock",
        "stats",
        "table",
        "wsi",
    )

    def __init__(self, ctx: Context, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock
        self._pid = sock.getsockname()[0]
        self.table = RouteTable()
        self.links: dict[int, LinkMsg] = {}
        self.addrs: dict[_AddrKey, AddrMsg] = {}
        self.local_count: dict[str, int] = {}
        self.by_route: dict[int, set[Wsi]] = {}
        self.by_local: dict[str, set[Wsi]] = {}
        self.coldplug_done = False
        self.stats = {"batches": 0, "rechecked": 0, "culled": 0, "resyncs": 0, "enobufs": 0}
        self._early: set[Wsi] = set()  # connections made before the table was known
        self._keys: dict[Wsi, tuple[_Ip, str]] = {}  # tracked wsi -> (peer, local address)
        self._seq = itertools.count(1)
        self._dump: _Dump | None = None
        wsi = Wsi(ctx, NETLINK, None, INTERNAL, sock)
        wsi.user = self
        wsi.state = WsiState.ESTABLISHED
        ctx.pt.add(wsi, EV_READ)
        self.wsi = wsi
        self._unnotify = ctx.system.register_notifier(self._hold_coldplug)
        self._coldplug_timer = Sul(ctx.pt.suls, self._coldplug_timeout)
        self._coldplug_timer.schedule(COLDPLUG_TIMEOUT)
        self._retry = Sul(ctx.pt.suls, self._send_dump_step)
        self._deadlines: dict[int, tuple[float, Route]] = {}  # route id -> (expiry, route)
        self._expiry_timer = Sul(ctx.pt.suls, self._expiry_due)
        self._query: socket.socket | None = None  # asks the kernel about one route
        try:  # made here, in the namespace of the role's socket
            self._query = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                socket.NETLINK_ROUTE,
            )
        except OSError as e:
            log.debug("lwspy netlink: no query socket (%s)", e)
        self._start_dump(initial=True)

    def close(self) -> None:
        """Release the sockets and the timers (the context is going away)."""
        self._coldplug_timer.cancel()
        self._retry.cancel()
        self._expiry_timer.cancel()
        self._unnotify()
        if self._query is not None:
            self._query.close()
            self._query = None
        self.wsi._close_now("context destroyed")

    # -- what the core calls -------------------------------------------------------------

    def track(self, wsi: Wsi) -> None:
        """Index an established connection by its route and its local address."""
        if wsi.peer is None or wsi.local is None:
            return
        peer = _host(wsi.peer[0])
        if peer.is_loopback:
            return
        if not self.coldplug_done:
            self._early.add(wsi)
            return
        local = str(_host(wsi.local[0]))
        self._keys[wsi] = (peer, local)
        route = self.table.lookup(peer)
        if route is not None:
            self.by_route.setdefault(route.id, set()).add(wsi)
            wsi._route_id = route.id
        self.by_local.setdefault(local, set()).add(wsi)

    def untrack(self, wsi: Wsi) -> None:
        """Forget a connection (it closed)."""
        rid = wsi._route_id
        if rid is not None:
            wsi._route_id = None
            users = self.by_route.get(rid)
            if users is not None:
                users.discard(wsi)
                if not users:
                    del self.by_route[rid]
        keys = self._keys.pop(wsi, None)
        if keys is not None:
            users = self.by_local.get(keys[1])
            if users is not None:
                users.discard(wsi)
                if not users:
                    del self.by_local[keys[1]]
        self._early.discard(wsi)

    # -- cold plug -----------------------------------------------------------------------

    def _hold_coldplug(self, current: SystemState, step: SystemState) -> bool:
        # Hold the climb out of IFACE_COLDPLUG until the dumps have ended; a jump
        # (CONTEXT_DESTROYING, POLICY_INVALID) is never held.
        return self.coldplug_done or step is not SystemState.DHCP

    def _coldplug_timeout(self) -> None:
        if not self.coldplug_done:
            log.warning("lwspy netlink: no complete dump in %.0f s; going on", COLDPLUG_TIMEOUT)
            self._coldplug_finished()

    def _coldplug_finished(self) -> None:
        self.coldplug_done = True
        self._coldplug_timer.cancel()
        early, self._early = self._early, set()
        for wsi in early:
            if wsi.state < WsiState.CLOSING:
                self.track(wsi)
        if self.ctx.system.held:
            self.ctx.system.resume()

    def _retrack(self) -> None:
        """Index every tracked connection again (the table was filled after they came)."""
        for wsi in list(self._keys):
            self.untrack(wsi)
            self.track(wsi)

    # -- dumps ---------------------------------------------------------------------------

    def _start_dump(self, initial: bool) -> None:
        if initial:  # the first dump fills the live table itself: ctx.routes stays one object
            self.table.clear()
            self._dump = _Dump(initial=True, routes=self.table)
        else:
            self._dump = _Dump(initial=False)
        self._send_dump_step()

    def _send_dump_step(self) -> None:
        dump = self._dump
        if dump is None:
            return
        dump.seq = next(self._seq)
        try:
            self.sock.send(dump_request(_DUMP_STEPS[dump.step], AF_UNSPEC, dump.seq))
        except OSError as e:  # the socket's send buffer is full, or EBUSY: try again
            log.debug("lwspy netlink: dump request failed (%s); retrying", e)
            self._retry.schedule(0.05)

    def _dump_done(self, dump: _Dump, batch: _Batch) -> None:
        dump.step += 1
        if dump.step < len(_DUMP_STEPS):
            self._send_dump_step()
            return
        self._dump = None
        old_locals = set(self.local_count)
        self.links = dump.links
        self.addrs = dump.addrs
        self.local_count = _count_locals(dump.addrs)
        if dump.initial:  # no SMD, no culling: this is what the host had from the start
            if self.coldplug_done:  # it came after the timeout: connections since then
                self._retrack()  # were looked up in an empty table
            else:
                self._coldplug_finished()
            return
        self.stats["resyncs"] += 1
        delta = self.table.resync(dump.routes)
        batch.added.extend(delta.added)
        batch.removed.extend(delta.removed)
        batch.gone_locals.update(old_locals - set(self.local_count))

    # -- events --------------------------------------------------------------------------

    def readable(self) -> None:
        """Read what the kernel sent, apply it, then settle the batch once."""
        batch = _Batch()
        sock = self.sock
        # A cold plug makes one tuple per route: 100,000 of them would set off the cyclic
        # collector dozens of times for nothing (they hold no cycles). Paused for this read.
        pause_gc = self._dump is not None and self._dump.initial and gc.isenabled()
        if pause_gc:
            gc.disable()
        try:
            self._read(sock, batch)
        finally:
            if pause_gc:
                gc.enable()
        self._expiries(batch)
        self._settle(batch)

    def _read(self, sock: socket.socket, batch: _Batch) -> None:
        for _ in range(READS_PER_EVENT):
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped events: dump and diff
                    self.stats["enobufs"] += 1
                    log.warning("lwspy netlink: events lost (ENOBUFS); dumping again")
                    self._start_dump(initial=self._dump is not None and self._dump.initial)
                    continue
                log.error("lwspy netlink: recv failed: %s", e)
                break
            for rec in decode(data):
                self._record(rec, batch)

    def _record(self, rec: NlRecord, batch: _Batch) -> None:
        dump = self._dump
        if type(rec) is RouteMsg:
            if dump is not None:  # dump replies and events during a dump: the fresh table
                if rec.seq == dump.seq and rec.pid == self._pid:
                    dump.routes.load((rec,))
                else:
                    dump.routes.apply_route(rec)
                return
            for change in self.table.apply_route(rec):
                if change.removed is not None:
                    batch.removed.append(change.removed)
                if change.added is not None:
                    batch.added.append(change.added)
        elif type(rec) is LinkMsg:
            self._link(rec, dump, batch)
        elif type(rec) is AddrMsg:
            self._addr(rec, dump, batch)
        elif type(rec) is NexthopMsg:
            self._nexthop(rec, dump, batch)
        elif type(rec) is DoneMsg:
            if dump is not None and rec.seq == dump.seq:
                if rec.interrupted:  # the kernel's tables changed mid-dump: start over
                    self._start_dump(dump.initial)
                else:
                    self._dump_done(dump, batch)
        elif type(rec) is ErrorMsg and dump is not None and rec.seq == dump.seq and rec.errno:
            if _DUMP_STEPS[dump.step] == RTM_GETNEXTHOP:  # a kernel without nexthop objects
                self._dump_done(dump, batch)
                return
            log.debug("lwspy netlink: dump step refused (errno %d); retrying", rec.errno)
            self._retry.schedule(0.05)

    def _link(self, rec: LinkMsg, dump: _Dump | None, batch: _Batch) -> None:
        if rec.family == AF_BRIDGE:  # bridge port events, not the link itself
            return
        links, table = (dump.links, dump.routes) if dump is not None else (self.links, self.table)
        removed = batch.removed if dump is None else []
        index = rec.index
        if rec.type == RTM_NEWLINK:
            prev = links.get(index)
            links[index] = rec
            if not rec.up and (prev is None or prev.up):
                # Link down: the kernel killed its IPv4 paths (all but scope host ones)
                # without a word; its IPv6 routes come as RTM_DELROUTEs.
                removed.extend(table.link_down(index))
            elif rec.up and prev is not None and not prev.up:
                table.link_up(index)
            if not rec.up or not rec.flags & (IFF_RUNNING | IFF_LOWER_UP):
                # Down or no carrier: its nexthop objects are gone (nh_netdev_event).
                self._nh_change(table.flush_nexthops(index), removed)
        elif rec.type == RTM_DELLINK:
            links.pop(index, None)
            self._nh_change(table.flush_nexthops(index), removed)
            removed.extend(table.link_down(index, force=True))
            removed.extend(table.drop_link(index))

    @staticmethod
    def _nh_change(change: NexthopChange, removed: list[Route]) -> None:
        """Routes a nexthop change took away, or changed under their connections: both are
        looked at again."""
        removed.extend(change.removed)
        removed.extend(change.changed)

    def _nexthop(self, rec: NexthopMsg, dump: _Dump | None, batch: _Batch) -> None:
        table = dump.routes if dump is not None else self.table
        self._nh_change(table.apply_nexthop(rec), batch.removed if dump is None else [])

    def _addr(self, rec: AddrMsg, dump: _Dump | None, batch: _Batch) -> None:
        key = _addr_key(rec)
        if dump is not None:
            if rec.type == RTM_NEWADDR:
                dump.addrs[key] = rec
                self._addr_came(rec, dump.links, dump.routes)
            elif dump.addrs.pop(key, None) is not None:
                self._addr_gone(rec, dump.addrs, dump.routes, [])
            return
        if rec.type == RTM_NEWADDR:
            if key not in self.addrs:
                self.local_count[rec.local] = self.local_count.get(rec.local, 0) + 1
            self.addrs[key] = rec
            self._addr_came(rec, self.links, self.table)
        elif rec.type == RTM_DELADDR and self.addrs.pop(key, None) is not None:
            left = self.local_count[rec.local] - 1
            if left:
                self.local_count[rec.local] = left
            else:
                del self.local_count[rec.local]
                batch.gone_locals.add(rec.local)
            self._addr_gone(rec, self.addrs, self.table, batch.removed)

    @staticmethod
    def _addr_came(rec: AddrMsg, links: dict[int, LinkMsg], table: RouteTable) -> None:
        """An IPv4 address on a link that is up brings its dead paths back (fib_sync_up)."""
        link = links.get(rec.index)
        if rec.family == AF_INET and link is not None and link.up:
            table.link_up(rec.index)

    @staticmethod
    def _addr_gone(
        rec: AddrMsg, addrs: dict[_AddrKey, AddrMsg], table: RouteTable, removed: list[Route]
    ) -> None:
        """Mirror what the kernel flushes, unannounced, when an IPv4 address goes."""
        if rec.family != AF_INET:
            return
        if not any(key[0] == AF_INET and key[2] == rec.local for key in addrs):
            # routes of table main with "src" that address (fib_sync_down_addr)
            removed.extend(table.drop_prefsrc(rec.local))
        if not any(key[0] == AF_INET and key[1] == rec.index for key in addrs):
            # The link's last IPv4 address went: every IPv4 path over it died
            # (fib_disable_ip, forced).
            removed.extend(table.link_down(rec.index, force=True))

    # -- route lifetimes (IPv6 "expires") ------------------------------------------------

    def _expiries(self, batch: _Batch) -> None:
        """Time the routes that came with a lifetime, and expire the ones that are due.

        The kernel stops using such a route at its expiry but says nothing until its
        garbage collector deletes it; and it also extends a lifetime without a word
        (a router advertisement refreshing its default route: ``fib6_set_expires`` in
        ``ndisc_router_discovery``). So at the expiry the kernel is asked which entry it
        would use now (:meth:`_lifetime_left`) before the route is taken out of lookups
        here.
        """
        now = self.ctx.now()
        deadlines = self._deadlines
        for route in self.table.take_expiring():
            due = now + route.expires + EXPIRY_SLACK if route.expires > 0 else now
            deadlines[route.id] = (due, route)
        if not deadlines:
            return
        table = self.table
        for rid, (due, route) in list(deadlines.items()):
            if due > now:
                continue
            del deadlines[rid]
            if route not in table:
                continue
            left = self._lifetime_left(route) if route.expires > 0 else None
            if left is None:
                if table.expire(route):
                    batch.removed.append(route)
            elif left > 0:
                deadlines[rid] = (now + left + EXPIRY_SLACK, route)
        if deadlines:
            first = min(due for due, _ in deadlines.values())
            self._expiry_timer.schedule(max(0.0, first - now))
        else:
            self._expiry_timer.cancel()

    def _expiry_due(self) -> None:
        batch = _Batch()
        self._expiries(batch)
        self._settle(batch)

    def _lifetime_left(self, route: Route) -> float | None:
        """Ask the kernel (``RTM_GETROUTE`` with ``RTM_F_FIB_MATCH``, answered within the
        send) which entry it uses for ``route``'s destination over its link: the seconds
        ``route`` still has if that is ``route``, 0.0 if it no longer expires, None if the
        kernel uses another entry (``route`` expired) or cannot be asked."""
        sock = self._query
        if sock is None:
            return None
        want = _entry(route)
        seq = next(self._seq)
        try:
            sock.send(fibmatch_request(route, seq))
            for _ in range(_QUERY_READS):  # an answer left from an earlier ask comes first
                for rec in decode(sock.recv(1 << 16)):
                    if type(rec) is RouteMsg and rec.seq == seq:
                        got = next((r for r in rec.routes if _entry(r) == want), None)
                        return None if got is None else max(got.expires, 0.0)
                    if type(rec) is ErrorMsg and rec.seq == seq:
                        return None  # no route there any more (ENETUNREACH, ...)
        except OSError as e:
            log.debug("lwspy netlink: cannot ask about %r (%s)", route, e)
        return None

    def _settle(self, batch: _Batch) -> None:
        """Re-check what the batch could have affected; announce it on SMD."""
        if not (batch.added or batch.removed or batch.gone_locals):
            return
        self.stats["batches"] += 1
        for local in batch.gone_locals:
            if local not in self.local_count:
                for wsi in list(self.by_local.pop(local, ())):
                    self._cull(wsi, "source address gone")
        for route in batch.removed:
            for wsi in list(self.by_route.pop(route.id, ())):
                self._recheck(wsi)
        blocking = [r for r in batch.added if r.type in NOT_ROUTABLE]
        if blocking:
            self._recheck_covered(blocking)
        smd = self.ctx.smd
        if batch.added:
            smd.post(SmdClass.NETWORK, {"rt": "add"})
        if batch.removed:
            smd.post(SmdClass.NETWORK, {"rt": "del"})
        if any(r.gateway is not None for r in (*batch.added, *batch.removed)):
            smd.post(SmdClass.NETWORK, {"trigger": "cpdcheck", "src": "gw-change"})

    def _recheck(self, wsi: Wsi) -> None:
        """Look a connection's peer up again: move it to its new route, or cull it."""
        self.stats["rechecked"] += 1
        wsi._route_id = None
        keys = self._keys.get(wsi)
        if keys is None or wsi.state >= WsiState.CLOSING:
            return
        route = self.table.lookup(keys[0])
        if route is None or not self.table.forwards(route):
            self._cull(wsi, "route lost")
            return
        self.by_route.setdefault(route.id, set()).add(wsi)
        wsi._route_id = route.id

    def _recheck_covered(self, routes: list[Route]) -> None:
        """New blocking routes: re-check the connections whose peer they cover. Only the
        connections on routes that contain a new route's prefix can be covered by it."""
        nets = [ipaddress.ip_network(f"{r.dst}/{r.dst_len}") for r in routes]
        keys = self._keys
        for rid in list(self.by_route):
            route = self.table.get(rid)
            if route is not None:
                outer = ipaddress.ip_network(f"{route.dst}/{route.dst_len}")
                if not any(n.version == outer.version and n.subnet_of(outer) for n in nets):  # type: ignore[arg-type]
                    continue
            for wsi in list(self.by_route.get(rid, ())):
                key = keys.get(wsi)
                if key is not None and any(key[0] in n for n in nets):
                    self.by_route[rid].discard(wsi)
                    self._recheck(wsi)
            if not self.by_route.get(rid, True):
                del self.by_route[rid]

    def _cull(self, wsi: Wsi, reason: str) -> None:
        if wsi.state is WsiState.CLOSED:
            return
        self.stats["culled"] += 1
        if log.isEnabledFor(INFO):
            log.info("lwspy netlink: closing %r: %s", wsi, reason)
        wsi._close_now(reason)
