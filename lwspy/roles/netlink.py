"""The netlink role: the routing table as live state (lws ``roles/netlink``, done right).

One ``AF_NETLINK/NETLINK_ROUTE`` socket in the same selector as every wsi, subscribed to
links, IPv4/IPv6 addresses, IPv4/IPv6 routes and nexthop objects (the event socket; each
dump runs on a socket of its own, see below, and a small query socket asks the kernel
about route lifetimes). At start it dumps links, then addresses, then nexthop objects,
then routes (lws dumps routes only), holding the system state at IFACE_COLDPLUG until
the dumps end (or :data:`COLDPLUG_TIMEOUT` passes). From then on every change is applied
to :class:`~lwspy.net.route.RouteTable` and, once per batch of messages, the connections
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
its garbage collector deletes the route).

Theory of operation: two sockets, so that an overflow never stops or corrupts the role
--------------------------------------------------------------------------------------
The *event socket* is subscribed to the groups and never sends. A dump runs on a *dump
socket* of its own (no groups; a new one per dump, closed when it ends, also an internal
wsi of the loop), so its replies never share a queue with events and a dump that gets no
answer is abandoned with its socket.

The kernel queues every event on the event socket until the queue is full; then it drops
events (all of them) until the queue has been read empty, and the next read reports
ENOBUFS before the queued, older, events. So the events read after an empty read and
before the next ENOBUFS are complete and in order. A dump started after that point, with
every event read since replayed in order over it, is the kernel's state: an event says
what an object *is* (or that it is gone), so one the dump already shows changes nothing,
and the last event about an object is its state now (what a replayed event flushes
silently, e.g. a link's routes on link down, was re-added since by events that follow
it). Events queued before the loss are dropped unapplied: replaying them is what left
stale routes behind (an add whose delete was lost).

===========  ========================  ==============  ================================
phase        event socket's records    dump socket     next
===========  ========================  ==============  ================================
LIVE         applied at once           none            ENOBUFS: DRAINING
DRAINING     read and dropped          none            empty read: DUMPING
DUMPING      queued                    the steps       last DONE: REPLAYING
REPLAYING    queued                    none            queue replayed onto the dump:
                                                       SWAPPING (cold plug: LIVE)
SWAPPING     queued                    none            table swapped: CATCHING_UP
CATCHING_UP  queued                    none            queue applied: LIVE
===========  ========================  ==============  ================================

ENOBUFS in any phase but LIVE also leads to DRAINING (the dump is abandoned, the queue
dropped). In DUMPING an interrupted dump (``NLM_F_DUMP_INTR``), an error on the dump
socket or no answer for :data:`DUMP_TIMEOUT` starts the dump again on a new socket, the
queue kept (it still starts before the new dump). The work per loop pass is bounded in
every phase: :data:`READS_PER_EVENT` event datagrams, :data:`DUMP_READS_PER_PASS` dump
datagrams, :data:`REPLAY_SLICE` queued records, ``RESYNC_SLICE`` prefixes of the swap
(:meth:`~lwspy.net.route.RouteTable.resync_slices`); a phase with work left goes on in
the next pass. The cold plug's dump fills the live table itself; a later dump fills a
fresh table, swapped in at the end with unchanged routes keeping their ids, so only what
changed is re-checked and announced.
"""

from __future__ import annotations

import enum
import errno
import gc
import ipaddress
import itertools
import socket
from collections import deque
from collections.abc import Iterator
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
    RTM_DELROUTE,
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
from lwspy.net.route import NOT_ROUTABLE, RESYNC_SLICE, NexthopChange, RouteDiff, RouteTable
from lwspy.system.smd import SmdClass
from lwspy.system.state import SystemState

if TYPE_CHECKING:
    from lwspy.core.context import Context

__all__ = [
    "COLDPLUG_TIMEOUT",
    "DUMP_TIMEOUT",
    "NETLINK",
    "NETLINK_DUMP",
    "NetlinkDumpRole",
    "NetlinkRole",
    "RouteWatcher",
    "open_netlink",
]

COLDPLUG_TIMEOUT = 5.0
"""Seconds the system state waits at IFACE_COLDPLUG for the dumps before going on."""

