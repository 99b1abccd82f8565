"""Netlink (``NETLINK_ROUTE``) wire codec: bytes in, typed records out.

Sans-I/O: the netlink role reads a datagram (one ``recv`` may hold many messages) and
hands it to :func:`decode`, which returns :class:`RouteMsg`, :class:`LinkMsg`,
:class:`AddrMsg`, :class:`NexthopMsg`, :class:`DoneMsg` and :class:`ErrorMsg` records in
wire order. The
decoder never raises: truncated, oversized or malformed messages are skipped with a
debug log on the ``lwspy`` logger, and messages of types it does not know are ignored.

Layouts are the kernel's (``include/uapi/linux/netlink.h``, ``rtnetlink.h``,
``if_link.h``, ``if_addr.h``, ``nexthop.h``), precompiled once as :class:`struct.Struct`. Routes are
the hot message: a cold plug may dump 100,000 of them, all laid out alike. The first
route message of each layout is walked attribute by attribute; the layout is then
remembered, and a run of messages that have it is decoded a field at a time across the
whole run (see ``_Shape``), which is what makes 100,000 routes a fraction of a second.
Consecutive route messages with the same header come as one :class:`RouteMsg`.

Requests: :func:`dump_request` builds ``RTM_GETLINK`` / ``RTM_GETADDR`` /
``RTM_GETNEXTHOP`` / ``RTM_GETROUTE`` dumps; :data:`RTMGRP_SUBSCRIBE` is the group mask
to ``bind()`` with (nexthop objects, group :data:`RTNLGRP_NEXTHOP`, lie beyond the
32-bit mask: join it with ``NETLINK_ADD_MEMBERSHIP``); :func:`fibmatch_request` asks
the kernel which route it would use for an address, :func:`flow_route_request` which
way it sends a connection's flow.

>>> msgs = decode(dump_request(RTM_GETROUTE, AF_INET, 1))  # a request is no record
>>> msgs
[]
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count, islice, repeat
from operator import and_, itemgetter, ne
from socket import inet_ntop, inet_pton
from typing import Final, Literal, NamedTuple, TypeVar, cast

__all__ = [
    "RTMGRP_SUBSCRIBE",
    "AddrMsg",
    "DoneMsg",
    "ErrorMsg",
    "LinkMsg",
    "NextHop",
    "NexthopMsg",
    "NlRecord",
    "Route",
    "RouteMsg",
    "decode",
    "dump_request",
    "fibmatch_request",
    "flow_route_request",
    "next_route_id",
]

log = logging.getLogger("lwspy")

# Address families as Linux puts them on the wire (not the host's socket module values).
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_BRIDGE: Final = 7
AF_INET6: Final = 10

# nlmsghdr.nlmsg_type: control messages (< 0x10).
NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4
NLMSG_HDRLEN: Final = 16

# nlmsghdr.nlmsg_flags.
NLM_F_REQUEST: Final = 0x1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_ECHO: Final = 0x8
NLM_F_DUMP_INTR: Final = 0x10
NLM_F_DUMP_FILTERED: Final = 0x20
NLM_F_ROOT: Final = 0x100
NLM_F_MATCH: Final = 0x200
NLM_F_ATOMIC: Final = 0x400
NLM_F_DUMP: Final = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE: Final = 0x100
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLM_F_APPEND: Final = 0x800

# rtnetlink message types.
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26
RTM_NEWNEXTHOP: Final = 104
RTM_DELNEXTHOP: Final = 105
RTM_GETNEXTHOP: Final = 106

# Route attributes (enum rtattr_type_t).
RTA_UNSPEC: Final = 0
RTA_DST: Final = 1
RTA_SRC: Final = 2
RTA_IIF: Final = 3
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_PRIORITY: Final = 6
RTA_PREFSRC: Final = 7
RTA_METRICS: Final = 8
RTA_MULTIPATH: Final = 9
RTA_FLOW: Final = 11
RTA_CACHEINFO: Final = 12
RTA_TABLE: Final = 15
RTA_MARK: Final = 16
RTA_VIA: Final = 18
RTA_PREF: Final = 20
RTA_ENCAP_TYPE: Final = 21
RTA_ENCAP: Final = 22
RTA_EXPIRES: Final = 23
RTA_NH_ID: Final = 30

# Route metrics (RTA_METRICS nests RTAX_* attributes: u32 each, but RTAX_CC_ALGO a string).
RTAX_MTU: Final = 2
RTAX_CC_ALGO: Final = 16

# Route types (rtm_type).
RTN_UNSPEC: Final = 0
RTN_UNICAST: Final = 1
RTN_LOCAL: Final = 2
RTN_BROADCAST: Final = 3
RTN_ANYCAST: Final = 4
RTN_MULTICAST: Final = 5
RTN_BLACKHOLE: Final = 6
RTN_UNREACHABLE: Final = 7
RTN_PROHIBIT: Final = 8
RTN_THROW: Final = 9
RTN_NAT: Final = 10
RTN_XRESOLVE: Final = 11

# Route origin (rtm_protocol), the common ones.
RTPROT_UNSPEC: Final = 0
RTPROT_REDIRECT: Final = 1
RTPROT_KERNEL: Final = 2
RTPROT_BOOT: Final = 3
RTPROT_STATIC: Final = 4
RTPROT_RA: Final = 9
RTPROT_DHCP: Final = 16

# Route scope (rtm_scope).
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_SITE: Final = 200
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
RT_SCOPE_NOWHERE: Final = 255

# Routing tables.
RT_TABLE_UNSPEC: Final = 0
RT_TABLE_COMPAT: Final = 252
RT_TABLE_DEFAULT: Final = 253
RT_TABLE_MAIN: Final = 254
RT_TABLE_LOCAL: Final = 255

# rtm_flags.
RTM_F_NOTIFY: Final = 0x100
RTM_F_CLONED: Final = 0x200
RTM_F_FIB_MATCH: Final = 0x2000

# rtnexthop.rtnh_flags.
RTNH_F_DEAD: Final = 0x1
RTNH_F_PERVASIVE: Final = 0x2
RTNH_F_ONLINK: Final = 0x4
RTNH_F_LINKDOWN: Final = 0x10
RTNH_F_IDENTITY: Final = RTNH_F_ONLINK | RTNH_F_PERVASIVE
"""The nexthop flags that make two routes different ones (the kernel's ``fib_nh_match``
ignores the state flags: dead, linkdown, offload, trap)."""

# Nexthop object attributes (enum NHA_*, include/uapi/linux/nexthop.h).
NHA_ID: Final = 1
NHA_GROUP: Final = 2
NHA_GROUP_TYPE: Final = 3
NHA_BLACKHOLE: Final = 4
NHA_OIF: Final = 5
NHA_GATEWAY: Final = 6
NHA_FDB: Final = 11

# Link attributes.
IFLA_UNSPEC: Final = 0
IFLA_ADDRESS: Final = 1
IFLA_BROADCAST: Final = 2
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
IFLA_LINK: Final = 5
IFLA_MASTER: Final = 10
IFLA_OPERSTATE: Final = 16

# Interface flags (ifi_flags).
IFF_UP: Final = 0x1
IFF_BROADCAST: Final = 0x2
IFF_LOOPBACK: Final = 0x8
IFF_POINTOPOINT: Final = 0x10
IFF_RUNNING: Final = 0x40
IFF_NOARP: Final = 0x80
IFF_MULTICAST: Final = 0x1000
IFF_LOWER_UP: Final = 0x10000

# Address attributes.
IFA_UNSPEC: Final = 0
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_LABEL: Final = 3
IFA_BROADCAST: Final = 4
IFA_ANYCAST: Final = 5
IFA_CACHEINFO: Final = 6
IFA_MULTICAST: Final = 7
IFA_FLAGS: Final = 8
IFA_RT_PRIORITY: Final = 9

# Address flags (ifa_flags, and the 32-bit IFA_FLAGS attribute).
IFA_F_SECONDARY: Final = 0x01
IFA_F_TEMPORARY: Final = IFA_F_SECONDARY
IFA_F_NODAD: Final = 0x02
IFA_F_OPTIMISTIC: Final = 0x04
IFA_F_DADFAILED: Final = 0x08
IFA_F_HOMEADDRESS: Final = 0x10
IFA_F_DEPRECATED: Final = 0x20
IFA_F_TENTATIVE: Final = 0x40
IFA_F_PERMANENT: Final = 0x80
IFA_F_MANAGETEMPADDR: Final = 0x100
IFA_F_NOPREFIXROUTE: Final = 0x200

# Multicast groups: RTNLGRP_* for NETLINK_ADD_MEMBERSHIP, RTMGRP_* (1 << (n - 1)) for bind().
RTNLGRP_LINK: Final = 1
RTNLGRP_IPV4_IFADDR: Final = 5
RTNLGRP_IPV4_ROUTE: Final = 7
RTNLGRP_IPV6_IFADDR: Final = 9
RTNLGRP_IPV6_ROUTE: Final = 11
RTNLGRP_NEXTHOP: Final = 32
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV4_ROUTE: Final = 0x40
RTMGRP_IPV6_IFADDR: Final = 0x100
RTMGRP_IPV6_ROUTE: Final = 0x400
RTMGRP_SUBSCRIBE: Final = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
"""The groups the netlink role binds to: links, IPv4/IPv6 addresses, IPv4/IPv6 routes."""

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_LEN_TYPE = struct.Struct("=IH")
_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
_IFINFO = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_I32 = struct.Struct("=i")
_U32 = struct.Struct("=I")
_NLA = struct.Struct("=HH")  # rtattr: len, type
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_VIA_FAMILY = struct.Struct("=H")
_NHMSG = struct.Struct("=BBBxI")  # nhmsg: family, scope, protocol, pad, flags
_NH_GRP = struct.Struct("=IBBH")  # nexthop_grp: id, weight - 1, weight_high, reserved

_HDRLEN: Final = 16
_RTMSG_END: Final = 28  # nlmsghdr + rtmsg
_IFINFO_END: Final = 32
_IFADDR_END: Final = 24
_NHMSG_END: Final = 24
_CACHEINFO_EXPIRES: Final = 8  # rta_cacheinfo.rta_expires: offset in the payload
USER_HZ: Final = 100
"""Clock ticks per second of ``rta_cacheinfo.rta_expires`` (the kernel's ``clock_t``)."""
_ADDR_ATTR_LEN = {AF_INET: 8, AF_INET6: 20}  # rtattr header + address
_MAX_PREFIX = {AF_INET: 32, AF_INET6: 128}
_MASKS = {
    fam: tuple(((1 << bits) - 1) ^ ((1 << (bits - n)) - 1) for n in range(bits + 1))
    for fam, bits in _MAX_PREFIX.items()
}

NextHop = tuple[str | None, int, int, int]
"""One path of a multipath route: ``(gateway or None, oif, weight, flags)``; ``weight``
is ``rtnh_hops + 1`` (as ``ip route`` shows it) and ``flags`` the path's
:data:`RTNH_F_IDENTITY` flags (onlink, pervasive), not its state."""

Metrics = tuple[tuple[int, int | str], ...]
"""``RTA_METRICS`` as ``(RTAX_* type, value)`` pairs in wire order (a string for
``RTAX_CC_ALGO``, an integer for the others), e.g. ``((RTAX_MTU, 1400),)``."""

_NO_NEXTHOPS: tuple[NextHop, ...] = ()
_ADDR_BYTES = {AF_INET: 4, AF_INET6: 16}
# inet_ntop wants the host's constants; Linux's equal the wire values, but say so.
_SOCK_FAMILY = {AF_INET: socket.AF_INET, AF_INET6: socket.AF_INET6}

# Route ids: a process-wide serial taken when a route message is decoded. The route table
# keeps the decoded Route object itself, so the id is stable for the route's life, unique
# across tables, and a replacement (a new message) has a new one.
_serial = count(1)


def next_route_id() -> int:
    """A fresh route id, for a route derived from a decoded one (e.g. a path removed)."""
    return next(_serial)


class Route(NamedTuple):
    """One kernel route (:class:`lwspy.net.route.RouteTable` keeps tables main and local).

    ``dst`` is the destination prefix as text (``"0.0.0.0"`` / ``"::"`` for a default
    route, ``dst_len`` 0) and ``dst_num`` the same address as an integer; ``table`` is
    ``RTA_TABLE`` when present, else ``rtm_table``; ``type`` is ``RTN_*``; ``gateway``,
    ``oif``, ``prefsrc`` are None when absent and ``priority`` (the metric) 0. A multipath
    route lists its paths in ``nexthops`` and takes ``gateway`` and ``oif`` from the first.
    ``id`` is unique per decoded route and stays with the route while it lives.

    What else tells two kernel routes apart: ``nh_flags`` (:data:`RTNH_F_IDENTITY` bits of
    ``rtm_flags``: ``onlink``), ``metrics`` (``mtu``, ``advmss``, ...; see
    :data:`Metrics`) and ``nhid`` (the nexthop object the route uses, ``RTA_NH_ID``; 0:
    none). The fields from ``rtm_flags`` on are state, not identity: ``nh_dead`` has bit
    ``i`` set when path ``i`` is dead (``RTNH_F_DEAD``; bit 0 for a single-path route),
    ``expires`` is the lifetime left when the kernel wrote the message, in seconds (IPv6
    ``RTA_CACHEINFO``; 0.0: none, negative: already expired).

    An immutable, slotted tuple (``__slots__ = ()``): decode builds 100,000 of them in a
    cold plug, and a tuple is several times cheaper to make than a slotted class, and
    can be built from columns without Python code per route.
    """

    family: int
    dst_num: int
    dst_len: int
    table: int
    priority: int
    tos: int
    src: str | None
    src_len: int
    type: int
    gateway: str | None
    oif: int | None
    prefsrc: str | None
    protocol: int
    scope: int
    nexthops: tuple[NextHop, ...]
    nh_flags: int
    metrics: Metrics
    nhid: int
    rtm_flags: int
    nh_dead: int
    expires: float
    id: int

    @property
    def dst(self) -> str:
        """The destination prefix address as text, e.g. ``"198.51.100.0"``."""
        nbytes = _ADDR_BYTES.get(self.family)
        if nbytes is None or not 0 <= self.dst_num < 1 << (8 * nbytes):
            return str(self.dst_num)
        return inet_ntop(_SOCK_FAMILY[self.family], self.dst_num.to_bytes(nbytes, "big"))

    @property
    def oifs(self) -> tuple[int, ...]:
        """Every interface the route leaves by (all nexthops of a multipath route)."""
        if self.nexthops:
            return tuple(nh[1] for nh in self.nexthops)
        return () if self.oif is None else (self.oif,)

    def same_as(self, other: Route) -> bool:
        """True if ``other`` is the same kernel route, whatever its ``id`` and its state
        (``rtm_flags``, ``nh_dead``, ``expires``: flags such as ``RTNH_F_LINKDOWN``
        follow the carrier, not the route)."""
        return self[:_CONTENT_END] == other[:_CONTENT_END]

    def __repr__(self) -> str:
        parts = [f"Route(id={self.id}, {self.dst}/{self.dst_len}"]
        if self.gateway is not None:
            parts.append(f"via {self.gateway}")
        if self.oif is not None:
            parts.append(f"dev {self.oif}")
        if self.nexthops:
            parts.append(f"nexthops {list(self.nexthops)}")
        parts.append(f"metric {self.priority} table {self.table} type {self.type}")
        if self.prefsrc is not None:
            parts.append(f"src {self.prefsrc}")
        if self.tos:
            parts.append(f"tos {self.tos}")
        if self.src_len:
            parts.append(f"from {self.src}/{self.src_len}")
        if self.nhid:
            parts.append(f"nhid {self.nhid}")
        if self.expires:
            parts.append(f"expires {self.expires:g}s")
        return " ".join(parts) + ")"


_CONTENT_END: Final = 18  # Route fields before rtm_flags: what makes it the same route


class RouteMsg(NamedTuple):
    """``RTM_NEWROUTE`` / ``RTM_DELROUTE`` messages: one netlink header and its routes.

    :func:`decode` puts consecutive route messages whose headers are alike into one
    record (a dump's hundreds of routes per datagram become one), ``routes`` in wire
    order; an event is usually one route. ``type`` is the message type, ``nl_flags`` the
    header flags (``NLM_F_REPLACE``, ``NLM_F_APPEND``, ``NLM_F_CREATE`` on events;
    ``NLM_F_MULTI`` in a dump).
    """

    type: int
    nl_flags: int
    seq: int
    pid: int
    routes: tuple[Route, ...]


@dataclass(slots=True)
class LinkMsg:
    """An ``RTM_NEWLINK`` / ``RTM_DELLINK`` message.

    ``flags`` are the interface flags (``IFF_*``), ``up`` is ``IFF_UP``. ``family`` is
    ``AF_UNSPEC`` for the interface itself; bridge port events come with ``AF_BRIDGE``
    (an ``RTM_DELLINK`` of that family means "left the bridge", not "deleted").
    """

    type: int
    nl_flags: int
    seq: int
    pid: int
    family: int
    index: int
    flags: int
    change: int
    ifi_type: int
    name: str | None
    up: bool


@dataclass(slots=True)
class AddrMsg:
    """An ``RTM_NEWADDR`` / ``RTM_DELADDR`` message.

    ``address`` is ``IFA_ADDRESS`` (the peer on a point-to-point link), ``local`` is
    ``IFA_LOCAL`` (the host's own address); each falls back to the other when absent.
    ``flags`` merges ``ifa_flags`` with the 32-bit ``IFA_FLAGS`` attribute (``IFA_F_*``).
    """

    type: int
    nl_flags: int
    seq: int
    pid: int
    family: int
    index: int
    prefixlen: int
    flags: int
    scope: int
    address: str
    local: str
    label: str | None


@dataclass(slots=True)
class NexthopMsg:
    """An ``RTM_NEWNEXTHOP`` / ``RTM_DELNEXTHOP`` message: a nexthop object (``ip
    nexthop``), which routes use by ``nhid``.

    ``id`` is ``NHA_ID``; a plain nexthop has ``oif`` and maybe ``gateway`` (text; an
    IPv4 nexthop may have an IPv6 gateway), a ``blackhole`` one neither, and a group
    lists ``(member id, weight)`` pairs in ``group``. ``flags`` are ``RTNH_F_*``
    (``dead`` is ``RTNH_F_DEAD``); ``fdb`` marks a nexthop for the bridge FDB, which
    routes never use.
    """

    type: int
    nl_flags: int
    seq: int
    pid: int
    family: int
    scope: int
    protocol: int
    flags: int
    id: int
    oif: int | None
    gateway: str | None
    blackhole: bool
    group: tuple[tuple[int, int], ...]
    group_type: int
    fdb: bool

    @property
    def dead(self) -> bool:
        """The kernel marked the nexthop dead (``RTNH_F_DEAD``)."""
        return bool(self.flags & RTNH_F_DEAD)


@dataclass(slots=True)
class DoneMsg:
    """``NLMSG_DONE``: the end of a dump (``error`` is its payload, normally 0)."""

    seq: int
    pid: int
    nl_flags: int
    error: int

    @property
    def interrupted(self) -> bool:
        """The kernel flagged the dump inconsistent (``NLM_F_DUMP_INTR``): take it again."""
        return bool(self.nl_flags & NLM_F_DUMP_INTR)


@dataclass(slots=True)
class ErrorMsg:
    """``NLMSG_ERROR``: the answer to request ``seq``; ``errno`` (positive) 0 is an ACK."""

    seq: int
    pid: int
    errno: int

    @property
    def ack(self) -> bool:
        """True for a positive acknowledgement (error code 0)."""
        return self.errno == 0


NlRecord = RouteMsg | LinkMsg | AddrMsg | NexthopMsg | DoneMsg | ErrorMsg
"""Any record :func:`decode` returns."""

# Gateways and preferred sources repeat across thousands of routes: cache their text.
_ADDR_CACHE: dict[bytes, str] = {}
_ADDR_CACHE_MAX: Final = 4096


def _addr(family: int, raw: bytes) -> str:
    """Text form of a gateway-like address, cached (callers check the length)."""
    text = _ADDR_CACHE.get(raw)
    if text is None:
        if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
            _ADDR_CACHE.clear()
        text = _ADDR_CACHE[raw] = inet_ntop(_SOCK_FAMILY[family], raw)
    return text


def _skip(why: str, mtype: int, off: int) -> None:
    """Debug-log one skipped message (callers guard with ``isEnabledFor``)."""
    log.debug("netlink: skipped message type %d at offset %d: %s", mtype, off, why)


class _Shape:
    """A learnt route message layout, decoded a run at a time, column by column.

    The kernel writes every route of a dump the same way (same attributes, same order,
    same length). Once the first message of a layout has been walked attribute by
    attribute, a run of such messages is read through strided memoryviews: one field of
    every message at once (``view[offset::length]``), checked (length, type, family and
    attribute headers) with one bytes comparison per field, and turned into routes by
    ``map``/``zip`` over those columns. Nothing is made per message but the Route, which
    is what lets a 100,000-route cold plug fit its time budget.
    """

    __slots__ = (
        "checks",
        "expect",
        "family",
        "length",
        "masks",
        "match",
        "maxlen",
        "metrics_len",
        "offsets",
    )

    def __init__(
        self,
        length: int,
        family: int,
        checks: list[tuple[str, int, int]],
        offsets: dict[int, int],
        metrics_len: int = 0,
    ) -> None:
        fmt = ["="]
        pos = 0
        for code, at, _ in checks:  # in offset order
            if at > pos:
                fmt.append(f"{at - pos}x")
            fmt.append(code)
            pos = at + struct.calcsize(code)
        self.match = struct.Struct("".join(fmt)).unpack_from
        self.expect = tuple(want for _, _, want in checks)
        self.checks = [(code, at, struct.pack("=" + code, want)) for code, at, want in checks]
        self.offsets = offsets  # attribute type -> offset of its payload in the message
        self.metrics_len = metrics_len  # RTA_METRICS payload length, if offsets has it
        self.length = length
        self.family = family
        self.masks = _MASKS[family]
        self.maxlen = _MAX_PREFIX[family]

    def matching(self, views: dict[str, memoryview], k: int) -> int:
        """How many of the ``k`` messages in ``views`` have this layout, from the first."""
        m = k
        for code, at, unit in self.checks:
            column = _column(views, code, at, self.length)
            if column.tobytes() != unit * k:
                want = struct.unpack("=" + code, unit)[0]
                m = min(m, list(map(ne, column.tolist(), repeat(want, k))).index(True))
        return m

    def emit(self, region: memoryview, m: int, out: _Out) -> bool:
        """Add the routes of the ``m`` messages in ``region``; False (nothing added) if a
        prefix length is out of range, for the caller to walk them one by one."""
        length = self.length
        views = _views(region)

        def col(code: str, at: int) -> int | list[int]:
            return _uniform(_column(views, code, at, length), m)

        dst_len = col("B", 17)
        src_len = col("B", 18)
        maxlen = self.maxlen
        if _most(dst_len) > maxlen or _most(src_len) > maxlen:
            return False
        offsets = self.offsets
        at = offsets.get(RTA_DST)
        dsts = repeat(0, m) if at is None else self._dsts(views, region, at, dst_len, m)
        at = offsets.get(RTA_TABLE)
        table = col("B", 20) if at is None else col("I", at)
        at = offsets.get(RTA_PRIORITY)
        priority = 0 if at is None else col("I", at)
        at = offsets.get(RTA_OIF)
        oif = None if at is None else col("I", at)
        at = offsets.get(RTA_METRICS)
        metrics: Iterable[Metrics] = repeat(_NO_METRICS, m)
        if at is not None:
            got = self._metrics(region, at, m)
            if got is None:
                return False
            metrics = got
        at = offsets.get(RTA_NH_ID)
        nhid = 0 if at is None else col("I", at)
        at = offsets.get(RTA_CACHEINFO)
        expires = repeat(0.0, m) if at is None else _expires(col("I", at), m)
        rtm_flags = col("I", 24)
        routes = list(
            map(
                tuple.__new__,
                repeat(Route, m),
                zip(
                    repeat(self.family, m),
                    dsts,
                    _each(dst_len, m),
                    _each(table, m),
                    _each(priority, m),
                    _each(col("B", 19), m),  # tos
                    self._texts(views, region, offsets.get(RTA_SRC), m),
                    _each(src_len, m),
                    _each(col("B", 23), m),  # type
                    self._texts(views, region, offsets.get(RTA_GATEWAY), m),
                    _each(oif, m),
                    self._texts(views, region, offsets.get(RTA_PREFSRC), m),
                    _each(col("B", 21), m),  # protocol
                    _each(col("B", 22), m),  # scope
                    repeat(_NO_NEXTHOPS, m),
                    _masked_flags(rtm_flags, RTNH_F_IDENTITY, m),  # nh_flags
                    metrics,
                    _each(nhid, m),
                    _each(rtm_flags, m),
                    _masked_flags(rtm_flags, RTNH_F_DEAD, m),  # nh_dead
                    expires,
                    islice(_serial, m),  # id
                    strict=True,
                ),
            )
        )
        mtype = views["H"][2]
        flags, seq, pid = col("H", 6), col("I", 8), col("I", 12)
        if isinstance(flags, int) and isinstance(seq, int) and isinstance(pid, int):
            out.route((mtype, flags, seq, pid), routes)
        else:
            for route, hdr in zip(
                routes, zip(_each(flags, m), _each(seq, m), _each(pid, m), strict=True), strict=True
            ):
                out.route((mtype, *hdr), (route,))
        return True

    def _metrics(self, region: memoryview, at: int, m: int) -> Iterable[Metrics] | None:
        """The ``RTA_METRICS`` of every message (each distinct payload parsed once), or
        None if one is malformed."""
        size = self.metrics_len
        st = struct.Struct(f"={at}x{size}s{self.length - at - size}x")
        raws = list(map(_FIRST, st.iter_unpack(region)))
        parsed = {raw: _metrics(raw) for raw in set(raws)}
        if None in parsed.values():
            return None
        return map(cast(dict[bytes, Metrics], parsed).__getitem__, raws)

    def _raw16(self, region: memoryview, at: int) -> list[bytes]:
        """The 16-byte field at ``at`` of every message, as bytes."""
        st = struct.Struct(f"={at}x16s{self.length - at - 16}x")
        return list(map(_FIRST, st.iter_unpack(region)))

    def _dsts(
        self,
        views: dict[str, memoryview],
        region: memoryview,
        at: int,
        dst_len: int | list[int],
        m: int,
    ) -> Iterable[int]:
        """Destination addresses as masked integers."""
        masks = self.masks
        if self.family == AF_INET:
            raw = _column(views, "I", at, self.length).tobytes()
            if raw == raw[:4] * m:
                first = int.from_bytes(raw[:4], "big")
                if isinstance(dst_len, int):
                    return repeat(first & masks[dst_len], m)
                return map(and_, repeat(first, m), map(masks.__getitem__, dst_len))
            words = array(_U32_CODE)
            words.frombytes(raw)
            if _LITTLE_ENDIAN:  # pragma: no branch (the test hosts are little-endian)
                words.byteswap()
            nums: Iterable[int] = words.tolist()
        else:
            big: Iterator[Literal["big"]] = repeat("big", m)
            nums = map(int.from_bytes, self._raw16(region, at), big)
        if isinstance(dst_len, int):
            if dst_len == self.maxlen:
                return nums
            return map(and_, nums, repeat(masks[dst_len], m))
        return map(and_, nums, map(masks.__getitem__, dst_len))

    def _texts(
        self, views: dict[str, memoryview], region: memoryview, at: int | None, m: int
    ) -> Iterable[str | None]:
        """A column of addresses (gateway, prefsrc, src) as text, or Nones if absent."""
        if at is None:
            return repeat(None, m)
        family = self.family
        if family == AF_INET:
            col = _uniform(_column(views, "I", at, self.length), m)
            if isinstance(col, int):
                return repeat(_addr(family, _U32.pack(col)), m)
            texts = {word: _addr(family, _U32.pack(word)) for word in set(col)}
            return map(texts.__getitem__, col)
        raws = self._raw16(region, at)
        if raws.count(raws[0]) == m:
            return repeat(_addr(family, raws[0]), m)
        return _texts(family, raws)


def _views(region: memoryview) -> dict[str, memoryview]:
    """Byte, 16-bit and 32-bit views of a run of messages."""
    return {"B": region.cast("B"), "H": region.cast("H"), "I": region.cast("I")}


def _column(views: dict[str, memoryview], code: str, at: int, length: int) -> memoryview:
    """The field at byte offset ``at`` of every message (``length`` bytes apart)."""
    view = views[code]
    size = view.itemsize
    return view[at // size :: length // size]


def _uniform(column: memoryview, m: int) -> int | list[int]:
    """A column's one value if all ``m`` are equal (the usual case in a dump), else all."""
    raw = column.tobytes()
    if raw == raw[: column.itemsize] * m:
        first: int = column[0]
        return first
    values: list[int] = column.tolist()
    return values


def _each(col: _T | Sequence[_T], m: int) -> Iterable[_T]:
    """Iterate a column that may be a single value."""
    if isinstance(col, list):
        return col
    return repeat(cast(_T, col), m)


def _masked_flags(col: int | list[int], mask: int, m: int) -> Iterable[int]:
    """A column of flags ANDed with ``mask``."""
    if isinstance(col, int):
        return repeat(col & mask, m)
    return map(and_, col, repeat(mask, m))


def _expires(col: int | list[int], m: int) -> Iterable[float]:
    """A column of ``rta_expires`` words (signed clock ticks) as seconds."""
    if isinstance(col, int):
        return repeat(_seconds(col), m)
    return map(_seconds, col)


def _seconds(word: int) -> float:
    """A signed 32-bit ``rta_expires`` word, in seconds."""
    return (word - (1 << 32) if word & 0x80000000 else word) / USER_HZ


def _most(col: int | list[int]) -> int:
    """The largest value of a column."""
    return col if isinstance(col, int) else max(col)


def _texts(family: int, raws: list[bytes]) -> Iterator[str]:
    """Text forms of a column of raw addresses (each distinct one converted once)."""
    cache_get = _ADDR_CACHE.get
    texts = {raw: cache_get(raw) or _addr(family, raw) for raw in set(raws)}
    return map(texts.__getitem__, raws)


_T = TypeVar("_T")
_ROUTE_TYPES = frozenset((RTM_NEWROUTE, RTM_DELROUTE))
_SHAPES: dict[int, list[_Shape]] = {}
_SHAPES_PER_LENGTH: Final = 4
_SHAPE_LENGTHS_MAX: Final = 64
# Messages taken at the start of a run; if all match, the rest of the datagram next. So a
# short run costs a short look ahead, and a dump's datagram two passes.
_RUN_FIRST: Final = 64
_FIRST = itemgetter(0)
_LITTLE_ENDIAN: Final = sys.byteorder == "little"
_U32_CODE: Final = "I" if array("I").itemsize == 4 else "L"


def _learn(buf: bytes, off: int, end: int, family: int) -> _Shape | None:
    """Describe the layout of a route message that decoded cleanly, if it has a simple one
    (no multipath, no RTA_VIA, an aligned length)."""
    length = end - off
    if length & 3:
        return None
    checks = [("I", 0, length), ("H", 4, _LEN_TYPE.unpack_from(buf, off)[1]), ("B", 16, family)]
    offsets: dict[int, int] = {}
    metrics_len = 0
    alen_addr = _ADDR_ATTR_LEN[family]
    a = off + _RTMSG_END
    while a < end:
        alen, atype = _NLA.unpack_from(buf, a)
        checks.append(("I", a - off, _U32.unpack_from(buf, a)[0]))
        if atype in (RTA_DST, RTA_GATEWAY, RTA_PREFSRC, RTA_SRC) and alen == alen_addr:
            offsets[atype] = a - off + 4  # a repeated attribute: the last wins, as in _route
        elif atype in (RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_NH_ID) and alen == 8:
            offsets[atype] = a - off + 4
        elif atype == RTA_METRICS:
            offsets[atype] = a - off + 4
            metrics_len = alen - 4
        elif atype == RTA_CACHEINFO:
            offsets[atype] = a - off + 4 + _CACHEINFO_EXPIRES
        elif atype in (RTA_MULTIPATH, RTA_VIA):
            return None
        a += (alen + 3) & ~3
    return _Shape(length, family, checks, offsets, metrics_len)


def _remember(length: int, shape: _Shape) -> None:
    """Put a learnt shape first in line for its message length."""
    shapes = _SHAPES.get(length)
    if shapes is None:
        if len(_SHAPES) >= _SHAPE_LENGTHS_MAX:
            _SHAPES.clear()
        _SHAPES[length] = [shape]
    else:
        shapes.insert(0, shape)
        del shapes[_SHAPES_PER_LENGTH:]


class _Out:
    """The record list being built; consecutive routes with one header share a RouteMsg."""

    __slots__ = ("hdr", "records", "routes")

    def __init__(self) -> None:
        self.records: list[NlRecord] = []
        self.hdr: tuple[int, int, int, int] | None = None
        self.routes: list[Route] = []

    def route(self, hdr: tuple[int, int, int, int], routes: Iterable[Route]) -> None:
        """Add routes under header ``(type, nl_flags, seq, pid)``."""
        if hdr != self.hdr:
            self.flush()
            self.hdr = hdr
        self.routes.extend(routes)

    def add(self, record: NlRecord) -> None:
        """Add any other record."""
        if self.hdr is not None:
            self.flush()
        self.records.append(record)

    def flush(self) -> None:
        """Close the pending RouteMsg, if any."""
        hdr = self.hdr
        if hdr is not None:
            self.records.append(RouteMsg(hdr[0], hdr[1], hdr[2], hdr[3], tuple(self.routes)))
            self.hdr = None
            self.routes = []


def decode(buf: bytes | bytearray | memoryview) -> list[NlRecord]:
    """Decode every netlink message in ``buf`` (one datagram) into records, in order.

    Consecutive route messages with the same header (type, flags, seq, pid: a dump's
    are all alike) come as one :class:`RouteMsg` holding their routes in order.

    Never raises for any input: a message that is truncated, runs past the buffer, has a
    malformed attribute or an address of the wrong size is skipped (debug log); a header
    whose length cannot be trusted ends the walk, since the next message cannot be found.
    Message types other than routes, links, addresses, nexthop objects, DONE and ERROR
    are ignored, and so are attributes the records do not carry.

    >>> decode(b"")
    []
    """
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    mv = memoryview(buf)
    out = _Out()
    len_type = _LEN_TYPE.unpack_from
    debug = log.isEnabledFor(logging.DEBUG)
    n = len(buf)
    off = 0
    while off + _HDRLEN <= n:
        length, mtype = len_type(buf, off)
        end = off + length
        if length < _HDRLEN or end > n:
            if debug:
                _skip(f"bad length {length} with {n - off} bytes left", mtype, off)
            break
        if mtype in _ROUTE_TYPES:
            # A run of alike messages (a dump) goes column-wise; a lone event is cheaper
            # to walk than to set up a run for.
            bulk = n - off >= _RUN_MIN * length
            for sh in _SHAPES.get(length, ()) if bulk else ():
                if sh.match(buf, off) == sh.expect:
                    off = _run(sh, buf, mv, off, out, debug)
                    break
            else:
                rec = _route(buf, off, end)
                if isinstance(rec, str):
                    if debug:
                        _skip(rec, mtype, off)
                else:
                    out.route(rec[0], (rec[1],))
                    shape = _learn(buf, off, end, rec[1].family) if bulk else None
                    if shape is not None:
                        _remember(length, shape)
                off += (length + 3) & ~3
            continue
        decoder = _DECODERS.get(mtype)
        if decoder is not None:
            record = decoder(buf, off, end)
            if isinstance(record, str):
                if debug:
                    _skip(record, mtype, off)
            else:
                out.add(record)
        elif mtype == NLMSG_DONE:
            out.add(_done(buf, off, length))
        elif mtype == NLMSG_ERROR:
            if length < _HDRLEN + 4:
                if debug:
                    _skip("error message too short", mtype, off)
            else:
                out.add(_error(buf, off))
        elif debug and mtype != NLMSG_NOOP:
            _skip("unhandled type", mtype, off)
        off += (length + 3) & ~3
    else:
        if off < n and debug:
            _skip(f"{n - off} trailing bytes", 0, off)
    out.flush()
    return out.records


def _done(buf: bytes, off: int, length: int) -> DoneMsg:
    """The ``NLMSG_DONE`` at ``off`` (``length`` bytes)."""
    _, _, nl_flags, seq, pid = _HDR.unpack_from(buf, off)
    # The payload (an int) is missing in some old kernels' DONE: treat as 0.
    error = _I32.unpack_from(buf, off + _HDRLEN)[0] if length >= _HDRLEN + 4 else 0
    return DoneMsg(seq, pid, nl_flags, error)


def _error(buf: bytes, off: int) -> ErrorMsg:
    """The ``NLMSG_ERROR`` at ``off`` (at least its error code long)."""
    _, _, _, seq, pid = _HDR.unpack_from(buf, off)
    return ErrorMsg(seq, pid, -_I32.unpack_from(buf, off + _HDRLEN)[0])


_RUN_MIN = 8
"""Messages of one length left in a datagram before the column-wise path is worth it."""


def _run(sh: _Shape, buf: bytes, mv: memoryview, off: int, out: _Out, debug: bool) -> int:
    """Decode the run of messages of layout ``sh`` starting at ``off`` (the first one is
    known to match); return the offset after it."""
    n = len(buf)
    length = sh.length
    step = _RUN_FIRST
    while True:
        k = min((n - off) // length, step)
        if k == 0:
            return off
        region = mv[off : off + k * length]
        m = sh.matching(_views(region), k)
        if m == 0:
            return off
        region = region[: m * length]
        if not sh.emit(region, m, out):
            # A prefix length out of range: let the walker say which message is bad.
            for at in range(off, off + m * length, length):
                rec = _route(buf, at, at + length)
                if isinstance(rec, str):
                    if debug:
                        _skip(rec, _LEN_TYPE.unpack_from(buf, at)[1], at)
                else:
                    out.route(rec[0], (rec[1],))
        off += m * length
        if m < k:
            return off
        step = n


class _Malformed(Exception):
    """An attribute header that is truncated or runs past its message (the why)."""


def _attributes(buf: bytes, a: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(offset, length, type)`` of each ``rtattr`` from ``a`` up to ``end``, header
    included in offset and length; :class:`_Malformed` at a header that cannot be true."""
    while a < end:
        if a + 4 > end:
            raise _Malformed("attribute header truncated")
        alen, atype = _NLA.unpack_from(buf, a)
        if alen < 4 or a + alen > end:
            raise _Malformed("attribute overruns message")
        yield a, alen, atype
        a += (alen + 3) & ~3


def _route(buf: bytes, off: int, end: int) -> tuple[tuple[int, int, int, int], Route] | str:
    """Walk one route message attribute by attribute: ``((type, nl_flags, seq, pid),
    route)``, or why it was skipped."""
    if end - off < _RTMSG_END:
        return "route message too short"
    _, mtype, nl_flags, seq, pid = _HDR.unpack_from(buf, off)
    family, dst_len, src_len, tos, table, proto, scope, rtype, rtm_flags = _RTMSG.unpack_from(
        buf, off + _HDRLEN
    )
    alen_addr = _ADDR_ATTR_LEN.get(family)
    if alen_addr is None:
        return f"route family {family}"
    if dst_len > _MAX_PREFIX[family] or src_len > _MAX_PREFIX[family]:
        return f"prefix length {dst_len}/{src_len}"
    dst_num = 0
    src: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    oif: int | None = None
    priority = 0
    nexthops = _NO_NEXTHOPS
    nh_dead = rtm_flags & RTNH_F_DEAD
    metrics = _NO_METRICS
    nhid = 0
    expires = 0.0
    try:
        for a, alen, atype in _attributes(buf, off + _RTMSG_END, end):
            if atype in (RTA_DST, RTA_GATEWAY, RTA_PREFSRC, RTA_SRC):
                if alen != alen_addr:
                    return f"attribute {atype} size {alen}"
                raw = buf[a + 4 : a + alen]
                if atype == RTA_DST:
                    dst_num = int.from_bytes(raw, "big") & _MASKS[family][dst_len]
                elif atype == RTA_GATEWAY:
                    gateway = _addr(family, raw)
                elif atype == RTA_PREFSRC:
                    prefsrc = _addr(family, raw)
                else:
                    src = _addr(family, raw)
            elif atype in (RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_NH_ID):
                if alen != 8:
                    return f"attribute {atype} size {alen}"
                val = _U32.unpack_from(buf, a + 4)[0]
                if atype == RTA_OIF:
                    oif = val
                elif atype == RTA_PRIORITY:
                    priority = val
                elif atype == RTA_TABLE:
                    table = val
                else:
                    nhid = val
            elif atype == RTA_MULTIPATH:
                mp = _multipath(buf, a + 4, a + alen, family)
                if mp is None:
                    return "RTA_MULTIPATH malformed"
                nexthops, nh_dead = mp
            elif atype == RTA_METRICS:
                parsed = _metrics(buf[a + 4 : a + alen])
                if parsed is None:
                    return "RTA_METRICS malformed"
                metrics = parsed
            elif atype == RTA_CACHEINFO:
                if alen < 4 + _CACHEINFO_EXPIRES + 4:
                    return f"attribute {atype} size {alen}"
                expires = _I32.unpack_from(buf, a + 4 + _CACHEINFO_EXPIRES)[0] / USER_HZ
            elif atype == RTA_VIA:
                via = _via(buf, a + 4, a + alen)
                if via is None:
                    return "RTA_VIA malformed"
                gateway = via
    except _Malformed as bad:
        return str(bad)
    if nexthops and oif is None:
        gateway, oif = nexthops[0][:2]
    route = Route(
        family,
        dst_num,
        dst_len,
        table,
        priority,
        tos,
        src,
        src_len,
        rtype,
        gateway,
        oif,
        prefsrc,
        proto,
        scope,
        nexthops,
        rtm_flags & RTNH_F_IDENTITY,
        metrics,
        nhid,
        rtm_flags,
        nh_dead,
        expires,
        next(_serial),
    )
    return (mtype, nl_flags, seq, pid), route


_NO_METRICS: Metrics = ()
_METRICS_CACHE: dict[bytes, Metrics] = {}


def _metrics(raw: bytes) -> Metrics | None:
    """The ``(RTAX_*, value)`` pairs of an ``RTA_METRICS`` payload, or None if malformed
    (cached: a table's routes share a few metric sets)."""
    got = _METRICS_CACHE.get(raw)
    if got is not None:
        return got
    pairs: list[tuple[int, int | str]] = []
    try:
        for a, alen, atype in _attributes(raw, 0, len(raw)):
            if atype == RTAX_CC_ALGO:
                pairs.append((atype, _asciiz(raw, a + 4, a + alen)))
            elif alen == 8:
                pairs.append((atype, _U32.unpack_from(raw, a + 4)[0]))
            else:
                return None
    except _Malformed:
        return None
    metrics = tuple(pairs)
    if len(_METRICS_CACHE) >= _ADDR_CACHE_MAX:
        _METRICS_CACHE.clear()
    _METRICS_CACHE[raw] = metrics
    return metrics


def _multipath(buf: bytes, a: int, end: int, family: int) -> tuple[tuple[NextHop, ...], int] | None:
    """The paths of ``RTA_MULTIPATH`` and the bit mask of the dead ones, or None if
    malformed."""
    hops: list[NextHop] = []
    dead = 0
    alen_addr = _ADDR_ATTR_LEN[family]
    while a < end:
        if a + 8 > end:
            return None
        nh_len, flags, weight, ifindex = _RTNH.unpack_from(buf, a)
        nh_end = a + nh_len
        if nh_len < 8 or nh_end > end:
            return None
        gateway: str | None = None
        try:
            for b, alen, atype in _attributes(buf, a + 8, nh_end):
                if atype == RTA_GATEWAY:
                    if alen != alen_addr:
                        return None
                    gateway = _addr(family, buf[b + 4 : b + alen])
                elif atype == RTA_VIA:
                    gateway = _via(buf, b + 4, b + alen)
                    if gateway is None:
                        return None
        except _Malformed:
            return None
        if flags & RTNH_F_DEAD:
            dead |= 1 << len(hops)
        hops.append((gateway, ifindex, weight + 1, flags & RTNH_F_IDENTITY))
        a += (nh_len + 3) & ~3
    return tuple(hops), dead


def _via(buf: bytes, a: int, end: int) -> str | None:
    """``RTA_VIA`` (struct rtvia: family, address), e.g. an IPv6 gateway of an IPv4 route."""
    if a + 2 > end:
        return None
    family = _VIA_FAMILY.unpack_from(buf, a)[0]
    alen = _ADDR_ATTR_LEN.get(family)
    if alen is None or end - a - 2 != alen - 4:
        return None
    return _addr(family, buf[a + 2 : end])


def _link(buf: bytes, off: int, end: int) -> LinkMsg | str:
    """Decode one ``RTM_NEWLINK`` / ``RTM_DELLINK`` (``end`` already bounds-checked), or
    say why it was skipped."""
    if end - off < _IFINFO_END:
        return "link message too short"
    _, mtype, nl_flags, seq, pid = _HDR.unpack_from(buf, off)
    family, ifi_type, index, flags, change = _IFINFO.unpack_from(buf, off + _HDRLEN)
    name: str | None = None
    try:
        for a, alen, atype in _attributes(buf, off + _IFINFO_END, end):
            if atype == IFLA_IFNAME:
                name = _asciiz(buf, a + 4, a + alen)
    except _Malformed:
        return "attribute overruns message"
    up = bool(flags & IFF_UP)
    return LinkMsg(mtype, nl_flags, seq, pid, family, index, flags, change, ifi_type, name, up)


def _ifaddr(buf: bytes, off: int, end: int) -> AddrMsg | str:
    """Decode one ``RTM_NEWADDR`` / ``RTM_DELADDR`` (``end`` already bounds-checked), or
    say why it was skipped."""
    if end - off < _IFADDR_END:
        return "address message too short"
    _, mtype, nl_flags, seq, pid = _HDR.unpack_from(buf, off)
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(buf, off + _HDRLEN)
    alen_addr = _ADDR_ATTR_LEN.get(family)
    if alen_addr is None:
        return f"address family {family}"
    address: str | None = None
    local: str | None = None
    label: str | None = None
    try:
        for a, alen, atype in _attributes(buf, off + _IFADDR_END, end):
            if atype in (IFA_ADDRESS, IFA_LOCAL):
                if alen != alen_addr:
                    return f"attribute {atype} size {alen}"
                text = inet_ntop(_SOCK_FAMILY[family], buf[a + 4 : a + alen])
                if atype == IFA_ADDRESS:
                    address = text
                else:
                    local = text
            elif atype == IFA_FLAGS:
                if alen != 8:
                    return f"IFA_FLAGS size {alen}"
                flags |= _U32.unpack_from(buf, a + 4)[0]
            elif atype == IFA_LABEL:
                label = _asciiz(buf, a + 4, a + alen)
    except _Malformed:
        return "attribute overruns message"
    if address is None:
        address = local
    if address is None:
        return "no IFA_ADDRESS or IFA_LOCAL"
    return AddrMsg(
        mtype,
        nl_flags,
        seq,
        pid,
        family,
        index,
        prefixlen,
        flags,
        scope,
        address,
        local or address,
        label,
    )


def _nexthop(buf: bytes, off: int, end: int) -> NexthopMsg | str:
    """Decode one ``RTM_NEWNEXTHOP`` / ``RTM_DELNEXTHOP`` (``end`` already bounds-checked),
    or say why it was skipped."""
    if end - off < _NHMSG_END:
        return "nexthop message too short"
    _, mtype, nl_flags, seq, pid = _HDR.unpack_from(buf, off)
    family, scope, protocol, flags = _NHMSG.unpack_from(buf, off + _HDRLEN)
    nh_id: int | None = None
    oif: int | None = None
    gateway: str | None = None
    blackhole = fdb = False
    group: tuple[tuple[int, int], ...] = ()
    group_type = 0
    try:
        for a, alen, atype in _attributes(buf, off + _NHMSG_END, end):
            size = alen - 4
            if atype in (NHA_ID, NHA_OIF):
                if size != 4:
                    return f"attribute {atype} size {alen}"
                val = _U32.unpack_from(buf, a + 4)[0]
                if atype == NHA_ID:
                    nh_id = val
                else:
                    oif = val
            elif atype == NHA_GATEWAY:
                gw_family = {4: AF_INET, 16: AF_INET6}.get(size)
                if gw_family is None:
                    return f"NHA_GATEWAY size {alen}"
                gateway = _addr(gw_family, buf[a + 4 : a + alen])
            elif atype == NHA_GROUP:
                if size % _NH_GRP.size:
                    return f"NHA_GROUP size {alen}"
                group = tuple(
                    (member, (high << 8 | low) + 1)
                    for member, low, high, _ in _NH_GRP.iter_unpack(buf[a + 4 : a + alen])
                )
            elif atype == NHA_GROUP_TYPE:
                if size != 2:
                    return f"NHA_GROUP_TYPE size {alen}"
                group_type = _VIA_FAMILY.unpack_from(buf, a + 4)[0]
            elif atype == NHA_BLACKHOLE:
                blackhole = True
            elif atype == NHA_FDB:
                fdb = True
    except _Malformed as bad:
        return str(bad)
    if nh_id is None:
        return "no NHA_ID"
    return NexthopMsg(
        mtype,
        nl_flags,
        seq,
        pid,
        family,
        scope,
        protocol,
        flags,
        nh_id,
        oif,
        gateway,
        blackhole,
        group,
        group_type,
        fdb,
    )


def _asciiz(buf: bytes, a: int, end: int) -> str:
    """A NUL-terminated string attribute, undecodable bytes replaced (never raises)."""
    raw = buf[a:end]
    nul = raw.find(0)
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "replace")


_DECODERS: dict[int, Callable[[bytes, int, int], LinkMsg | AddrMsg | NexthopMsg | str]] = {
    RTM_NEWLINK: _link,
    RTM_DELLINK: _link,
    RTM_NEWADDR: _ifaddr,
    RTM_DELADDR: _ifaddr,
    RTM_NEWNEXTHOP: _nexthop,
    RTM_DELNEXTHOP: _nexthop,
}
"""The decoder of each message type :func:`decode` takes other than routes, DONE and
ERROR: the record, or why the message was skipped."""

# ifinfomsg, ifaddrmsg, rtmsg, nhmsg
_DUMP_BODY_LEN = {RTM_GETLINK: 16, RTM_GETADDR: 8, RTM_GETROUTE: 12, RTM_GETNEXTHOP: 8}


def dump_request(msg_type: int, family: int, seq: int) -> bytes:
    """A dump request (``NLM_F_REQUEST | NLM_F_DUMP``) for all links, addresses, nexthop
    objects or routes.

    ``msg_type`` is ``RTM_GETLINK``, ``RTM_GETADDR``, ``RTM_GETNEXTHOP`` or
    ``RTM_GETROUTE``; ``family`` is ``AF_UNSPEC``, ``AF_INET`` or ``AF_INET6``; ``seq``
    comes back in every answer.

    >>> len(dump_request(RTM_GETROUTE, AF_INET6, 7))
    28
    """
    body_len = _DUMP_BODY_LEN.get(msg_type)
    if body_len is None:
        raise ValueError(
            f"dump_request: msg_type {msg_type} is not RTM_GETLINK/GETADDR/GETNEXTHOP/GETROUTE"
        )
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        raise ValueError(f"dump_request: family {family} is not AF_UNSPEC/AF_INET/AF_INET6")
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError(f"dump_request: seq {seq} does not fit in 32 bits")
    # Every body starts with its family byte; the rest stays zero (no filter).
    header = _HDR.pack(_HDRLEN + body_len, msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + bytes((family,)) + bytes(body_len - 1)


def fibmatch_request(route: Route, seq: int) -> bytes:
    """An ``RTM_GETROUTE`` request (no dump) asking which route the kernel would use for
    ``route``'s destination address over its ``oif`` (``RTM_F_FIB_MATCH``: the table
    entry itself, with its current ``expires``, not a cached clone).

    >>> len(fibmatch_request(Route(AF_INET6, 0, 0, 254, 0, 0, None, 0, 1, None, 2, None,
    ...     0, 0, (), 0, (), 0, 0, 0, 0.0, 1), 7))
    56
    """
    family = route.family
    nbytes = _ADDR_BYTES.get(family)
    if nbytes is None:
        raise ValueError(f"fibmatch_request: route family {family}")
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError(f"fibmatch_request: seq {seq} does not fit in 32 bits")
    body = _RTMSG.pack(family, 8 * nbytes, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH)
    attrs = _NLA.pack(4 + nbytes, RTA_DST) + route.dst_num.to_bytes(nbytes, "big")
    if route.oif is not None:
        attrs += _NLA.pack(8, RTA_OIF) + _U32.pack(route.oif)
    length = _RTMSG_END + len(attrs)
    return _HDR.pack(length, RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body + attrs


def flow_route_request(
    family: int, dst: str, seq: int, src: str | None = None, oif: int = 0
) -> bytes:
    """An ``RTM_GETROUTE`` request (no dump) for the kernel's output route of a flow to
    ``dst`` from ``src`` out of ``oif`` (0: any), as a socket bound so would get it: every
    rule and table applied. The answer is one route (its ``oif``, ``gateway``,
    ``prefsrc``) or an error (no route).

    >>> len(flow_route_request(AF_INET, "198.51.100.2", 7, src="198.51.100.1", oif=2))
    52
    """
    nbytes = _ADDR_BYTES.get(family)
    if nbytes is None:
        raise ValueError(f"flow_route_request: family {family}")
    if not 0 <= seq <= 0xFFFFFFFF:
        raise ValueError(f"flow_route_request: seq {seq} does not fit in 32 bits")
    sfam = _SOCK_FAMILY[family]
    attrs = _NLA.pack(4 + nbytes, RTA_DST) + inet_pton(sfam, dst)
    if src is not None:
        attrs += _NLA.pack(4 + nbytes, RTA_SRC) + inet_pton(sfam, src)
    if oif:
        attrs += _NLA.pack(8, RTA_OIF) + _U32.pack(oif)
    src_len = 8 * nbytes if src is not None else 0
    body = _RTMSG.pack(family, 8 * nbytes, src_len, 0, 0, 0, 0, 0, 0)
    length = _RTMSG_END + len(attrs)
    return _HDR.pack(length, RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body + attrs
