"""The routing table as live state: what the kernel's tables main and local hold.

Sans-I/O: the netlink role feeds decoded :class:`~lwspy.net.nlmsg.RouteMsg` and
:class:`~lwspy.net.nlmsg.NexthopMsg` records in (:meth:`RouteTable.apply_route`,
:meth:`RouteTable.load`, :meth:`RouteTable.apply_nexthop`), and tells the table what
happened to links and addresses, so that it drops what the kernel removes without a word
(:meth:`RouteTable.link_down`, :meth:`RouteTable.flush_nexthops`,
:meth:`RouteTable.drop_prefsrc`, :meth:`RouteTable.expire`). After an overflow a fresh
dump's table is swapped in, a bounded slice at a time, with its nexthop objects and its
routes' state (:meth:`RouteTable.resync_slices`). Connections ask
:meth:`RouteTable.lookup` / :meth:`RouteTable.routable`.

Lookup mirrors the kernel's default rules: table local first, then main (other tables are
not kept), each by longest-prefix match, then lowest priority (metric). Per family and
table the routes sit in ``{prefix length: {masked network: (routes, preferred first)}}``,
so a lookup probes only the prefix lengths present, longest first (lws's
``_lws_route_est_outgoing`` takes the first match instead: **(lws bug)**).

Route identity follows the kernel. IPv4 (``fib_table_insert``) allows several routes
("aliases") with the same (table, dst, dst_len, tos, metric), added by ``ip route
append`` / ``prepend``, as long as they differ in type or in what ``fib_info`` holds
(protocol, scope, preferred source, metrics such as ``mtu``, the nexthops with their
``onlink`` flag and weight, the nexthop object); ``NLM_F_REPLACE`` replaces the first.
IPv6 (``fib6_add_rt2leaf``) keeps, per (table, dst, src, metric), one route per nexthop
(device and gateway; or nexthop object: two routes over different objects are two routes,
whatever paths they show): ``fe80::/64`` on two links is two routes; gatewayed routes that
may form ECMP join into one multipath route, which the kernel announces whole. A replaced
route is a new :class:`Route` with a new ``id``. An ``RTM_DELROUTE`` carries the whole
route the kernel deleted: it removes that route (or, IPv6, the paths it names of a
multipath one) and nothing else; one that finds no such route changes nothing.

The kernel also drops routes without a message, and the table mirrors each rule (see
the methods): an IPv4 route dies when all its paths are dead (link down, except
``scope host`` routes; last IPv4 address of the link gone); a route of table main whose
preferred source was deleted goes (table local keeps it); a nexthop object goes with its
link's carrier, and its routes with it; an IPv6 route past its ``expires`` is not used.

>>> table = RouteTable()
>>> table.lookup("198.51.100.7") is None
True
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

from lwspy.net.nlmsg import (
    AF_INET,
    AF_INET6,
    NLM_F_APPEND,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    RT_SCOPE_HOST,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTM_DELNEXTHOP,
    RTM_DELROUTE,
    RTM_F_CLONED,
    RTM_NEWNEXTHOP,
    RTM_NEWROUTE,
    RTN_BLACKHOLE,
    RTN_PROHIBIT,
    RTN_THROW,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTNH_F_IDENTITY,
    RTPROT_RA,
    NextHop,
    NexthopMsg,
    NlRecord,
    Route,
    RouteMsg,
    next_route_id,
)

__all__ = ["NOT_ROUTABLE", "RESYNC_SLICE", "Route", "RouteChange", "RouteDiff", "RouteTable"]

_TABLES: Final = (RT_TABLE_MAIN, RT_TABLE_LOCAL)
NOT_ROUTABLE: Final = frozenset((RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW))
_MASKS = {
    fam: tuple(((1 << bits) - 1) ^ ((1 << (bits - n)) - 1) for n in range(bits + 1))
    for fam, bits in ((AF_INET, 32), (AF_INET6, 128))
}
_V4MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"
_CONTENT_END: Final = 18  # Route fields that make it the same kernel route (not state, id)
_KEY: Final = slice(4, 8)  # priority, tos, src, src_len: identity within one prefix bucket
_BATCH_MIN: Final = 8  # routes in a record worth the bulk insert
RESYNC_SLICE: Final = 8192
"""Prefixes a :meth:`RouteTable.resync_slices` step compares (a few ms of work)."""
_FAMILY = itemgetter(0)
_DST_NUM = itemgetter(1)
_DST_LEN = itemgetter(2)
_TABLE = itemgetter(3)
_RTM_FLAGS = itemgetter(18)
_NH_DEAD = itemgetter(19)
_EXPIRES = itemgetter(20)
_Path = tuple[str | None, int | None]  # (gateway, oif): what names one path of a route

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address
"""What :meth:`RouteTable.lookup` takes: an address as text or an :mod:`ipaddress` one."""


@dataclass(slots=True)
class RouteChange:
    """What one message changed: the route that came, the one that went (or both, for a
    replacement)."""

    added: Route | None
    removed: Route | None


@dataclass(slots=True)
class RouteDiff:
    """Routes that differ between two tables (see :meth:`RouteTable.diff`)."""

    added: list[Route] = field(default_factory=list)
    removed: list[Route] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


_Bucket = tuple[Route, ...]
_Slot = Route | _Bucket  # what a prefix maps to: its one route, or 2+ routes as a plain tuple


class _Fib:
    """One kernel table of one family: prefix length -> masked network -> routes.

    A prefix with one route (nearly all) maps to that Route itself, one with several to a
    plain tuple of them, preferred first, rebuilt on a change. So a cold plug fills
    100,000 prefixes in one ``dict.update`` without making a container per route.
    """

    __slots__ = ("lens", "nets")

    def __init__(self) -> None:
        self.nets: dict[int, dict[int, _Slot]] = {}
        self.lens: list[int] | None = []  # prefix lengths present, longest first; None: stale

    def sorted_lens(self) -> list[int]:
        """The prefix lengths present, longest first (cached in ``lens`` until one comes
        or goes)."""
        lens = self.lens = sorted(self.nets, reverse=True)
        return lens

    def put(self, route: Route, bucket: _Bucket) -> None:
        """Set the bucket of ``route``'s prefix; an empty one drops the prefix (which must
        be there), and its length if that was the last."""
        plen = route.dst_len
        if bucket:
            nets = self.nets.get(plen)
            if nets is None:
                nets = self.nets[plen] = {}
                self.lens = None
            nets[route.dst_num] = bucket[0] if len(bucket) == 1 else bucket
        else:
            nets = self.nets[plen]
            del nets[route.dst_num]
            if not nets:
                del self.nets[plen]
                self.lens = None

    def bucket(self, route: Route) -> _Bucket:
        """The routes with ``route``'s prefix, preferred first."""
        nets = self.nets.get(route.dst_len)
        return _bucket(None if nets is None else nets.get(route.dst_num))


