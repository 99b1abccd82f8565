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

The table decides only where it is the kernel's whole decision: the family has just the
default rules, no source-specific route, and the connection is not bound to a device.
For the others the kernel is asked (:func:`probe`) about the connections a change could
affect. Rules are followed on a second socket (the policy socket: a rule dump, then the
rule groups; while the kernel decides for some connection, also every table's routes,
links and addresses). Connections are also indexed by peer address, sorted, so the ones
a new blocking prefix covers are found in O(log n + matches).

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

import bisect
import enum
import errno
import gc
import ipaddress
import itertools
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lwspy.core.client import fill_paths, forget_paths
from lwspy.core.log import INFO, log
from lwspy.core.protocol import INTERNAL
from lwspy.core.role import InternalRole
from lwspy.core.sul import Sul
from lwspy.core.wsi import EV_READ, Wsi, WsiState
from lwspy.net.nlmsg import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    IFF_LOWER_UP,
    IFF_RUNNING,
    NLM_F_REPLACE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
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
    RTN_THROW,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV6_ROUTE,
    RTNLGRP_LINK,
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
    flow_route_request,
)
from lwspy.net.route import (
    NOT_ROUTABLE,
    RESYNC_SLICE,
    NexthopChange,
    RouteDiff,
    RouteTable,
    nh_paths,
)
from lwspy.net.rule import RTMGRP_RULES, RuleMsg, RuleSet, decode_rules, rule_dump_request
from lwspy.system.smd import SmdClass
from lwspy.system.state import SystemState

if TYPE_CHECKING:
    from lwspy.core.context import Context
    from lwspy.net.cao import Cao

__all__ = [
    "COLDPLUG_TIMEOUT",
    "DUMP_TIMEOUT",
    "NETLINK",
    "NETLINK_DUMP",
    "POLICY",
    "NetlinkDumpRole",
    "NetlinkRole",
    "PolicyRole",
    "RouteWatcher",
    "open_netlink",
    "probe",
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

EARLY_CAOS = 4096
"""The most connect attempts kept to be given their path when the cold plug's table is
known (the newest; a table that never comes keeps no more)."""

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
    links_down: list[int] = field(default_factory=list)  # down or deleted
    # Nexthop objects went or changed: routes of other tables over them may have gone
    # silently, so the connections the kernel decides for are asked about.
    nexthops: bool = False


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


class PolicyRole(InternalRole):
    """Reads the policy socket (rules, and every table's changes while they matter)."""

    name = "netlink-policy"

    def on_readable(self, wsi: Wsi) -> None:
        watcher = wsi.user
        assert isinstance(watcher, RouteWatcher)
        watcher.policy_readable()


POLICY = PolicyRole()

PROBES_PER_PASS = 1024
"""The most connections asked about per loop pass (about 10 ms); the rest go next pass."""

SO_BINDTOIFINDEX = 62  # linux/socket.h; getsockopt gives sk_bound_dev_if (0: not bound)
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
# Groups the policy socket joins while the kernel's decision needs every table and link.
_WATCH_GROUPS = (
    RTNLGRP_LINK,
    RTNLGRP_IPV4_IFADDR,
    RTNLGRP_IPV6_IFADDR,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_IPV6_ROUTE,
)
_RULE_RECORDS = frozenset((32, 33, 2, 3))  # RTM_NEWRULE, RTM_DELRULE, NLMSG_ERROR, NLMSG_DONE
_MSG_TYPE = struct.Struct("=4xH")
_BITS = {AF_INET: 32, AF_INET6: 128}
# What a datagram connect(2) says when the kernel has no usable route (blackhole gives
# EINVAL, prohibit EACCES, unreachable EHOSTUNREACH, no route ENETUNREACH).
_NO_ROUTE = frozenset(
    (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EINVAL,
        errno.EACCES,
        errno.EPERM,
        errno.ENODEV,
        errno.ENETDOWN,
    )
)


@dataclass(slots=True)
class _Conn:
    """What the watcher knows of a tracked connection."""

    peer: _Ip
    family: int  # of the peer (an IPv4-mapped peer is IPv4)
    num: int  # the peer as an integer, for the peer index
    local: str
    bound: int  # the ifindex of SO_BINDTODEVICE, 0 if not bound
    probe: bool  # decided by asking the kernel, not by the table


class _PeerIndex:
    """Tracked connections by peer address, sorted per family: the connections a prefix
    covers are found by bisecting its range, in O(log n + matches)."""

    __slots__ = ("at", "nums")

    def __init__(self) -> None:
        self.nums: dict[int, list[int]] = {AF_INET: [], AF_INET6: []}  # distinct, sorted
        self.at: dict[tuple[int, int], set[Wsi]] = {}

    def add(self, conn: _Conn, wsi: Wsi) -> None:
        """Index ``wsi`` under its peer."""
        key = (conn.family, conn.num)
        users = self.at.get(key)
        if users is None:
            users = self.at[key] = set()
            bisect.insort(self.nums[conn.family], conn.num)
        users.add(wsi)

    def discard(self, conn: _Conn, wsi: Wsi) -> None:
        """Forget ``wsi`` (and its peer, when it was the last connection to it)."""
        key = (conn.family, conn.num)
        users = self.at.get(key)
        if users is None:
            return
        users.discard(wsi)
        if not users:
            del self.at[key]
            nums = self.nums[conn.family]
            del nums[bisect.bisect_left(nums, conn.num)]

    def covered(self, family: int, dst: int, dst_len: int) -> list[Wsi]:
        """The connections whose peer lies in ``dst/dst_len`` (a list: safe to cull from)."""
        nums = self.nums.get(family)
        if not nums:
            return []
        last = dst | ((1 << (_BITS[family] - dst_len)) - 1)
        i = bisect.bisect_left(nums, dst)
        out: list[Wsi] = []
        at = self.at
        while i < len(nums) and nums[i] <= last:
            out.extend(at[(family, nums[i])])
            i += 1
        return out


def _bound_ifindex(wsi: Wsi) -> int:
    """The interface a connection's socket is bound to (SO_BINDTODEVICE), 0 if none."""
    sock = wsi.sock
    if sock is None:
        return 0
    try:
        return sock.getsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX)
    except OSError:  # closed under us, or a kernel before 5.0: treat as not bound
        return 0


