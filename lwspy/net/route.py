"""The routing table as live state: what the kernel's tables main and local hold.

Sans-I/O: the netlink role feeds decoded :class:`~lwspy.net.nlmsg.RouteMsg` records in
(:meth:`RouteTable.apply_route`, :meth:`RouteTable.load`), and drops what the kernel
removes without telling (:meth:`RouteTable.drop_link`, :meth:`RouteTable.drop_prefsrc`).
Connections ask :meth:`RouteTable.lookup` / :meth:`RouteTable.routable`.

Lookup mirrors the kernel's default rules: table local first, then main (other tables are
not kept), each by longest-prefix match, then lowest priority (metric). Per family and
table the routes sit in ``{prefix length: {masked network: (routes, preferred first)}}``,
so a lookup probes only the prefix lengths present, longest first (lws's
``_lws_route_est_outgoing`` takes the first match instead: **(lws bug)**).

Route identity follows the kernel: an IPv6 route is (table, dst, dst_len, src, src_len,
metric); IPv4 allows several routes ("aliases") with the same (table, dst, dst_len, tos,
metric), added by ``ip route append`` / ``prepend``, and replaces the first one on
``NLM_F_REPLACE``. A replaced route is a new :class:`Route` with a new ``id``.

>>> table = RouteTable()
>>> table.lookup("198.51.100.7") is None
True
"""

from __future__ import annotations

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
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTM_DELROUTE,
    RTM_F_CLONED,
    RTM_NEWROUTE,
    RTN_BLACKHOLE,
    RTN_PROHIBIT,
    RTN_THROW,
    RTN_UNREACHABLE,
    NextHop,
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
_CONTENT_END: Final = 15  # Route fields that make it the same kernel route (not flags, id)
_KEY: Final = slice(4, 8)  # priority, tos, src, src_len: identity within one prefix bucket
_BATCH_MIN: Final = 8  # routes in a record worth the bulk insert
RESYNC_SLICE: Final = 8192
"""Prefixes a :meth:`RouteTable.resync_slices` step compares (a few ms of work)."""
_FAMILY = itemgetter(0)
_DST_NUM = itemgetter(1)
_DST_LEN = itemgetter(2)
_TABLE = itemgetter(3)
_RTM_FLAGS = itemgetter(15)

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


def _paths(route: Route) -> tuple[tuple[str | None, int | None], ...]:
    """The (gateway, oif) paths of a route, one for a single-path route."""
    return route.nexthops or ((route.gateway, route.oif),)


def _links(route: Route) -> set[int]:
    """The interfaces a route leaves by."""
    return {oif for _, oif in _paths(route) if oif is not None}


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