def _bucket(slot: _Slot | None) -> _Bucket:
    """The routes of a prefix slot, preferred first."""
    if slot is None:
        return ()
    if isinstance(slot, Route):
        return (slot,)
    return slot


def _rank(route: Route) -> tuple[bool, int]:
    """Order inside a prefix bucket: routes a plain lookup can use first, then by metric."""
    return (bool(route.tos or route.src_len), route.priority)


def _paths(route: Route) -> tuple[_Path, ...]:
    """The (gateway, oif) paths of a route, one for a single-path route."""
    if route.nexthops:
        return tuple(hop[:2] for hop in route.nexthops)
    return ((route.gateway, route.oif),)


def _links(route: Route) -> set[int]:
    """The interfaces a route leaves by."""
    return {oif for _, oif in _paths(route) if oif is not None}


def _ecmp6(route: Route) -> bool:
    """Whether an IPv6 route may join others of its metric as one multipath route (the
    kernel's ``rt6_qualify_for_ecmp``: a gateway, not from a router advertisement, no
    nexthop object)."""
    return (
        not route.nhid
        and route.protocol != RTPROT_RA
        and (bool(route.nexthops) or route.gateway is not None)
    )


def _parse(addr: Address) -> tuple[int, int]:
    """``(family, address as int)``; IPv4-mapped IPv6 counts as IPv4, a zone is dropped."""
    if isinstance(addr, str):
        try:
            return AF_INET, int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big")
        except OSError:
            pass
        try:
            raw = socket.inet_pton(socket.AF_INET6, addr.partition("%")[0])
        except OSError:
            raise ValueError(f"route lookup: {addr!r} is not an IPv4 or IPv6 address") from None
        if raw[:12] == _V4MAPPED_PREFIX:
            return AF_INET, int.from_bytes(raw[12:], "big")
        return AF_INET6, int.from_bytes(raw, "big")
    if isinstance(addr, ipaddress.IPv4Address):
        return AF_INET, int(addr)
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return AF_INET, int(mapped)
        return AF_INET6, int(addr)
    raise TypeError(f"route lookup: expected str or ipaddress address, got {type(addr).__name__}")


@dataclass(slots=True)
class NexthopChange:
    """What one nexthop message (or a link taking its nexthop objects along) did to the
    routes: ``removed`` went with their nexthop object, ``changed`` still use one whose
    paths changed (a replaced nexthop, a group that lost a member). ``nexthops`` are the
    objects that went or changed, whether or not a route of tables main and local uses
    them (routes of other tables, not kept here, may: the kernel tells nothing of them)."""

    removed: list[Route] = field(default_factory=list)
    changed: list[Route] = field(default_factory=list)
    nexthops: set[int] = field(default_factory=set)