DUMP_TIMEOUT = 3.0
"""Seconds a dump may go without any answer before it is started again on a new socket."""

RCVBUF = 8 << 20
"""The event socket's receive buffer (room for a burst of changes; a dump socket needs no
more than the default: the kernel makes its next datagram when one has been read)."""

READS_PER_EVENT = 512
"""The most event datagrams read per pass, so a storm of changes cannot starve other fds."""

DUMP_READS_PER_PASS = 16
"""The most dump datagrams read per pass (about 8,000 routes, ~15 ms of decoding)."""

DRAIN_READS_PER_PASS = 4096
"""The most datagrams dropped per pass while draining after ENOBUFS (no decoding)."""

REPLAY_SLICE = 2048
"""The most queued event records replayed (or applied) per pass after a dump."""

RETRY_DELAY = 0.05
"""Seconds before a refused dump request is sent again."""

_DUMP_STEPS: tuple[int, ...] = (RTM_GETLINK, RTM_GETADDR, RTM_GETNEXTHOP, RTM_GETROUTE)
"""What a dump asks for, in order (one request each, ``AF_UNSPEC``); a step is one entry.
Nexthop objects come before the routes that use them."""

_OPTIONAL_STEPS: frozenset[int] = frozenset((RTM_GETNEXTHOP,))
"""Steps a kernel may refuse (before 5.3 it has no nexthop objects): the dump goes on
without them instead of asking again."""

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


def open_netlink(groups: int = RTMGRP_SUBSCRIBE) -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket bound to ``groups`` (default: the route,
    address and link groups, joined to the nexthop group too, with a large receive
    buffer; 0: a dump socket, in no group)."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
    )
    try:
        if groups:
            try:  # root may exceed rmem_max; others get what the sysctl allows
                sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, groups))
        if groups:
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


class Phase(enum.Enum):
    """How the role follows the kernel just now (see the module docstring's table)."""

    LIVE = "live"
    DRAINING = "draining"
    DUMPING = "dumping"
    REPLAYING = "replaying"
    SWAPPING = "swapping"
    CATCHING_UP = "catching up"


@dataclass(slots=True)
class _Dump:
    """A dump in progress (the cold plug's, or one after ENOBUFS) and what it found."""

    initial: bool  # the cold plug's: it fills the live table itself
    wsi: Wsi | None  # the dump socket's (None: it could not be opened; retried)
    pid: int = 0  # the dump socket's port id: its replies carry it
    seq: int = 0
    step: int = 0
    links: dict[int, LinkMsg] = field(default_factory=dict)
    addrs: dict[_AddrKey, AddrMsg] = field(default_factory=dict)
    routes: RouteTable = field(default_factory=RouteTable)


class NetlinkRole(InternalRole):
    """Reads the event socket; the watcher in ``wsi.user`` does the rest."""

    name = "netlink"

    def on_readable(self, wsi: Wsi) -> None:
        watcher = wsi.user
        assert isinstance(watcher, RouteWatcher)
        watcher.readable()


class NetlinkDumpRole(InternalRole):
    """Reads a dump socket (one per dump); the watcher in ``wsi.user`` does the rest."""

    name = "netlink-dump"

    def on_readable(self, wsi: Wsi) -> None:
        watcher = wsi.user
        assert isinstance(watcher, RouteWatcher)
        watcher.dump_readable(wsi)


NETLINK = NetlinkRole()
NETLINK_DUMP = NetlinkDumpRole()