class RouteTable:
    """The host's routes of tables main and local, kept in step with netlink.

    Iterable of :class:`Route` (in no particular order); ``len()``; :attr:`generation`
    bumps on every change; :meth:`get` finds a route by ``id`` in O(1). The indexes by
    id, link and preferred source are built on first use and kept from then on, so a
    cold plug pays only for the prefix index.

    >>> table = RouteTable()
    >>> len(table), table.generation, table.routable("2001:db8::1")
    (0, 0, False)
    """

    __slots__ = ("_by_id", "_by_oif", "_by_prefsrc", "_count", "_fibs", "_generation", "_order")

    def __init__(self) -> None:
        self._fibs = {(fam << 8) | t: _Fib() for fam in (AF_INET, AF_INET6) for t in _TABLES}
        # Kernel rule order: local (priority 0) before main (32766).
        self._order = {
            fam: (self._fibs[(fam << 8) | RT_TABLE_LOCAL], self._fibs[(fam << 8) | RT_TABLE_MAIN])
            for fam in (AF_INET, AF_INET6)
        }
        self._by_id: dict[int, Route] | None = None
        self._by_oif: dict[int, dict[int, Route]] | None = None
        self._by_prefsrc: dict[str, dict[int, Route]] | None = None
        self._count = 0
        self._generation = 0

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
        fib = self._fibs.get((route.family << 8) | route.table)
        return fib is not None and any(other is route for other in fib.bucket(route))

    def __repr__(self) -> str:
        return f"<RouteTable {self._count} routes, generation {self._generation}>"

    def get(self, route_id: int) -> Route | None:
        """The route with this ``id``, if it is still in the table."""
        return self._ids().get(route_id)

    def lookup(self, addr: Address) -> Route | None:
        """The route the kernel would pick for ``addr`` (no policy rules beyond the default
        ones, no TOS, no source): table local, then main; longest prefix, then lowest
        metric. A ``throw`` route sends the lookup on to the next table; if none matches
        after it, the throw route is returned (it is not routable).

        ``addr`` is a string or an :mod:`ipaddress` address; IPv4-mapped IPv6 addresses
        are looked up as IPv4. Raises ValueError for a string that is not an address.

        >>> RouteTable().lookup("203.0.113.9") is None
        True
        """
        family, num = _parse(addr)
        masks = _MASKS[family]
        thrown: Route | None = None
        for fib in self._order[family]:
            nets = fib.nets
            lens = fib.lens
            if lens is None:
                lens = fib.sorted_lens()
            for plen in lens:
                slot = nets[plen].get(num & masks[plen])
                if slot is not None:
                    route = slot if isinstance(slot, Route) else slot[0]
                    if route.tos or route.src_len:
                        continue  # only TOS- or source-specific routes for this prefix
                    if route.type == RTN_THROW:
                        thrown = route
                        break
                    return route
        return thrown

    def routable(self, addr: Address) -> bool:
        """True if a lookup finds a route that forwards: not blackhole, unreachable,
        prohibit or throw, and not no route at all."""
        route = self.lookup(addr)
        return route is not None and route.type not in NOT_ROUTABLE

    def routes_via_link(self, ifindex: int) -> list[Route]:
        """Every route with a path over interface ``ifindex``."""
        return list(self._oifs().get(ifindex, {}).values())

    def routes_with_prefsrc(self, address: str) -> list[Route]:
        """Every route whose preferred source (``RTA_PREFSRC``) is ``address``."""
        return list(self._prefsrcs().get(address, {}).values())

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
        its id.
        """
        fib = self._fibs.get((route.family << 8) | route.table)
        if fib is None or route.rtm_flags & RTM_F_CLONED:
            return None
        change = self._add(fib, route, nl_flags)
        if change is not None:
            self._generation += 1
        return change

    def delete(self, route: Route) -> RouteChange | None:
        """Remove the route an ``RTM_DELROUTE`` names (it echoes the deleted route's
        content); return the change, or None if no route of that identity is here."""
        fib = self._fibs.get((route.family << 8) | route.table)
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
        after ENOBUFS fills this one), a loaded route equal to one of ``like``'s is
        replaced here by that one at once: the decoded copies die young (no cyclic
        collection walks 160,000 of them later), and :meth:`resync_slices` then finds
        the unchanged routes by identity.
        """
        count = 0
        if not self._count:  # an empty table's side indexes are empty: drop them, so the
            self._by_id = self._by_oif = self._by_prefsrc = None  # bulk insert applies
        for msg in records:
            if type(msg) is not RouteMsg or msg.type != RTM_NEWROUTE:
                continue
            routes = msg.routes
            done = self._load_batch(routes) if len(routes) >= _BATCH_MIN else -1
            if done >= 0:
                count += done
            else:
                for route in routes:
                    fib = self._fibs.get((route.family << 8) | route.table)
                    if fib is None or route.rtm_flags & RTM_F_CLONED:
                        continue
                    if self._add(fib, route, msg.nl_flags) is not None:
                        count += 1
            if like is not None:
                self._share(routes, like)
        if count:
            self._generation += 1
        return count

    def _share(self, routes: tuple[Route, ...], like: RouteTable) -> None:
        """Put ``like``'s equal routes in place of these (just loaded) in their slots."""
        if self._by_id is not None or self._by_oif is not None or self._by_prefsrc is not None:
            return  # an index would still name the copies; resync_slices matches them later
        key = plen = -1
        nets: dict[int, _Slot] = {}
        theirs: dict[int, _Slot] = {}
        for route in routes:
            if (route.family << 8) | route.table != key or route.dst_len != plen:
                key, plen = (route.family << 8) | route.table, route.dst_len
                fib, other = self._fibs.get(key), like._fibs.get(key)
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
                if mine[:_CONTENT_END] == old[:_CONTENT_END]:
                    nets[dst] = old
            else:
                kept = _match(old, mine, [], [])
                if kept is not mine:
                    nets[dst] = kept

    def drop_link(self, ifindex: int, family: int | None = None) -> list[Route]:
        """Remove the routes that leave only by interface ``ifindex`` (of one family, if
        given) and return them.

        The kernel flushes these without any ``RTM_DELROUTE``: the IPv4 routes over a link
        when it goes down, and when its last IPv4 address is deleted. A multipath route
        with another path elsewhere stays (the kernel marks the dead path, keeps the
        route).
        """
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
        """Remove the routes whose preferred source is ``address`` and return them (the
        kernel flushes them silently when that IPv4 address is deleted)."""
        return self._remove_all(self.routes_with_prefsrc(address))

    # -- re-dump after ENOBUFS -------------------------------------------------------

    def holds(self, route: Route) -> bool:
        """True if an ``RTM_DELROUTE`` naming ``route`` finds it here: a route of the same
        content, or a multipath route with one of its paths. An event replayed over a
        fresh dump may delete what the dump no longer has; it must then change nothing
        (not take another route of the same key, as a live delete may).

        >>> RouteTable().holds(Route(2, 0, 0, 254, 0, 0, None, 0, 1, None, 2, None, 4, 0, (), 0, 1))
        False
        """
        fib = self._fibs.get((route.family << 8) | route.table)
        if fib is None:
            return False
        content = _content(route)
        paths = set(_paths(route))
        return any(
            _content(other) == content or not paths.isdisjoint(other.nexthops)
            for other in fib.bucket(route)
        )

    def snapshot(self) -> RouteTable:
        """An independent copy (routes are immutable and shared; ids are kept)."""
        copy = RouteTable()
        for key, fib in self._fibs.items():
            mine = copy._fibs[key]
            mine.nets = {plen: dict(nets) for plen, nets in fib.nets.items()}
            mine.lens = None
        copy._count = self._count
        copy._generation = self._generation
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
                        kept = _match(mslot, tslot, added, removed)
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
        if len(added) + len(removed) > bound:
            self._by_id = self._by_oif = self._by_prefsrc = None  # rebuilt on first use
        else:
            for route in removed:
                self._unindex(route)
            for route in added:
                self._index(route)
        self._generation += 1

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

    def _index(self, route: Route) -> None:
        """Enter a route (already in its bucket) into the indexes that exist."""
        rid = route.id
        if self._by_id is not None:
            self._by_id[rid] = route
        if self._by_oif is not None:
            for oif in _links(route):
                self._by_oif.setdefault(oif, {})[rid] = route
        if self._by_prefsrc is not None and route.prefsrc is not None:
            self._by_prefsrc.setdefault(route.prefsrc, {})[rid] = route

    def _unindex(self, route: Route) -> None:
        """Remove a route from the indexes that exist."""
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

    def _add(self, fib: _Fib, route: Route, nl_flags: int) -> RouteChange | None:
        """Insert or replace per the kernel's identity rules (see the module docstring);
        the caller bumps the generation."""
        bucket = fib.bucket(route)
        key = route[_KEY]
        same = [i for i, other in enumerate(bucket) if other[_KEY] == key]
        content = _content(route)
        if any(_content(bucket[i]) == content for i in same):
            return None
        removed: Route | None = None
        if same and (route.family == AF_INET6 or nl_flags & NLM_F_REPLACE):
            at = same[0]
            removed = bucket[at]
            bucket = (*bucket[:at], route, *bucket[at + 1 :])
        else:
            if same:
                # IPv4 alias: ip route append (or a dump) goes last, ip route prepend first.
                at = same[-1] + 1 if nl_flags & (NLM_F_APPEND | NLM_F_MULTI) else same[0]
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

    def _delete(self, fib: _Fib, route: Route) -> RouteChange | None:
        """Remove the route a ``RTM_DELROUTE`` names; the caller bumps the generation."""
        bucket = fib.bucket(route)
        key = route[_KEY]
        same = [i for i, other in enumerate(bucket) if other[_KEY] == key]
        if not same:
            return None
        content = _content(route)
        at = next((i for i in same if _content(bucket[i]) == content), -1)
        added: Route | None = None
        if at < 0:
            # Not an exact echo: one path of a multipath route (IPv6 deletes a sibling
            # alone), else whatever route of that key the kernel took.
            at = same[0]
            gone = set(_paths(route))
            for i in same:
                have = bucket[i].nexthops
                if gone.intersection(have):
                    at = i
                    left = tuple(path for path in have if path not in gone)
                    if left:
                        added = _with_paths(bucket[i], left)
                    break
        removed = bucket[at]
        if added is None:
            fib.put(route, bucket[:at] + bucket[at + 1 :])
            self._count -= 1
        else:
            fib.put(route, (*bucket[:at], added, *bucket[at + 1 :]))
        self._unindex(removed)
        if added is not None:
            self._index(added)
        return RouteChange(added, removed)

    def _load_batch(self, routes: tuple[Route, ...]) -> int:
        """Insert a dump's batch in bulk when it is simple (one family, table and prefix
        length; none cloned; every prefix new; no side index built yet): the count, or
        -1 to say "take the general path"."""
        if self._by_id is not None or self._by_oif is not None or self._by_prefsrc is not None:
            return -1
        m = len(routes)
        first = routes[0]
        fib = self._fibs.get((first.family << 8) | first.table)
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
        return m

    def _remove_all(self, routes: list[Route]) -> list[Route]:
        """Remove routes known to be in the table; one generation bump for all."""
        for route in routes:
            fib = self._fibs[(route.family << 8) | route.table]
            fib.put(route, tuple(other for other in fib.bucket(route) if other is not route))
            self._count -= 1
            self._unindex(route)
        if routes:
            self._generation += 1
        return routes