class RouteTable:
    """The host's routes of tables main and local, kept in step with netlink.

    Iterable of :class:`Route` (in no particular order); ``len()``; :attr:`generation`
    bumps on every change; :meth:`get` finds a route by ``id`` in O(1). The indexes by
    id, link, preferred source and nexthop object are built on first use and kept from
    then on, so a cold plug pays only for the prefix index. :attr:`nexthops` holds the
    kernel's nexthop objects by id (``ip nexthop``).

    >>> table = RouteTable()
    >>> len(table), table.generation, table.routable("2001:db8::1")
    (0, 0, False)
    """

    __slots__ = (
        "_by_id",
        "_by_nhid",
        "_by_oif",
        "_by_prefsrc",
        "_count",
        "_dead",
        "_expired",
        "_expiring",
        "_fibs",
        "_generation",
        "_order",
        "nexthops",
    )

    def __init__(self) -> None:
        # Keyed by (family, table): tables are 32-bit, so no packing into one int.
        self._fibs = {(fam, t): _Fib() for fam in (AF_INET, AF_INET6) for t in _TABLES}
        # Kernel rule order: local (priority 0) before main (32766).
        self._order = {
            fam: (self._fibs[fam, RT_TABLE_LOCAL], self._fibs[fam, RT_TABLE_MAIN])
            for fam in (AF_INET, AF_INET6)
        }
        self._by_id: dict[int, Route] | None = None
        self._by_oif: dict[int, dict[int, Route]] | None = None
        self._by_prefsrc: dict[str, dict[int, Route]] | None = None
        self._by_nhid: dict[int, dict[int, Route]] | None = None
        self._count = 0
        self._generation = 0
        self.nexthops: dict[int, NexthopMsg] = {}
        self._dead: dict[int, int] = {}  # route id -> its dead paths (bit i: path i), if any
        self._expired: set[int] = set()  # ids of IPv6 routes past their expiry
        self._expiring: list[Route] = []  # routes with a lifetime, since take_expiring()

    # -- reading ---------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """A counter that changes whenever a route comes, goes or is replaced."""
        return self._generation

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Route]:
        return iter(self._all())

    def __contains__(self, route: object) -> bool:
        if not isinstance(route, Route):
            return False
        fib = self._fibs.get((route.family, route.table))
        return fib is not None and any(other is route for other in fib.bucket(route))

    def __repr__(self) -> str:
        return f"<RouteTable {self._count} routes, generation {self._generation}>"

    def get(self, route_id: int) -> Route | None:
        """The route with this ``id``, if it is still in the table."""
        return self._ids().get(route_id)

    def lookup(self, addr: Address) -> Route | None:
        """The route the kernel would pick for ``addr`` (no policy rules beyond the default
        ones, no TOS, no source): table local, then main; longest prefix, then lowest
        metric; an IPv6 route past its expiry is passed over, as the kernel does. A
        ``throw`` route sends the lookup on to the next table; if none matches after it,
        the throw route is returned (it is not routable).

        ``addr`` is a string or an :mod:`ipaddress` address; IPv4-mapped IPv6 addresses
        are looked up as IPv4. Raises ValueError for a string that is not an address.

        >>> RouteTable().lookup("203.0.113.9") is None
        True
        """
        family, num = _parse(addr)
        masks = _MASKS[family]
        expired = self._expired
        thrown: Route | None = None
        for fib in self._order[family]:
            nets = fib.nets
            lens = fib.lens
            if lens is None:
                lens = fib.sorted_lens()
            for plen in lens:
                slot = nets[plen].get(num & masks[plen])
                if slot is not None:
                    route: Route | None = slot if isinstance(slot, Route) else slot[0]
                    assert route is not None
                    if route.tos or route.src_len or (expired and route.id in expired):
                        route = _plain(slot, expired)
                        if route is None:
                            continue  # only TOS- or source-specific or expired routes here
                    if route.type == RTN_THROW:
                        thrown = route
                        break
                    return route
        return thrown

    def routable(self, addr: Address) -> bool:
        """True if a lookup finds a route that forwards (see :meth:`forwards`)."""
        route = self.lookup(addr)
        return route is not None and self.forwards(route)

    def forwards(self, route: Route) -> bool:
        """True if ``route`` forwards: not blackhole, unreachable, prohibit or throw, and
        not over a blackhole nexthop object (or a group with no other member)."""
        if route.type in NOT_ROUTABLE:
            return False
        return not route.nhid or self._nh_forwards(route.nhid)

    def routes_via_link(self, ifindex: int) -> list[Route]:
        """Every route with a path over interface ``ifindex``."""
        return list(self._oifs().get(ifindex, {}).values())

    def routes_with_prefsrc(self, address: str) -> list[Route]:
        """Every route whose preferred source (``RTA_PREFSRC``) is ``address``."""
        return list(self._prefsrcs().get(address, {}).values())

    def routes_with_nexthop(self, nhid: int) -> list[Route]:
        """Every route that uses nexthop object ``nhid`` (directly, not through a group)."""
        return list(self._nhids().get(nhid, {}).values())

    def dead_paths(self, route: Route) -> int:
        """The paths of ``route`` that are dead, as a bit mask (bit ``i``: path ``i``)."""
        return self._dead.get(route.id, 0)

    def expired(self, route: Route) -> bool:
        """True if ``route`` is past its expiry (see :meth:`expire`)."""
        return route.id in self._expired

    # -- changes from netlink --------------------------------------------------------

    def apply_route(self, msg: RouteMsg) -> list[RouteChange]:
        """Apply an ``RTM_NEWROUTE`` / ``RTM_DELROUTE`` record (each of its routes, in
        order) and return what changed; an empty list if nothing did."""
        changes: list[RouteChange] = []
        if msg.type == RTM_NEWROUTE:
            for route in msg.routes:
                change = self.add(route, msg.nl_flags)
                if change is not None:
                    changes.append(change)
        elif msg.type == RTM_DELROUTE:
            for route in msg.routes:
                change = self.delete(route)
                if change is not None:
                    changes.append(change)
        return changes

    def add(self, route: Route, nl_flags: int = 0) -> RouteChange | None:
        """Add (or replace) one route as an ``RTM_NEWROUTE`` with header flags
        ``nl_flags`` would; return the change, or None if nothing changed.

        Routes of tables other than main and local, and cloned (cache) routes, are
        ignored. A route already in the table (same content) changes nothing and keeps
        its id (a new lifetime, if it brings one, is taken).
        """
        fib = self._fibs.get((route.family, route.table))
        if fib is None or route.rtm_flags & RTM_F_CLONED:
            return None
        change = self._add(fib, route, nl_flags)
        if change is not None:
            self._generation += 1
        return change

    def delete(self, route: Route) -> RouteChange | None:
        """Remove the route an ``RTM_DELROUTE`` names (it echoes the deleted route's
        content); return the change, or None if no route of that identity is here (the
        table then stays as it is: no other route of the same key is taken instead)."""
        fib = self._fibs.get((route.family, route.table))
        if fib is None or route.rtm_flags & RTM_F_CLONED:
            return None
        change = self._delete(fib, route)
        if change is not None:
            self._generation += 1
        return change

    def load(self, records: Iterable[NlRecord], like: RouteTable | None = None) -> int:
        """Add the routes of every ``RTM_NEWROUTE`` record among ``records`` (a dump):
        the cold-plug path, with no change list.

        Other records are skipped. Returns how many routes were added or replaced; the
        generation bumps once if any were. With ``like`` (the live table, while a dump
        after ENOBUFS fills this one), a loaded route equal to one of ``like``'s (in
        content and in state: dead paths, expiry) is replaced here by that one at once,
        its state with it: the decoded copies die young (no cyclic
        collection walks 160,000 of them later), and :meth:`resync_slices` then finds
        the unchanged routes by identity.
        """
        count = 0
        if not self._count:  # an empty table's side indexes are empty: drop them, so the
            self._by_id = self._by_oif = self._by_prefsrc = self._by_nhid = None  # bulk insert
        for msg in records:
            if type(msg) is not RouteMsg or msg.type != RTM_NEWROUTE:
                continue
            routes = msg.routes
            done = self._load_batch(routes) if len(routes) >= _BATCH_MIN else -1
            if done >= 0:
                count += done
            else:
                for route in routes:
                    fib = self._fibs.get((route.family, route.table))
                    if fib is None or route.rtm_flags & RTM_F_CLONED:
                        continue
                    if self._add(fib, route, msg.nl_flags) is not None:
                        count += 1
            if like is not None:
                self._share(routes, like)
        if count:
            self._generation += 1
        return count

    def apply_nexthop(self, msg: NexthopMsg) -> NexthopChange:
        """Apply an ``RTM_NEWNEXTHOP`` / ``RTM_DELNEXTHOP`` record.

        A deleted nexthop takes with it, as the kernel does (``__remove_nexthop_fib``, with
        no ``RTM_DELROUTE`` for IPv4, nor for IPv6 under ``nexthop_compat_mode=0``), every
        route that uses it, and leaves the groups that held it: a group left empty goes
        too, with its routes. A replaced nexthop changes the routes that use it.
        """
        if msg.type == RTM_DELNEXTHOP:
            return self._remove_nexthops({msg.id})
        if msg.type != RTM_NEWNEXTHOP:
            return NexthopChange()
        old = self.nexthops.get(msg.id)
        self.nexthops[msg.id] = msg
        if old is None or nh_paths(old) == nh_paths(msg):
            return NexthopChange()
        self._generation += 1
        return NexthopChange(changed=self._retype(self._users({msg.id})), nexthops={msg.id})

    def flush_nexthops(self, ifindex: int) -> NexthopChange:
        """The link ``ifindex`` went down or lost its carrier: the kernel removes its
        nexthop objects (``nexthop_flush_dev``, without a message) and what uses them."""
        gone = {nh.id for nh in self.nexthops.values() if nh.oif == ifindex and not nh.blackhole}
        return self._remove_nexthops(gone) if gone else NexthopChange()

    def link_down(self, ifindex: int, force: bool = False) -> list[Route]:
        """Mark the IPv4 paths over link ``ifindex`` dead and remove (and return) the IPv4
        routes left with no live path, as the kernel's ``fib_sync_down_dev`` does without
        a message.

        ``force`` is False for a link that went down: ``scope host`` routes survive it
        (their nexthop has scope "nowhere"). It is True when the link's last IPv4 address
        went or the link is gone: every path over it dies. Routes over nexthop objects
        are not touched here (see :meth:`flush_nexthops`); IPv6 routes the kernel deletes
        with messages of their own.
        """
        gone: list[Route] = []
        if not self._count:  # e.g. a link found down early in a cold plug: no index yet
            return gone
        for route in self.routes_via_link(ifindex):
            if route.family != AF_INET or route.nhid:
                continue
            if not force and route.scope == RT_SCOPE_HOST:
                continue
            paths = _paths(route)
            dead = self.dead_paths(route)
            for i, (_, oif) in enumerate(paths):
                if oif == ifindex:
                    dead |= 1 << i
            if dead == (1 << len(paths)) - 1:
                gone.append(route)
            elif dead:
                self._dead[route.id] = dead
        return self._remove_all(gone)

    def link_up(self, ifindex: int) -> None:
        """Link ``ifindex`` is up (again), or got an IPv4 address: its dead paths live
        again (the kernel's ``fib_sync_up``)."""
        if not self._dead:  # the usual case, and a cold plug's: nothing to look up
            return
        for route in self.routes_via_link(ifindex):
            dead = self.dead_paths(route)
            if not dead:
                continue
            for i, (_, oif) in enumerate(_paths(route)):
                if oif == ifindex:
                    dead &= ~(1 << i)
            if dead:
                self._dead[route.id] = dead
            else:
                del self._dead[route.id]

    def expire(self, route: Route) -> bool:
        """``route`` (IPv6) is past its expiry: the kernel no longer uses it, though it
        keeps it, and says nothing, until its garbage collector deletes it (with an
        ``RTM_DELROUTE``). Lookups pass it over from now on; True if that is new."""
        if route.id in self._expired or route not in self:
            return False
        self._expired.add(route.id)
        self._generation += 1
        return True

    def take_expiring(self) -> list[Route]:
        """The routes with a lifetime (``expires``) that came, or were given a new one,
        since the last call and are still here: for the caller to time their expiry."""
        taken, self._expiring = self._expiring, []
        return [route for route in taken if route in self]

    def _share(self, routes: tuple[Route, ...], like: RouteTable) -> None:
        """Put ``like``'s equal routes in place of these (just loaded) in their slots:
        equal in content and in state (dead paths, expiry: see :meth:`_twin`)."""
        if not self._unindexed():
            return  # an index would still name the copies; resync_slices matches them later
        plain = not (self._dead or like._dead or like._expired)  # no state but lifetimes
        fam = tab = plen = -1
        nets: dict[int, _Slot] = {}
        theirs: dict[int, _Slot] = {}
        for route in routes:
            if route.family != fam or route.table != tab or route.dst_len != plen:
                fam, tab, plen = route.family, route.table, route.dst_len
                fib, other = self._fibs.get((fam, tab)), like._fibs.get((fam, tab))
                nets = {} if fib is None else fib.nets.get(plen, {})
                theirs = {} if other is None else other.nets.get(plen, {})
            dst = route.dst_num
            old = theirs.get(dst)
            if old is None:
                continue
            mine = nets.get(dst)
            if mine is None or mine is old:
                continue
            if isinstance(mine, Route) and isinstance(old, Route):
                if mine[:_CONTENT_END] == old[:_CONTENT_END] and (
                    mine.expires >= 0 if plain else self._twin(mine, like, old)
                ):
                    nets[dst] = old
                    if not plain:
                        self._moved(mine, old)
            else:
                kept = _match(old, mine, [], [], like, self)
                if kept is not mine:
                    nets[dst] = kept

    def _twin(self, route: Route, like: RouteTable, old: Route) -> bool:
        """Whether ``like``'s ``old``, equal in content to ``route`` here (a fresh dump's),
        is in the same state too: the same dead paths, and expired in ``like`` exactly when
        the dump shows ``route`` past its expiry. One that differs is taken as a change
        (a new route), so the dump's state wins."""
        return self._dead.get(route.id, 0) == like._dead.get(old.id, 0) and (route.expires < 0) == (
            old.id in like._expired
        )

    def _moved(self, route: Route, old: Route) -> None:
        """``old`` (another table's twin) takes the place of ``route`` here: so does its
        state."""
        mask = self._dead.pop(route.id, 0)
        if mask:
            self._dead[old.id] = mask
        if route.id in self._expired:
            self._expired.discard(route.id)
            self._expired.add(old.id)

    def _unindexed(self) -> bool:
        """No side index is built (a fresh table being loaded)."""
        return (
            self._by_id is None
            and self._by_oif is None
            and self._by_prefsrc is None
            and self._by_nhid is None
        )

    def drop_link(self, ifindex: int, family: int | None = None) -> list[Route]:
        """Remove the routes that leave only by interface ``ifindex`` (of one family, if
        given) and return them: the link is gone. A multipath route with another path
        elsewhere stays (the kernel drops the dead path, keeps the route)."""
        gone = [
            route
            for route in self.routes_via_link(ifindex)
            if (family is None or route.family == family) and _links(route) == {ifindex}
        ]
        return self._remove_all(gone)

    def clear(self) -> None:
        """Remove every route (the generation still moves on, so readers see a change)."""
        generation = self._generation
        RouteTable.__init__(self)
        self._generation = generation + 1

    def drop_prefsrc(self, address: str) -> list[Route]:
        """Remove the IPv4 routes of table main whose preferred source is ``address``,
        and return them: the kernel flushes them silently when that address leaves the
        host (``fib_sync_down_addr`` looks at table main only: a table local route
        with ``src`` that address stays)."""
        if not self._count:
            return []
        return self._remove_all(
            [
                route
                for route in self.routes_with_prefsrc(address)
                if route.family == AF_INET and route.table == RT_TABLE_MAIN
            ]
        )

    # -- re-dump after ENOBUFS -------------------------------------------------------

    def holds(self, route: Route) -> bool:
        """True if an ``RTM_DELROUTE`` naming ``route`` finds it here: a route of the same
        content, or (IPv6) the route of its key with its kernel identity (its paths, or
        its nexthop object). An event replayed over a fresh dump may delete what the dump
        no longer has; it then changes nothing, as a live delete that finds nothing does.

        >>> gone = Route(2, 0, 0, 254, 0, 0, None, 0, 1, None, 2, None, 4, 0, (), 0, (), 0,
        ...              0, 0, 0.0, 1)
        >>> RouteTable().holds(gone)
        False
        """
        fib = self._fibs.get((route.family, route.table))
        return fib is not None and _named(fib.bucket(route), route)[0] >= 0

    def snapshot(self) -> RouteTable:
        """An independent copy (routes are immutable and shared; ids are kept)."""
        copy = RouteTable()
        for key, fib in self._fibs.items():
            mine = copy._fibs[key]
            mine.nets = {plen: dict(nets) for plen, nets in fib.nets.items()}
            mine.lens = None
        copy._count = self._count
        copy._generation = self._generation
        copy.nexthops = dict(self.nexthops)
        copy._dead = dict(self._dead)
        copy._expired = set(self._expired)
        copy._expiring = list(self._expiring)
        return copy

    def diff(self, other: RouteTable) -> RouteDiff:
        """How ``other`` differs from this table: ``added`` are its routes this one lacks,
        ``removed`` this table's routes it lacks. Routes compare by content
        (:meth:`Route.same_as`), not by id."""
        mine = {_content(route): route for route in self._all()}
        theirs = {_content(route): route for route in other._all()}
        return RouteDiff(
            added=[route for key, route in theirs.items() if key not in mine],
            removed=[route for key, route in mine.items() if key not in theirs],
        )

    def resync(self, fresh: RouteTable) -> RouteDiff:
        """Make this table equal to ``fresh`` (built from a new dump, e.g. after ENOBUFS)
        in one call and return the difference; see :meth:`resync_slices`."""
        for delta in self.resync_slices(fresh, 0):
            if delta is not None:
                return delta
        raise AssertionError("resync_slices ended without a result")  # pragma: no cover

    def resync_slices(
        self, fresh: RouteTable, size: int = RESYNC_SLICE
    ) -> Iterator[RouteDiff | None]:
        """Make this table equal to ``fresh``, comparing at most ``size`` prefixes per step
        (0: all at once), so a resync of 160,000 routes never holds one loop pass.

        Each ``next()`` does one slice and gives None; the last one makes the change (in
        one step: until then this table is unchanged and consistent) and gives the
        :class:`RouteDiff`. Routes present in both keep their ids here; the routes and
        bucket order of ``fresh`` are taken as the kernel's. Neither table may change
        between steps (RuntimeError); ``fresh`` keeps its content (it may be given
        this table's equal routes in place of its own).

        >>> live, fresh = RouteTable(), RouteTable()
        >>> steps = live.resync_slices(fresh, 1000)
        >>> next(steps)
        RouteDiff(added=[], removed=[])
        """
        bound = size if size > 0 else 1 << 62
        gens = (self._generation, fresh._generation)
        added: list[Route] = []
        removed: list[Route] = []
        changed = False
        done = 0
        for key, theirs in fresh._fibs.items():
            mine = self._fibs[key]
            for plen, tnets in list(theirs.nets.items()):
                mnets = mine.nets.get(plen, {})
                keys = list(tnets)  # ints: no tuple per prefix for the collector to walk
                for at in range(0, len(keys), bound):
                    if done >= bound:
                        yield None
                        done = 0
                        self._check_unchanged(fresh, gens)
                    chunk = keys[at : at + bound]
                    done += len(chunk)
                    mget = mnets.get
                    for net in chunk:
                        tslot = tnets[net]
                        mslot = mget(net)
                        if mslot is tslot:
                            continue
                        if mslot is None:
                            if isinstance(tslot, Route):
                                added.append(tslot)
                            else:
                                added.extend(tslot)
                            continue
                        kept = _match(mslot, tslot, added, removed, self, fresh)
                        if kept is not tslot:
                            tnets[net] = kept
                        if kept is not mslot and kept != mslot:
                            changed = True  # other routes, or the same in another order
        for key, mine in self._fibs.items():
            theirs = fresh._fibs[key]
            for plen, own in mine.nets.items():
                other = theirs.nets.get(plen)
                gone = list(own) if other is None else list(own.keys() - other.keys())
                for at in range(0, len(gone), bound):
                    if done >= bound:
                        yield None
                        done = 0
                        self._check_unchanged(fresh, gens)
                    nets = gone[at : at + bound]
                    done += len(nets)
                    for net in nets:
                        removed.extend(_bucket(own[net]))
        if done >= bound:
            yield None
            self._check_unchanged(fresh, gens)
        changed = changed or bool(added or removed)
        if changed:
            self._take(fresh, added, removed, bound)
        else:
            self._take_state(fresh, removed)
        yield RouteDiff(added=added, removed=removed)

    def _check_unchanged(self, fresh: RouteTable, gens: tuple[int, int]) -> None:
        if (self._generation, fresh._generation) != gens:
            raise RuntimeError("a table changed while a resync between them was in progress")

    def _take(
        self, fresh: RouteTable, added: list[Route], removed: list[Route], bound: int
    ) -> None:
        """The last step of a resync: take ``fresh``'s prefixes (already holding this
        table's routes where equal), and bring the side indexes along."""
        for key, theirs in fresh._fibs.items():
            mine = self._fibs[key]
            mine.nets = {plen: dict(nets) for plen, nets in theirs.nets.items()}
            mine.lens = None
        self._count = fresh._count
        if len(added) + len(removed) > bound:  # rebuilt on first use
            self._by_id = self._by_oif = self._by_prefsrc = self._by_nhid = None
        else:
            for route in removed:
                self._unindex(route)
            for route in added:
                self._index(route, timed=False)  # fresh's own list times it
        self._take_state(fresh, removed)
        self._generation += 1

    def _take_state(self, fresh: RouteTable, removed: list[Route]) -> None:
        """The end of a resync: the nexthop objects and dead paths are ``fresh``'s (keyed
        by the routes in its slots, which are now this table's: :meth:`_moved`); expiry
        stays this table's for its routes that stay, and ``fresh``'s routes with a
        lifetime are handed to :meth:`take_expiring` (which passes over those not here)."""
        self.nexthops = dict(fresh.nexthops)
        self._dead = dict(fresh._dead)
        self._expired.difference_update(route.id for route in removed)
        self._expired |= fresh._expired
        self._expiring.extend(fresh._expiring)

    # -- internals -------------------------------------------------------------------

    def _all(self) -> list[Route]:
        """Every route, as a list (safe to hold while the table changes)."""
        return [
            route
            for fib in self._fibs.values()
            for nets in fib.nets.values()
            for slot in nets.values()
            for route in _bucket(slot)
        ]

    def _ids(self) -> dict[int, Route]:
        """The id index, built on first use."""
        if self._by_id is None:
            self._by_id = {route.id: route for route in self._all()}
        return self._by_id

    def _oifs(self) -> dict[int, dict[int, Route]]:
        """The link index (ifindex -> routes by id), built on first use."""
        if self._by_oif is None:
            by_oif: dict[int, dict[int, Route]] = {}
            for route in self._all():
                for oif in _links(route):
                    by_oif.setdefault(oif, {})[route.id] = route
            self._by_oif = by_oif
        return self._by_oif

    def _prefsrcs(self) -> dict[str, dict[int, Route]]:
        """The preferred-source index, built on first use."""
        if self._by_prefsrc is None:
            by_src: dict[str, dict[int, Route]] = {}
            for route in self._all():
                if route.prefsrc is not None:
                    by_src.setdefault(route.prefsrc, {})[route.id] = route
            self._by_prefsrc = by_src
        return self._by_prefsrc

    def _nhids(self) -> dict[int, dict[int, Route]]:
        """The nexthop-object index (nhid -> routes by id), built on first use."""
        if self._by_nhid is None:
            by_nhid: dict[int, dict[int, Route]] = {}
            for route in self._all():
                if route.nhid:
                    by_nhid.setdefault(route.nhid, {})[route.id] = route
            self._by_nhid = by_nhid
        return self._by_nhid

    def _index(self, route: Route, timed: bool = True) -> None:
        """Enter a route (already in its bucket) into the indexes that exist; one with a
        lifetime is handed to :meth:`take_expiring` unless ``timed`` is False."""
        rid = route.id
        if self._by_id is not None:
            self._by_id[rid] = route
        if self._by_oif is not None:
            for oif in _links(route):
                self._by_oif.setdefault(oif, {})[rid] = route
        if self._by_prefsrc is not None and route.prefsrc is not None:
            self._by_prefsrc.setdefault(route.prefsrc, {})[rid] = route
        if self._by_nhid is not None and route.nhid:
            self._by_nhid.setdefault(route.nhid, {})[rid] = route
        if route.expires and timed:
            self._expiring.append(route)
        if route.nh_dead:
            self._dead[rid] = route.nh_dead

    def _unindex(self, route: Route) -> None:
        """Remove a route from the indexes that exist, and forget its state."""
        rid = route.id
        if self._by_id is not None:
            del self._by_id[rid]
        if self._by_oif is not None:
            for oif in _links(route):
                on_link = self._by_oif[oif]
                del on_link[rid]
                if not on_link:
                    del self._by_oif[oif]
        if self._by_prefsrc is not None and route.prefsrc is not None:
            with_src = self._by_prefsrc[route.prefsrc]
            del with_src[rid]
            if not with_src:
                del self._by_prefsrc[route.prefsrc]
        if self._by_nhid is not None and route.nhid:
            users = self._by_nhid[route.nhid]
            del users[rid]
            if not users:
                del self._by_nhid[route.nhid]
        self._dead.pop(rid, None)
        self._expired.discard(rid)

    def _add(self, fib: _Fib, route: Route, nl_flags: int) -> RouteChange | None:
        """Insert or replace per the kernel's identity rules (see the module docstring);
        the caller bumps the generation."""
        bucket = fib.bucket(route)
        key = route[_KEY]
        same = [i for i, other in enumerate(bucket) if other[_KEY] == key]
        content = _content(route)
        for i in same:
            if _content(bucket[i]) == content:
                self._refresh(fib, bucket, i, route)
                return None
        removed: Route | None = None
        at = -1
        if same and route.family == AF_INET6:
            at = _same_v6(bucket, same, route, nl_flags)
        elif same and nl_flags & NLM_F_REPLACE:
            at = same[0]
        if at >= 0:
            removed = bucket[at]
            bucket = (*bucket[:at], route, *bucket[at + 1 :])
        else:
            if same:
                # An IPv4 alias: ip route append (or a dump) goes last, ip route prepend
                # first; another IPv6 route of that metric goes after the ones there.
                last = nl_flags & (NLM_F_APPEND | NLM_F_MULTI) or route.family == AF_INET6
                at = same[-1] + 1 if last else same[0]
            else:
                rank = _rank(route)
                at = next((i for i, other in enumerate(bucket) if _rank(other) > rank), len(bucket))
            bucket = (*bucket[:at], route, *bucket[at:])
        fib.put(route, bucket)
        if removed is None:
            self._count += 1
        else:
            self._unindex(removed)
        self._index(route)
        return RouteChange(route, removed)

    def _refresh(self, fib: _Fib, bucket: _Bucket, at: int, route: Route) -> None:
        """A route the table has came again: take its new lifetime, keeping the old id
        (connections are indexed by it), and make it usable again if it had expired."""
        old = bucket[at]
        if route.expires == old.expires and old.id not in self._expired:
            return
        new = route._replace(id=old.id)
        self._unindex(old)
        fib.put(new, (*bucket[:at], new, *bucket[at + 1 :]))
        self._index(new)
        self._generation += 1

    def _delete(self, fib: _Fib, route: Route) -> RouteChange | None:
        """Remove the route a ``RTM_DELROUTE`` names; the caller bumps the generation."""
        bucket = fib.bucket(route)
        at, left = _named(bucket, route)
        if at < 0:
            return None
        removed = bucket[at]
        added: Route | None = None
        if left:
            added = _with_paths(removed, left)
            fib.put(route, (*bucket[:at], added, *bucket[at + 1 :]))
        else:
            fib.put(route, bucket[:at] + bucket[at + 1 :])
            self._count -= 1
        self._unindex(removed)
        if added is not None:
            self._index(added)
        return RouteChange(added, removed)

    def _load_batch(self, routes: tuple[Route, ...]) -> int:
        """Insert a dump's batch in bulk when it is simple (one family, table and prefix
        length; none cloned; every prefix new; no side index built yet): the count, or
        -1 to say "take the general path"."""
        if (
            self._by_id is not None
            or self._by_oif is not None
            or self._by_prefsrc is not None
            or self._by_nhid is not None
        ):
            return -1
        m = len(routes)
        first = routes[0]
        fib = self._fibs.get((first.family, first.table))
        if fib is None:
            return -1
        for column, want in (
            (_FAMILY, first.family),
            (_TABLE, first.table),
            (_DST_LEN, first.dst_len),
        ):
            if list(map(column, routes)).count(want) != m:
                return -1
        if any(flags & RTM_F_CLONED for flags in set(map(_RTM_FLAGS, routes))):
            return -1
        if any(map(_NH_DEAD, routes)):  # dead paths to note: the general path does
            return -1
        nets = fib.nets.get(first.dst_len)
        if nets is None:
            nets = fib.nets[first.dst_len] = {}
            fib.lens = None
        elif not nets.keys().isdisjoint(map(_DST_NUM, routes)):
            return -1
        before = len(nets)
        nets.update(zip(map(_DST_NUM, routes), routes))  # noqa: B905 (one route, one key)
        if len(nets) - before != m:
            # Two routes for one prefix (aliases, or a repeat): undo, take the general path.
            for dst in set(map(_DST_NUM, routes)):
                del nets[dst]
            if not nets:
                del fib.nets[first.dst_len]
                fib.lens = None
            return -1
        self._count += m
        if first.family == AF_INET6:  # only IPv6 routes have lifetimes
            self._expiring.extend(filter(_EXPIRES, routes))
        return m

    def _nh_forwards(self, nhid: int) -> bool:
        """Whether nexthop object ``nhid`` forwards: not a blackhole nexthop, nor a group
        of one (the kernel's ``nexthop_is_blackhole``); one not known here is trusted."""
        nh = self.nexthops.get(nhid)
        if nh is not None and len(nh.group) == 1:
            nh = self.nexthops.get(nh.group[0][0])
        return nh is None or not nh.blackhole

    def _retype(self, routes: list[Route]) -> list[Route]:
        """Routes over nexthop objects that changed, with the type the kernel now shows
        for them (blackhole while their nexthop is one, ``fib_dump_info``), under their
        ids: the same kernel routes, kept in place."""
        out = []
        for route in routes:
            now = route
            if route.type in (RTN_UNICAST, RTN_BLACKHOLE):
                rtype = RTN_UNICAST if self._nh_forwards(route.nhid) else RTN_BLACKHOLE
                if rtype != route.type:
                    now = self._swap(route, route._replace(type=rtype))
            out.append(now)
        return out

    def _swap(self, old: Route, new: Route) -> Route:
        """Put ``new`` where ``old`` is (same id, same path and expiry state)."""
        fib = self._fibs[old.family, old.table]
        bucket = fib.bucket(old)
        at = next(i for i, other in enumerate(bucket) if other is old)
        dead = self._dead.get(old.id)
        expired = old.id in self._expired
        self._unindex(old)
        fib.put(new, (*bucket[:at], new, *bucket[at + 1 :]))
        self._index(new, timed=False)
        if dead is not None:
            self._dead[new.id] = dead
        if expired:
            self._expired.add(new.id)
        return new

    def _users(self, nhids: set[int]) -> list[Route]:
        """The routes over these nexthop objects or over groups that hold one."""
        wanted = set(nhids)
        wanted.update(
            gid
            for gid, nh in self.nexthops.items()
            if nh.group and any(m in nhids for m, _ in nh.group)
        )
        by_nhid = self._nhids()
        return [route for nhid in wanted for route in by_nhid.get(nhid, {}).values()]

    def _remove_nexthops(self, gone: set[int]) -> NexthopChange:
        """Remove nexthop objects, the groups they leave empty, and every route over
        either (``remove_nexthop`` and ``remove_nexthop_from_groups``)."""
        gone = set(gone)
        for nhid in gone:
            self.nexthops.pop(nhid, None)
        shrunk: set[int] = set()
        for gid, nh in list(self.nexthops.items()):
            if nh.group and any(m in gone for m, _ in nh.group):
                left = tuple(entry for entry in nh.group if entry[0] not in gone)
                if left:
                    self.nexthops[gid] = dataclasses.replace(nh, group=left)
                    shrunk.add(gid)
                else:
                    del self.nexthops[gid]
                    gone.add(gid)
        by_nhid = self._nhids()
        removed = [route for nhid in gone for route in by_nhid.get(nhid, {}).values()]
        changed = [route for nhid in shrunk for route in by_nhid.get(nhid, {}).values()]
        if changed and not removed:
            self._generation += 1
        return NexthopChange(self._remove_all(removed), self._retype(changed), gone | shrunk)

    def _remove_all(self, routes: list[Route]) -> list[Route]:
        """Remove routes known to be in the table; one generation bump for all."""
        for route in routes:
            fib = self._fibs[route.family, route.table]
            fib.put(route, tuple(other for other in fib.bucket(route) if other is not route))
            self._count -= 1
            self._unindex(route)
        if routes:
            self._generation += 1
        return routes