_ProbeCache = dict[tuple[object, ...], socket.socket]
PROBE_SOCKETS = 16
"""Bound datagram sockets kept for asking about unbound connections, one per local
address (a connect on a kept socket costs about 1 us, a fresh socket about 9 us)."""


def _flow(sock: socket.socket) -> tuple[Any, Any, int] | None:
    """A connected socket's flow: its local and peer names and the ifindex it is bound to
    (0: none); None when it cannot say (reset, closed: nothing to ask the kernel about)."""
    try:
        return (
            sock.getsockname(),
            sock.getpeername(),
            sock.getsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX),
        )
    except OSError as e:
        log.debug("lwspy netlink: cannot ask about %r: %s", sock, e)
        return None


def probe(wsi: Wsi, kept: _ProbeCache | None = None) -> str | None:
    """Ask the kernel whether it still routes ``wsi``'s connection: the close reason
    ("route lost", "source address gone"), or None to keep it.

    The question is a datagram ``connect(2)`` made like the connection: same family, same
    SO_BINDTODEVICE, bound to its local address, to its peer address and port. That runs
    the kernel's own output route lookup for the connection's flow, with every rule,
    table, source-specific route and device binding applied, and sends nothing.
    (``RTM_GETROUTE`` cannot say it: with a source and a device, IPv6 answers with a route
    over another device where the bound socket itself gets ENETUNREACH.) Anything that
    is not the kernel's no (no fds left, a socket already reset) keeps the connection.

    With ``kept``, the socket for an unbound connection is taken from it (and put in it):
    the caller empties it when a local address goes.
    """
    sock = wsi.sock
    flow = _flow(sock) if sock is not None else None
    if sock is None or flow is None:
        return None
    local, peer, bound = flow
    key = None if bound or kept is None else (sock.family, local[0], *local[3:])
    udp = kept.get(key) if kept is not None and key is not None else None
    if udp is None:
        try:
            udp = socket.socket(sock.family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        except OSError as e:
            log.debug("lwspy netlink: cannot ask about %r: %s", wsi, e)
            return None
        try:
            if bound:
                udp.setsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX, bound)
            udp.bind((local[0], 0, *local[2:]))
        except OSError as e:
            udp.close()
            if e.errno == errno.EADDRNOTAVAIL:
                return "source address gone"
            return "route lost" if e.errno == errno.ENODEV else None
        if kept is not None and key is not None:
            if len(kept) >= PROBE_SOCKETS:
                forget_probe_sockets(kept)
            kept[key] = udp
    try:
        udp.connect(peer)
    except OSError as e:
        return "route lost" if e.errno in _NO_ROUTE else None
    finally:
        if key is None:
            udp.close()
    return None