def _match(mine: _Slot, theirs: _Slot, added: list[Route], removed: list[Route]) -> _Slot:
    """``theirs`` (a fresh table's slot) with the equal routes of ``mine`` put back in
    place of its own; what only one side has goes to ``added`` / ``removed``."""
    if isinstance(mine, Route) and isinstance(theirs, Route):
        if mine[:_CONTENT_END] == theirs[:_CONTENT_END]:
            return mine
        added.append(theirs)
        removed.append(mine)
        return theirs
    have = {_content(route): route for route in _bucket(mine)}
    out: list[Route] = []
    for route in _bucket(theirs):
        own = have.pop(_content(route), None)
        if own is None:
            added.append(route)
            out.append(route)
        else:
            out.append(own)
    removed.extend(have.values())
    return out[0] if len(out) == 1 else tuple(out)


def _content(route: Route) -> tuple[object, ...]:
    """What makes a route the same kernel route: all but ``rtm_flags`` and ``id``."""
    return route[:_CONTENT_END]


def _with_paths(route: Route, paths: tuple[NextHop, ...]) -> Route:
    """A copy of a multipath route with fewer paths, under a new id."""
    gateway, oif = paths[0]
    nexthops = paths if len(paths) > 1 else ()
    return route._replace(gateway=gateway, oif=oif, nexthops=nexthops, id=next_route_id())