def _match(
    mine: _Slot,
    theirs: _Slot,
    added: list[Route],
    removed: list[Route],
    live: RouteTable,
    fresh: RouteTable,
) -> _Slot:
    """``theirs`` (a slot of ``fresh``, a new dump) with the equal routes of ``mine`` (the
    same prefix in ``live``) put back in place of its own, their state moving with them
    (:meth:`RouteTable._twin`, :meth:`RouteTable._moved`); what only one side has goes to
    ``added`` / ``removed``."""
    if isinstance(mine, Route) and isinstance(theirs, Route):
        if mine[:_CONTENT_END] == theirs[:_CONTENT_END] and fresh._twin(theirs, live, mine):
            fresh._moved(theirs, mine)
            return mine
        added.append(theirs)
        removed.append(mine)
        return theirs
    have = {_content(route): route for route in _bucket(mine)}
    out: list[Route] = []
    for route in _bucket(theirs):
        content = _content(route)
        own = have.get(content)
        if own is not None and (own is route or fresh._twin(route, live, own)):
            del have[content]
            if own is not route:
                fresh._moved(route, own)
            out.append(own)
        else:
            added.append(route)
            out.append(route)
    removed.extend(have.values())
    return out[0] if len(out) == 1 else tuple(out)


def _content(route: Route) -> tuple[object, ...]:
    """What makes a route the same kernel route: all but its state (``rtm_flags``,
    ``nh_dead``, ``expires``) and ``id``."""
    return route[:_CONTENT_END]