class RouteWatcher:
    """Follows the kernel's links, addresses and routes; culls connections they strand.

    Made by the Context when netlink is on; ``ctx.routes`` is its :attr:`table`.
    """

    __slots__ = (
        "_coldplug_timer",
        "_deadlines",
        "_dump",
        "_dump_timer",
        "_early",
        "_expiry_timer",
        "_gc_held",
        "_keys",
        "_query",
        "_queue",
        "_resync",
        "_retry",
        "_seq",
        "_synced",
        "_unnotify",
        "_work",
        "addrs",
        "by_local",
        "by_route",
        "coldplug_done",
        "ctx",
        "links",
        "local_count",
        "phase",
        "sock",
        "stats",
        "table",
        "wsi",
    )

    def __init__(self, ctx: Context, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock  # the event socket (see the module docstring)
        self.table = RouteTable()
        self.links: dict[int, LinkMsg] = {}
        self.addrs: dict[_AddrKey, AddrMsg] = {}
        self.local_count: dict[str, int] = {}
        self.by_route: dict[int, set[Wsi]] = {}
        self.by_local: dict[str, set[Wsi]] = {}
        self.coldplug_done = False
        self.phase = Phase.DUMPING
        self.stats = {
            "batches": 0,
            "rechecked": 0,
            "culled": 0,
            "resyncs": 0,
            "enobufs": 0,
            "dumps": 0,
            "replayed": 0,
        }
        self._early: set[Wsi] = set()  # connections made before the table was known
        self._keys: dict[Wsi, tuple[_Ip, str]] = {}  # tracked wsi -> (peer, local address)
        self._seq = itertools.count(1)
        self._dump: _Dump | None = None
        self._synced = False  # the live table has been filled by a dump
        self._gc_held = False  # this role disabled the cyclic collector while a dump flows
        self._queue: deque[NlRecord] = deque()  # events read while they cannot be applied
        self._resync: Iterator[RouteDiff | None] | None = None
        self.wsi = self._internal_wsi(sock, NETLINK)
        self._unnotify = ctx.system.register_notifier(self._hold_coldplug)
        self._coldplug_timer = Sul(ctx.pt.suls, self._coldplug_timeout)
        self._coldplug_timer.schedule(COLDPLUG_TIMEOUT)
        self._retry = Sul(ctx.pt.suls, self._send_dump_step)
        self._dump_timer = Sul(ctx.pt.suls, self._dump_timeout)
        self._work = Sul(ctx.pt.suls, self._advance)
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
        self._start_dump()

    def _internal_wsi(self, sock: socket.socket, role: InternalRole) -> Wsi:
        wsi = Wsi(self.ctx, role, None, INTERNAL, sock)
        wsi.user = self
        wsi.state = WsiState.ESTABLISHED
        self.ctx.pt.add(wsi, EV_READ)
        return wsi

    def close(self) -> None:
        """Release the sockets and the timers (the context is going away)."""
        for sul in (
            self._coldplug_timer,
            self._retry,
            self._dump_timer,
            self._work,
            self._expiry_timer,
        ):
            sul.cancel()
        self._unnotify()
        self._close_dump_socket()
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

    # -- dumps (see the module docstring) -------------------------------------------

    def _start_dump(self) -> None:
        """Dump everything on a new dump socket; events are queued until it is in."""
        self._close_dump_socket()
        self._retry.cancel()
        self._resync = None
        self.phase = Phase.DUMPING
        self.stats["dumps"] += 1
        initial = not self._synced
        if initial:  # the cold plug fills the live table itself: ctx.routes stays one object
            self.table.clear()
        try:
            sock = open_netlink(0)
        except OSError as e:
            log.error("lwspy netlink: no socket for a dump (%s); trying again", e)
            self._dump = _Dump(initial, None)
            self._dump_timer.schedule(DUMP_TIMEOUT)
            return
        wsi = self._internal_wsi(sock, NETLINK_DUMP)
        dump = _Dump(initial, wsi, pid=sock.getsockname()[0])
        if initial:
            dump.routes = self.table
        self._dump = dump
        self._dump_timer.schedule(DUMP_TIMEOUT)
        self._send_dump_step()

    def _close_dump_socket(self) -> None:
        self._release_gc()
        dump = self._dump
        if dump is not None and dump.wsi is not None:
            dump.wsi._close_now("dump over")
            dump.wsi = None

    def _send_dump_step(self) -> None:
        dump = self._dump
        if dump is None or dump.wsi is None or dump.wsi.sock is None:
            return
        dump.seq = next(self._seq)
        try:
            dump.wsi.sock.send(dump_request(_DUMP_STEPS[dump.step], AF_UNSPEC, dump.seq))
        except OSError as e:  # the kernel could not take the request now: try again
            log.debug("lwspy netlink: dump request failed (%s); retrying", e)
            self._retry.schedule(RETRY_DELAY)

    def _dump_timeout(self) -> None:
        if self.phase is Phase.DUMPING:
            log.warning("lwspy netlink: no dump answer in %.0f s; dumping again", DUMP_TIMEOUT)
            self._start_dump()

    def dump_readable(self, wsi: Wsi) -> None:
        """Read a slice of the dump (at most :data:`DUMP_READS_PER_PASS` datagrams)."""
        dump = self._dump
        sock = wsi.sock
        if dump is None or dump.wsi is not wsi or sock is None:  # pragma: no cover - closed
            return
        # A dump makes one tuple per route: 100,000 of them would set off the cyclic
        # collector dozens of times for nothing (they hold no cycles). Paused while the
        # dump flows (across passes: a collection between slices would walk them all
        # again), resumed when it ends or has nothing more to give for now.
        if not self._gc_held and gc.isenabled():
            gc.disable()
            self._gc_held = True
        flowing = True
        try:
            for _ in range(DUMP_READS_PER_PASS):
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    flowing = False
                    break
                except OSError as e:  # the kernel could not go on with it: a new socket
                    log.warning("lwspy netlink: dump failed (%s); dumping again", e)
                    self._close_dump_socket()
                    self._dump_timer.schedule(RETRY_DELAY)
                    return
                for rec in decode(data):
                    if self._dump_reply(dump, rec):
                        return  # the dump ended, or started over
            self._dump_timer.schedule(DUMP_TIMEOUT)  # it answers: the timeout starts again
        finally:
            if not flowing:
                self._release_gc()

    def _release_gc(self) -> None:
        if self._gc_held:
            self._gc_held = False
            gc.enable()

    def _dump_reply(self, dump: _Dump, rec: NlRecord) -> bool:
        """Take one record of a dump; True when the dump ended or started over."""
        if rec.seq != dump.seq or rec.pid != dump.pid:
            return False  # not an answer to the current step
        if isinstance(rec, RouteMsg):
            dump.routes.load((rec,), None if dump.initial else self.table)
        elif isinstance(rec, LinkMsg):
            self._link(rec, dump, _Batch())
        elif isinstance(rec, AddrMsg):
            self._addr(rec, dump, _Batch())
        elif isinstance(rec, NexthopMsg):
            self._nexthop(rec, dump, _Batch())
        elif isinstance(rec, DoneMsg):
            if rec.interrupted:  # the kernel's tables changed under it: take it again
                log.debug("lwspy netlink: dump step %d interrupted; dumping again", dump.step)
                self._start_dump()
                return True
            return self._step_done(dump)
        elif isinstance(rec, ErrorMsg) and rec.errno:
            if _DUMP_STEPS[dump.step] in _OPTIONAL_STEPS:  # e.g. a kernel without nexthops
                log.debug("lwspy netlink: dump step refused (errno %d); skipped", rec.errno)
                return self._step_done(dump)
            log.debug("lwspy netlink: dump step refused (errno %d); retrying", rec.errno)
            self._retry.schedule(RETRY_DELAY)
        return False

    def _step_done(self, dump: _Dump) -> bool:
        """Go on to the next dump step; True when that was the last (the dump ended)."""
        dump.step += 1
        if dump.step < len(_DUMP_STEPS):
            self._send_dump_step()
            return False
        self._close_dump_socket()
        self._dump_timer.cancel()
        self.phase = Phase.REPLAYING
        self._work.schedule(0)
        return True

    def _advance(self) -> None:
        """One slice of the work after a dump (the phases REPLAYING, SWAPPING,
        CATCHING_UP); scheduled again for the next pass while work is left."""
        phase = self.phase
        dump = self._dump
        if phase is Phase.REPLAYING and dump is not None:
            self._replay(_Batch())  # onto the dump: nothing to announce or cull
            if self._queue:
                self._work.schedule(0)
            elif dump.initial:
                self._adopt(dump)
                self.phase = Phase.LIVE
                self._expiries(_Batch())  # cold plug: no SMD, no culling
                if self.coldplug_done:  # it came after the timeout: connections since then
                    self._retrack()  # were looked up in an empty table
                else:
                    self._coldplug_finished()
            else:
                self._resync = self.table.resync_slices(dump.routes, RESYNC_SLICE)
                self.phase = Phase.SWAPPING
                self._work.schedule(0)
        elif phase is Phase.SWAPPING and dump is not None and self._resync is not None:
            try:
                delta = next(self._resync)
            except RuntimeError:  # the live table changed under the swap: compare again
                self._resync = self.table.resync_slices(dump.routes, RESYNC_SLICE)
                delta = None
            if delta is None:
                self._work.schedule(0)
                return
            self._resync = None
            self.stats["resyncs"] += 1
            old_locals = set(self.local_count)
            self._adopt(dump)
            batch = _Batch(delta.added, delta.removed, old_locals - set(self.local_count))
            self._expiries(batch)
            self._settle(batch)
            self.phase = Phase.CATCHING_UP
            self._work.schedule(0)
        elif phase is Phase.CATCHING_UP:
            batch = _Batch()
            self._replay(batch)  # onto the live state: culls and SMD as usual
            self._expiries(batch)
            self._settle(batch)
            if self._queue:
                self._work.schedule(0)
            else:
                self.phase = Phase.LIVE

    def _replay(self, batch: _Batch) -> None:
        """Apply a slice of the queued events, oldest first (onto the dump's state while
        there is one, else onto the live state). A delete of a route the table does not
        hold is one the dump already shows: it must change nothing, where a live delete
        may take another route of its key."""
        queue = self._queue
        table = self.table if self._dump is None else self._dump.routes
        n = min(len(queue), REPLAY_SLICE)
        self.stats["replayed"] += n
        for _ in range(n):
            rec = queue.popleft()
            if (
                type(rec) is RouteMsg
                and rec.type == RTM_DELROUTE
                and not all(map(table.holds, rec.routes))
            ):
                rec = rec._replace(routes=tuple(filter(table.holds, rec.routes)))
            self._record(rec, batch)

    def _adopt(self, dump: _Dump) -> None:
        """Make the dump's links and addresses (its routes are in the table) the live ones."""
        self._dump = None
        self._synced = True
        self.links = dump.links
        self.addrs = dump.addrs
        self.local_count = _count_locals(dump.addrs)

    # -- events --------------------------------------------------------------------------

    def readable(self) -> None:
        """Read the event socket: apply what came (or queue it, or drop it: see the
        phases), then settle the batch once."""
        if self.phase is Phase.DRAINING:
            self._drain()
            return
        batch = _Batch()
        self._read(self.sock, batch)
        if self.phase is Phase.LIVE:  # else the table being dumped may be half there
            self._expiries(batch)
        self._settle(batch)

    def _read(self, sock: socket.socket, batch: _Batch) -> None:
        for _ in range(READS_PER_EVENT):
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._overflow()
                    return
                log.error("lwspy netlink: recv failed: %s", e)
                break
            if self.phase is Phase.LIVE:
                for rec in decode(data):
                    self._record(rec, batch)
            else:
                self._queue.extend(decode(data))

    def _overflow(self) -> None:
        """The kernel dropped events (ENOBUFS): what the event socket still holds is older
        than the loss. Drop it, and the dump and queue in progress, then dump again."""
        self.stats["enobufs"] += 1
        log.warning("lwspy netlink: events lost (ENOBUFS); dumping again")
        self._close_dump_socket()
        self._dump_timer.cancel()
        self._retry.cancel()
        self._work.cancel()
        self._resync = None
        self._queue.clear()
        self._dump = None
        self.phase = Phase.DRAINING
        self._drain()

    def _drain(self) -> None:
        """Drop what the event socket holds; at the first empty read, dump again."""
        sock = self.sock
        for _ in range(DRAIN_READS_PER_PASS):
            try:
                sock.recv(1 << 16)
            except BlockingIOError:
                self._start_dump()
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # more was lost meanwhile: drain on
                    self.stats["enobufs"] += 1
                    continue
                log.error("lwspy netlink: recv failed: %s", e)
                return

    def _record(self, rec: NlRecord, batch: _Batch) -> None:
        """Apply one event: to the live state, or, while a dump is being brought up to date
        (REPLAYING), to the dump's."""
        dump = self._dump
        if type(rec) is RouteMsg:
            if dump is not None:
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