def forget_probe_sockets(kept: _ProbeCache) -> None:
    """Close and forget the kept probe sockets."""
    for udp in kept.values():
        udp.close()
    kept.clear()


def _always(cao: Cao) -> bool:
    """Every early attempt is stale (events were lost)."""
    return True


def _covers(route: Route, cao: Cao) -> bool:
    """Whether ``route``'s prefix holds the address ``cao`` connected to."""
    if route.family != cao.family:
        return False
    addr = int(ipaddress.ip_address(cao.address.partition("%")[0]))
    shift = (32 if route.family == AF_INET else 128) - route.dst_len
    return addr >> shift == route.dst_num >> shift


class RouteWatcher:
    """Follows the kernel's links, addresses and routes; culls connections they strand.

    Made by the Context when netlink is on; ``ctx.routes`` is its :attr:`table`.
    """

    __slots__ = (
        "_bound",
        "_coldplug_timer",
        "_deadlines",
        "_dump",
        "_dump_timer",
        "_early",
        "_expiry_timer",
        "_fast",
        "_gc_held",
        "_keys",
        "_keys",
        "_orphans",
        "_peers",
        "_pid",
        "_policy_pid",
        "_probe_socks",
        "_probe_sul",
        "_probes",
        "_probing",
        "_query",
        "_queue",
        "_resync",
        "_retry",
        "_rule_dump",
        "_rule_retry",
        "_rule_seq",
        "_seq",
        "_sourced",
        "_synced",
        "_unhook",
        "_unnotify",
        "_unnotify",
        "_watching",
        "_work",
        "addrs",
        "by_local",
        "by_route",
        "coldplug_done",
        "ctx",
        "early_caos",
        "links",
        "local_count",
        "phase",
        "policy_sock",
        "policy_wsi",
        "rules",
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
            "probed": 0,
            "culled": 0,
            "resyncs": 0,
            "enobufs": 0,
            "dumps": 0,
            "replayed": 0,
        }
        self._early: set[Wsi] = set()  # connections made before the table was known
        # Connect attempts started before the table was known (client.py adds them): given
        # their path when it is (fill_paths).
        self.early_caos: deque[Cao] = deque(maxlen=EARLY_CAOS)
        self._keys: dict[Wsi, _Conn] = {}  # every tracked connection
        self._peers = _PeerIndex()
        self._fast: dict[int, bool] = {}  # family -> the table decides (absent: not known yet)
        self._sourced: dict[int, int] | None = None  # source-specific routes per family
        self._bound = 0  # tracked connections bound to a device
        self._probing = 0  # tracked connections the kernel decides for
        self._probes: dict[Wsi, None] = {}  # connections to ask the kernel about, in order
        # Table-decided connections with no route in tables local and main that the kernel
        # still routes (by table default): followed like the kernel-decided ones.
        self._orphans: set[Wsi] = set()
        self._probe_socks: _ProbeCache = {}
        self._seq = itertools.count(1)
        self._dump: _Dump | None = None
        self._synced = False  # the live table has been filled by a dump
        self._gc_held = False  # this role disabled the cyclic collector while a dump flows
        self._queue: deque[NlRecord] = deque()  # events read while they cannot be applied
        self._resync: Iterator[RouteDiff | None] | None = None
        self.wsi = self._internal_wsi(sock, NETLINK)
        self.rules = RuleSet()
        self._rule_dump: list[RuleMsg] | None = None
        self._rule_seq = 0
        self._watching = False
        self.policy_sock, self.policy_wsi = self._open_policy()
        self._policy_pid = self.policy_sock.getsockname()[0] if self.policy_sock else 0
        self._unnotify = ctx.system.register_notifier(self._hold_coldplug)
        self._unhook = ctx.hooks.subscribe(established=self.track, closed=self.untrack)
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
        self._rule_retry = Sul(ctx.pt.suls, self._send_rule_dump)
        self._probe_sul = Sul(ctx.pt.suls, self._run_probes)
        self._start_dump()
        self._send_rule_dump()

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
        self._rule_retry.cancel()
        self._probe_sul.cancel()
        self._unhook()
        forget_probe_sockets(self._probe_socks)
        if self.policy_wsi is not None:
            self.policy_wsi._close_now("context destroyed")
        self.wsi._close_now("context destroyed")

    @property
    def table_ready(self) -> bool:
        """True once a complete dump has filled :attr:`table` (the cold plug's dump; a
        cold plug that timed out has none yet)."""
        return self._synced

    def ask_path(self, sock: socket.socket) -> tuple[int | None, str | None] | None:
        """The interface and gateway the kernel sends a connected socket's flow by
        (``RTM_GETROUTE`` for its peer, from its local address, out of the device it is
        bound to; answered within the send), or None if it cannot be asked: what a
        connection made before the table is known says of its path."""
        query = self._query
        flow = _flow(sock)
        if query is None or flow is None:
            return None
        local, peer, oif = flow
        family = AF_INET6 if sock.family == socket.AF_INET6 else AF_INET
        if not oif and family == AF_INET6:
            oif = peer[3]  # a link-local peer's scope is its device
        seq = next(self._seq)
        dst = peer[0].partition("%")[0]
        # The kernel's IPv6 lookup holds to the device asked for only without a source
        # (ip6_route_output: RT6_LOOKUP_F_IFACE), as it does for a socket bound to it.
        src = None if oif and family == AF_INET6 else local[0].partition("%")[0]
        try:
            query.send(flow_route_request(family, dst, seq, src, oif))
            for _ in range(_QUERY_READS):  # an answer left from an earlier ask comes first
                for rec in decode(query.recv(1 << 16)):
                    if type(rec) is RouteMsg and rec.seq == seq and rec.routes:
                        route = rec.routes[0]
                        return route.oif, route.gateway
                    if type(rec) is ErrorMsg and rec.seq == seq:
                        return None
        except OSError as e:
            log.debug("lwspy netlink: cannot ask about %s (%s)", dst, e)
        return None

    # -- what the hook point announces ---------------------------------------------------

    def track(self, wsi: Wsi) -> None:
        """Index an established connection by its peer, its local address and (when the
        table decides for it) its route."""
        if wsi.peer is None or wsi.local is None:
            return
        peer = _host(wsi.peer[0])
        if peer.is_loopback:
            return
        if not self.coldplug_done:
            self._early.add(wsi)
            return
        local = str(_host(wsi.local[0]))
        family = AF_INET if peer.version == 4 else AF_INET6
        bound = _bound_ifindex(wsi)
        decided_here = not bound and self._is_fast(family)
        conn = _Conn(peer, family, int(peer), local, bound, not decided_here)
        self._keys[wsi] = conn
        self._peers.add(conn, wsi)
        self.by_local.setdefault(local, set()).add(wsi)
        if bound:
            self._bound += 1
            self._update_watch()
        if conn.probe:
            self._probing += 1
            return
        route = self.table.lookup(peer)
        if route is not None:
            self.by_route.setdefault(route.id, set()).add(wsi)
            wsi._route_id = route.id
        else:
            self._orphans.add(wsi)
            self._update_watch()

    def untrack(self, wsi: Wsi) -> None:
        """Forget a connection (it closed)."""
        self._unroute(wsi)
        conn = self._keys.pop(wsi, None)
        if conn is not None:
            users = self.by_local.get(conn.local)
            if users is not None:
                users.discard(wsi)
                if not users:
                    del self.by_local[conn.local]
            self._peers.discard(conn, wsi)
            self._probes.pop(wsi, None)
            self._probing -= conn.probe
            if conn.bound:
                self._bound -= 1
                self._update_watch()
            if wsi in self._orphans:
                self._orphans.discard(wsi)
                self._update_watch()
        self._early.discard(wsi)

    def _unroute(self, wsi: Wsi) -> None:
        """Take a connection out of the route index."""
        rid = wsi._route_id
        if rid is not None:
            wsi._route_id = None
            users = self.by_route.get(rid)
            if users is not None:
                users.discard(wsi)
                if not users:
                    del self.by_route[rid]

    # -- who decides: the table, or the kernel -------------------------------------------

    def _is_fast(self, family: int) -> bool:
        """True when a lookup in tables local and main is the kernel's whole decision for
        an unbound connection of ``family``: only the default rules, and no
        source-specific route in the table."""
        fast = self._fast.get(family)
        if fast is None:
            fast = self._fast[family] = self._decides(family)
        return fast

    def _decides(self, family: int) -> bool:
        """Work out :meth:`_is_fast` from the rules and the table."""
        if not self.rules.default(family):
            return False
        if self._sourced is None:  # counted once, the first time it matters
            sourced = {AF_INET: 0, AF_INET6: 0}
            for route in self.table:
                if route.src_len:
                    sourced[route.family] = sourced.get(route.family, 0) + 1
            self._sourced = sourced
        return not self._sourced.get(family, 0)

    def _update_modes(self) -> None:
        """Rules or source-specific routes changed: connections of a family whose decider
        changed are indexed again, and every one of them is asked about."""
        self._update_watch()
        if not self.coldplug_done:
            self._fast.clear()
            return
        flipped = set()
        for family in (AF_INET, AF_INET6):
            before = self._fast.get(family)
            now = self._fast[family] = self._decides(family)
            if before is not None and before != now:
                flipped.add(family)
        if flipped:
            for wsi, conn in list(self._keys.items()):
                if conn.family in flipped:
                    self.untrack(wsi)
                    self.track(wsi)
                    self._probes[wsi] = None

    def _update_watch(self) -> None:
        """Follow every table's routes, links and addresses on the policy socket while
        the kernel decides for some connection: non-default rules, or a bound device."""
        want = bool(self._bound or self._orphans) or not (
            self.rules.default(AF_INET) and self.rules.default(AF_INET6)
        )
        if want == self._watching or self.policy_sock is None:
            return
        self._watching = want
        opt = NETLINK_ADD_MEMBERSHIP if want else NETLINK_DROP_MEMBERSHIP
        for group in _WATCH_GROUPS:
            self.policy_sock.setsockopt(SOL_NETLINK, opt, group)

    def _probe_covered(self, family: int, dst: int, dst_len: int) -> None:
        """Queue the kernel-decided connections whose peer ``dst/dst_len`` covers."""
        keys = self._keys
        orphans = self._orphans
        for wsi in self._peers.covered(family, dst, dst_len):
            conn = keys.get(wsi)
            if conn is not None and (conn.probe or wsi in orphans):
                self._probes[wsi] = None

    def _probe_all(self, family: int | None = None, orphans: bool = False) -> None:
        """Queue every kernel-decided connection (of ``family``), and with ``orphans``
        the table-decided ones the kernel routes by a table not kept here."""
        for wsi, conn in self._keys.items():
            if conn.probe and (family is None or conn.family == family):
                self._probes[wsi] = None
        if orphans:
            for wsi in self._orphans:
                self._probes[wsi] = None

    def _run_probes(self) -> None:
        """Ask the kernel about queued connections, :data:`PROBES_PER_PASS` per pass."""
        probes = self._probes
        for _ in range(min(len(probes), PROBES_PER_PASS)):
            wsi = next(iter(probes))
            del probes[wsi]
            if wsi.state >= WsiState.CLOSING:
                continue
            self.stats["probed"] += 1
            reason = probe(wsi, self._probe_socks)
            if reason is not None:
                self._cull(wsi, reason)
        if probes:
            self._probe_sul.schedule(0)

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
        self._fast.clear()
        self._sourced = None
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
                early, self.early_caos = self.early_caos, deque(maxlen=EARLY_CAOS)
                fill_paths(self.ctx.cao_db, self.table, early)
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
            old_nexthops = self.table.nexthops  # the last step puts the dump's in its place
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
            batch.nexthops = self._nexthops_lost(old_nexthops)
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

    def _nexthops_lost(self, before: dict[int, NexthopMsg]) -> bool:
        """Whether a resync took away or changed nexthop objects of ``before`` (events
        about them may have been lost with the overflow)."""
        now = self.table.nexthops
        for nhid, nh in before.items():
            other = now.get(nhid)
            if other is None or nh_paths(other) != nh_paths(nh):
                return True
        return False

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
                recs = decode(data)
                if not self._synced and self.early_caos:
                    self._coldplug_changes(recs)
                self._queue.extend(recs)

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
        if not self._synced:  # what changed since the early attempts started is not known
            self._forget_early(_always)
        self.phase = Phase.DRAINING
        self._drain()

    def _coldplug_changes(self, recs: list[NlRecord]) -> None:
        """Events read during the cold plug are queued and applied to the dump, never
        settled, and the attempts started meanwhile (:attr:`early_caos`) have no route id
        to be forgotten by: a route deleted or replaced forgets those whose address it
        covers (whatever its table: policy routing too), a link down or deleted those over
        it and those whose interface is not known (it may have been theirs)."""
        gone: list[Route] = []
        links: set[int] = set()
        for rec in recs:
            if type(rec) is RouteMsg:
                if rec.type == RTM_DELROUTE or rec.nl_flags & NLM_F_REPLACE:
                    gone.extend(rec.routes)
            elif (
                type(rec) is LinkMsg
                and rec.family != AF_BRIDGE
                and (rec.type == RTM_DELLINK or not rec.up)
            ):
                links.add(rec.index)
        if not gone and not links:
            return

        def stale(cao: Cao) -> bool:
            if links and (cao.ifindex is None or cao.ifindex in links):
                return True
            return any(_covers(route, cao) for route in gone)

        self._forget_early(stale)

    def _forget_early(self, stale: Callable[[Cao], bool]) -> None:
        """Drop the history of the early attempts ``stale`` says took a path now gone (one
        in flight is kept out when it ends); they are not given a path any more."""
        db = self.ctx.cao_db
        keep: deque[Cao] = deque(maxlen=EARLY_CAOS)
        for cao in self.early_caos:
            if stale(cao):
                db.discard(cao)
            else:
                keep.append(cao)
        self.early_caos = keep

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
                if dump is None:
                    batch.links_down.append(index)
                # Link down: the kernel killed its IPv4 paths (all but scope host ones)
                # without a word; its IPv6 routes come as RTM_DELROUTEs.
                removed.extend(table.link_down(index))
            elif rec.up and prev is not None and not prev.up:
                table.link_up(index)
            if not rec.up or not rec.flags & (IFF_RUNNING | IFF_LOWER_UP):
                # Down or no carrier: its nexthop objects are gone (nh_netdev_event).
                self._nh_change(table.flush_nexthops(index), removed, dump, batch)
        elif rec.type == RTM_DELLINK:
            links.pop(index, None)
            if dump is None:
                batch.links_down.append(index)
            self._nh_change(table.flush_nexthops(index), removed, dump, batch)
            removed.extend(table.link_down(index, force=True))
            removed.extend(table.drop_link(index))

    @staticmethod
    def _nh_change(
        change: NexthopChange, removed: list[Route], dump: _Dump | None, batch: _Batch
    ) -> None:
        """Routes a nexthop change took away, or changed under their connections: both are
        looked at again; and (live) the batch notes that nexthop objects changed."""
        removed.extend(change.removed)
        removed.extend(change.changed)
        if change.nexthops and dump is None:
            batch.nexthops = True

    def _nexthop(self, rec: NexthopMsg, dump: _Dump | None, batch: _Batch) -> None:
        table = dump.routes if dump is not None else self.table
        removed = batch.removed if dump is None else []
        self._nh_change(table.apply_nexthop(rec), removed, dump, batch)

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
        if batch.removed or batch.links_down:  # the CAO history of those paths is stale
            forget_paths(self.ctx.cao_db, batch.removed, batch.links_down)
        if batch.nexthops and (self._probing or self._orphans):
            # Routes of other tables over those nexthop objects went (or changed) without
            # a message (IPv4 always, IPv6 under nexthop_compat_mode=0), and the policy
            # socket hears nothing of a carrier loss's flush: ask the kernel.
            self._probe_all(orphans=True)
        if not (batch.added or batch.removed or batch.gone_locals):
            if batch.nexthops:
                self._run_probes()
            return
        self.stats["batches"] += 1
        if batch.gone_locals:  # a kept probe socket must not outlive its address
            forget_probe_sockets(self._probe_socks)
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
        if self._probing or self._orphans:  # ask the kernel about those the change covers
            for route in (*batch.removed, *blocking):
                self._probe_covered(route.family, route.dst_num, route.dst_len)
        if self._orphans and batch.added:
            self._adopt_orphans()
        self._count_sourced(batch)
        self._run_probes()
        smd = self.ctx.smd
        if batch.added:
            smd.post(SmdClass.NETWORK, {"rt": "add"})
        if batch.removed:
            smd.post(SmdClass.NETWORK, {"rt": "del"})
        if any(r.gateway is not None for r in (*batch.added, *batch.removed)):
            smd.post(SmdClass.NETWORK, {"trigger": "cpdcheck", "src": "gw-change"})

    def _adopt_orphans(self) -> None:
        """Routes came: index the connections the table now has a route for."""
        keys = self._keys
        for wsi in list(self._orphans):
            route = self.table.lookup(keys[wsi].peer)
            if route is not None and route.type not in NOT_ROUTABLE:
                self._orphans.discard(wsi)
                self.by_route.setdefault(route.id, set()).add(wsi)
                wsi._route_id = route.id
        self._update_watch()

    def _count_sourced(self, batch: _Batch) -> None:
        """Keep the count of source-specific routes; a family that gains its first or
        loses its last one changes who decides for it."""
        sourced = self._sourced
        if sourced is None:
            return
        before = dict(sourced)
        for route in batch.added:
            if route.src_len:
                sourced[route.family] = sourced.get(route.family, 0) + 1
        for route in batch.removed:
            if route.src_len:
                sourced[route.family] = sourced.get(route.family, 0) - 1
        if any(bool(sourced.get(f)) != bool(n) for f, n in before.items()):
            self._update_modes()

    def _recheck(self, wsi: Wsi) -> None:
        """Look a connection's peer up again: move it to its new route, or cull it."""
        self.stats["rechecked"] += 1
        wsi._route_id = None
        conn = self._keys.get(wsi)
        if conn is None or wsi.state >= WsiState.CLOSING:
            return
        if conn.probe:  # the kernel decides for it (its mode changed meanwhile)
            self._probes[wsi] = None
            return
        route = self.table.lookup(conn.peer)
        if route is None or route.type == RTN_THROW:
            # Tables local and main have nothing for the peer (or throw it on): the default
            # rules still look in table default, which is not kept here. The kernel says.
            self.stats["probed"] += 1
            reason = probe(wsi, self._probe_socks)
            if reason is not None:
                self._cull(wsi, reason)
            else:
                self._orphans.add(wsi)
                self._update_watch()
            return
        if not self.table.forwards(route):
            self._cull(wsi, "route lost")
            return
        self.by_route.setdefault(route.id, set()).add(wsi)
        wsi._route_id = route.id

    def _recheck_covered(self, routes: list[Route]) -> None:
        """New blocking routes: re-check the table-decided connections whose peer they
        cover, found in the sorted peer index (O(log n + matches) per route)."""
        keys = self._keys
        for route in routes:
            for wsi in self._peers.covered(route.family, route.dst_num, route.dst_len):
                conn = keys.get(wsi)
                if conn is not None and not conn.probe and wsi.state < WsiState.CLOSING:
                    self._unroute(wsi)
                    self._recheck(wsi)

    def _cull(self, wsi: Wsi, reason: str) -> None:
        if wsi.state is WsiState.CLOSED:
            return
        self.stats["culled"] += 1
        if log.isEnabledFor(INFO):
            log.info("lwspy netlink: closing %r: %s", wsi, reason)
        wsi._close_now(reason)

    # -- the policy socket: rules, and every table while the kernel decides --------------

    def _open_policy(self) -> tuple[socket.socket | None, Wsi | None]:
        """A second netlink socket, bound to the IPv4 and IPv6 rule groups."""
        try:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
            )
        except OSError as e:
            log.warning("lwspy netlink: no policy socket (%s): the kernel decides every cull", e)
            return None, None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_RULES))
            wsi = Wsi(self.ctx, POLICY, None, INTERNAL, sock)
            wsi.user = self
            wsi.state = WsiState.ESTABLISHED
            self.ctx.pt.add(wsi, EV_READ)
        except BaseException:
            sock.close()
            raise
        return sock, wsi

    def _send_rule_dump(self) -> None:
        if self.policy_sock is None:
            return
        self._rule_seq = next(self._seq)
        self._rule_dump = []
        try:
            self.policy_sock.send(rule_dump_request(self._rule_seq))
        except OSError as e:
            log.debug("lwspy netlink: rule dump request failed (%s); retrying", e)
            self._rule_retry.schedule(0.05)

    def policy_readable(self) -> None:
        """Read the policy socket: rule dumps and events, and (while watching) every
        table's routes, links and addresses; then ask the kernel about what they touch."""
        sock = self.policy_sock
        assert sock is not None
        for _ in range(READS_PER_EVENT):
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # rule or table events lost: ask again
                    self.stats["enobufs"] += 1
                    forget_probe_sockets(self._probe_socks)
                    self._send_rule_dump()
                    self._probe_all()
                    continue
                log.error("lwspy netlink: policy recv failed: %s", e)
                break
            if len(data) >= 6 and _MSG_TYPE.unpack_from(data)[0] in _RULE_RECORDS:
                for rec in decode_rules(data):
                    self._rule_record(rec)
            else:
                for other in decode(data):
                    self._watched(other)
        self._run_probes()

    def _rule_record(self, rec: RuleMsg | DoneMsg | ErrorMsg) -> None:
        if type(rec) is RuleMsg:
            if self._rule_dump is not None:  # the dump's rules and events alike, in order
                self._rule_dump.append(rec)
            elif self.rules.apply(rec):
                self._rules_changed(rec.rule.family)
        elif type(rec) is DoneMsg and rec.seq == self._rule_seq and self._rule_dump is not None:
            if rec.interrupted:
                self._send_rule_dump()
                return
            msgs, self._rule_dump = self._rule_dump, None
            mine = [m for m in msgs if m.seq == self._rule_seq and m.pid == self._policy_pid]
            self.rules.load([m.rule for m in mine])
            # Events during the dump, replayed in order: a rule's last event decides
            # whether it is there, whether or not the dump already had it.
            for m in msgs:
                if m.seq != self._rule_seq or m.pid != self._policy_pid:
                    self.rules.apply(m)
            self._update_modes()
            self._probe_all()
        elif type(rec) is ErrorMsg and rec.seq == self._rule_seq and rec.errno:
            self._rule_retry.schedule(0.05)

    def _rules_changed(self, family: int) -> None:
        """A rule came or went: who decides may change; the kernel's answer may too."""
        self._update_modes()
        self._probe_all(family)

    def _watched(self, rec: NlRecord) -> None:
        """A change seen on the policy socket: queue the kernel-decided connections it
        could strand. Tables main and local come through the batch instead."""
        if type(rec) is RouteMsg:
            for route in rec.routes:
                if route.table not in (RT_TABLE_MAIN, RT_TABLE_LOCAL):
                    self._probe_covered(route.family, route.dst_num, route.dst_len)
        elif type(rec) is LinkMsg:
            if rec.family != AF_BRIDGE and (rec.type == RTM_DELLINK or not rec.up):
                self._probe_all()
        elif type(rec) is AddrMsg and rec.type == RTM_DELADDR:
            forget_probe_sockets(self._probe_socks)
            self._probe_all(rec.family)