def _with_paths(route: Route, paths: tuple[NextHop, ...]) -> Route:
    """A copy of a multipath route with fewer paths, under a new id."""
    gateway, oif, _, flags = paths[0]
    if len(paths) > 1:
        return route._replace(
            gateway=gateway, oif=oif, nexthops=paths, nh_dead=0, id=next_route_id()
        )
    nh_flags = flags & RTNH_F_IDENTITY
    return route._replace(
        gateway=gateway, oif=oif, nexthops=(), nh_flags=nh_flags, nh_dead=0, id=next_route_id()
    )


def _plain(slot: _Slot, expired: set[int]) -> Route | None:
    """The first route of a prefix that a plain lookup may use: no TOS, no source
    prefix, not expired."""
    for route in _bucket(slot):
        if not (route.tos or route.src_len or route.id in expired):
            return route
    return None


def _same_v6(bucket: _Bucket, same: list[int], route: Route, nl_flags: int) -> int:
    """Which IPv6 route of ``route``'s (metric, source) a NEWROUTE replaces, or -1 to
    add it beside them (``fib6_add_rt2leaf``): with ``NLM_F_REPLACE`` the first one that
    can form ECMP as it can (else the first); otherwise the one it is the kernel's
    duplicate of (:func:`_hops6`: a joined ECMP route is announced whole), if any."""
    if nl_flags & NLM_F_REPLACE:
        ecmp = _ecmp6(route)
        return next((i for i in same if _ecmp6(bucket[i]) == ecmp), same[0])
    hops = _hops6(route)
    return next((i for i in same if not hops.isdisjoint(_hops6(bucket[i]))), -1)


def _hops6(route: Route) -> set[object]:
    """What tells IPv6 routes of one (table, dst, src, metric) apart, as the kernel's
    ``rt6_duplicate_nexthop`` does: the nexthop object if the route uses one (two routes
    over different objects are two routes, whatever paths they show), else its (gateway,
    oif) paths."""
    if route.nhid:
        return {("nhid", route.nhid)}
    return set(_paths(route))


def _named(bucket: _Bucket, route: Route) -> tuple[int, tuple[NextHop, ...]]:
    """Which route of a prefix bucket a ``RTM_DELROUTE`` for ``route`` deletes, and the
    paths it leaves (empty: the whole route goes); ``(-1, ())`` if none.

    The kernel's message carries the whole route it deleted, so the route of the same
    content is the one (an IPv4 delete never means another, even of the same key: that
    one may be another link's, the message's own being gone already, flushed silently).
    An IPv6 route is also named by its key and :func:`_hops6` (its kernel identity;
    its metrics may have changed unannounced): a multipath route loses the paths the
    message names (one sibling deleted alone), or goes if none is left.
    """
    content = _content(route)
    for i, other in enumerate(bucket):
        if _content(other) == content:
            return i, ()
    if route.family != AF_INET6:
        return -1, ()
    key = route[_KEY]
    hops = _hops6(route)
    for i, other in enumerate(bucket):
        if other[_KEY] == key and not hops.isdisjoint(_hops6(other)):
            gone = set(_paths(route))
            return i, tuple(hop for hop in other.nexthops if hop[:2] not in gone)
    return -1, ()


def nh_paths(nh: NexthopMsg) -> tuple[object, ...]:
    """What a nexthop object forwards by (for telling a real replacement from a repeat)."""
    return (nh.oif, nh.gateway, nh.blackhole, nh.group, nh.fdb)
