"""lwspy.net.nlmsg against pyroute2 as the reference encoder and decoder.

Only documentation addresses: 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15 and
2001:db8::/32.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink import nla
from pyroute2.netlink import nlmsg as pr_nlmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg as rtmsg_base

from lwspy.net import nlmsg
from lwspy.net.nlmsg import (
    AF_INET,
    AF_INET6,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEXTHOP,
    RTM_DELROUTE,
    RTM_F_FIB_MATCH,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEXTHOP,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWNEXTHOP,
    RTM_NEWROUTE,
    RTMGRP_SUBSCRIBE,
    RTNH_F_DEAD,
    RTNH_F_IDENTITY,
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

V4_NETS = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")]
V6_NETS = [ipaddress.ip_network("2001:db8::/32")]
MAX_PREFIX = {AF_INET: 32, AF_INET6: 128}


class rtmsg(rtmsg_base):  # type: ignore[misc]
    """pyroute2's rtmsg, taught the attributes after RTA_EXPIRES up to RTA_NH_ID (30),
    which pyroute2 0.9 does not name (include/uapi/linux/rtnetlink.h)."""

    nla_map = (
        *rtmsg_base.nla_map,
        ("RTA_PAD", "hex"),
        ("RTA_UID", "uint32"),
        ("RTA_TTL_PROPAGATE", "uint8"),
        ("RTA_IP_PROTO", "uint8"),
        ("RTA_SPORT", "be16"),
        ("RTA_DPORT", "be16"),
        ("RTA_NH_ID", "uint32"),
    )


class nhmsg(pr_nlmsg):  # type: ignore[misc]
    """RTM_*NEXTHOP (include/uapi/linux/nexthop.h) for pyroute2's marshalling, which has
    no class of its own for it in 0.9."""

    fields = (
        ("family", "B"),
        ("scope", "B"),
        ("protocol", "B"),
        ("resvd", "B"),
        ("flags", "I"),
    )
    nla_map = (
        ("NHA_UNSPEC", "none"),
        ("NHA_ID", "uint32"),
        ("NHA_GROUP", "nh_group"),
        ("NHA_GROUP_TYPE", "uint16"),
        ("NHA_BLACKHOLE", "flag"),
        ("NHA_OIF", "uint32"),
        ("NHA_GATEWAY", "nh_gateway"),
        ("NHA_ENCAP_TYPE", "uint16"),
        ("NHA_ENCAP", "hex"),
        ("NHA_GROUPS", "flag"),
        ("NHA_MASTER", "uint32"),
        ("NHA_FDB", "flag"),
    )

    class nh_group(nla.cdata):  # type: ignore[misc,name-defined]
        """An array of struct nexthop_grp {u32 id; u8 weight; u8 weight_high; u16 resvd}."""

        def encode(self) -> None:
            self["value"] = b"".join(
                struct.pack("=IBBH", i, (w - 1) & 0xFF, (w - 1) >> 8, 0) for i, w in self.value
            )
            nla.cdata.encode(self)

        def decode(self) -> None:
            nla.cdata.decode(self)
            self.value = [
                (i, (high << 8 | low) + 1)
                for i, low, high, _ in struct.iter_unpack("=IBBH", self["value"])
            ]

    class nh_gateway(nla.cdata):  # type: ignore[misc,name-defined]
        """An IPv4 (4 bytes) or IPv6 (16 bytes) address, whatever the nexthop's family."""

        def encode(self) -> None:
            fam = socket.AF_INET6 if ":" in self.value else socket.AF_INET
            self["value"] = socket.inet_pton(fam, self.value)
            nla.cdata.encode(self)

        def decode(self) -> None:
            nla.cdata.decode(self)
            raw = self["value"]
            self.value = socket.inet_ntop(
                socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw
            )


RTAX_NUMBERS = {name: i for i, (name, _) in enumerate(rtmsg_base.metrics.nla_map)}


@pytest.fixture(autouse=True)
def _fresh_shapes() -> Iterator[None]:
    """Each test starts with no learnt layouts, so the first message takes the walker."""
    nlmsg._SHAPES.clear()
    yield
    nlmsg._SHAPES.clear()


# -- encoding with pyroute2 ------------------------------------------------------------


def _header(msg: Any, mtype: int, nl_flags: int = 0, seq: int = 0, pid: int = 0) -> None:
    msg["header"]["type"] = mtype
    msg["header"]["flags"] = nl_flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid


def enc_route(
    attrs: list[tuple[str, Any]],
    *,
    mtype: int = RTM_NEWROUTE,
    nl_flags: int = 0,
    seq: int = 0,
    pid: int = 0,
    family: int = AF_INET,
    dst_len: int = 0,
    src_len: int = 0,
    tos: int = 0,
    table: int = 254,
    proto: int = 4,
    scope: int = 0,
    rtype: int = 1,
    flags: int = 0,
) -> bytes:
    """One RTM_*ROUTE message, encoded by pyroute2."""
    msg = rtmsg()
    _header(msg, mtype, nl_flags, seq, pid)
    fields = {"family": family, "dst_len": dst_len, "src_len": src_len, "tos": tos}
    fields |= {"table": table, "proto": proto, "scope": scope, "type": rtype, "flags": flags}
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def enc_link(
    attrs: list[tuple[str, Any]],
    *,
    mtype: int = RTM_NEWLINK,
    nl_flags: int = 0,
    seq: int = 0,
    pid: int = 0,
    family: int = 0,
    ifi_type: int = 1,
    index: int = 2,
    flags: int = 0,
    change: int = 0,
) -> bytes:
    """One RTM_*LINK message, encoded by pyroute2."""
    msg = ifinfmsg()
    _header(msg, mtype, nl_flags, seq, pid)
    fields = {"family": family, "ifi_type": ifi_type, "index": index}
    fields |= {"flags": flags, "change": change}
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def enc_addr(
    attrs: list[tuple[str, Any]],
    *,
    mtype: int = RTM_NEWADDR,
    nl_flags: int = 0,
    seq: int = 0,
    pid: int = 0,
    family: int = AF_INET,
    prefixlen: int = 24,
    flags: int = 0,
    scope: int = 0,
    index: int = 2,
) -> bytes:
    """One RTM_*ADDR message, encoded by pyroute2."""
    msg = ifaddrmsg()
    _header(msg, mtype, nl_flags, seq, pid)
    fields = {"family": family, "prefixlen": prefixlen, "flags": flags}
    fields |= {"scope": scope, "index": index}
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def enc_nexthop(
    attrs: list[tuple[str, Any]],
    *,
    mtype: int = RTM_NEWNEXTHOP,
    nl_flags: int = 0,
    seq: int = 0,
    pid: int = 0,
    family: int = AF_INET,
    scope: int = 0,
    protocol: int = 0,
    flags: int = 0,
) -> bytes:
    """One RTM_*NEXTHOP message, encoded by pyroute2's marshalling."""
    msg = nhmsg()
    _header(msg, mtype, nl_flags, seq, pid)
    fields = {"family": family, "scope": scope, "protocol": protocol, "resvd": 0}
    fields |= {"flags": flags}
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def ref_nexthop(data: bytes) -> dict[str, Any]:
    """What our NexthopMsg should say, from pyroute2's decode of ``data``."""
    msg = nhmsg(data)
    msg.decode()
    attrs = dict(msg["attrs"])
    header = msg["header"]
    return {
        "type": header["type"],
        "nl_flags": header["flags"],
        "seq": header["sequence_number"],
        "pid": header["pid"],
        "family": msg["family"],
        "scope": msg["scope"],
        "protocol": msg["protocol"],
        "flags": msg["flags"],
        "id": attrs["NHA_ID"],
        "oif": attrs.get("NHA_OIF"),
        "gateway": attrs.get("NHA_GATEWAY"),
        "blackhole": "NHA_BLACKHOLE" in attrs,
        "group": tuple(attrs.get("NHA_GROUP", ())),
        "group_type": attrs.get("NHA_GROUP_TYPE", 0),
        "fdb": "NHA_FDB" in attrs,
    }


def enc_done(seq: int = 1, pid: int = 0, nl_flags: int = NLM_F_MULTI, error: int = 0) -> bytes:
    """NLMSG_DONE with its int payload."""
    return struct.pack("=IHHIIi", 20, NLMSG_DONE, nl_flags, seq, pid, error)


def enc_error(seq: int = 1, pid: int = 0, error: int = 0) -> bytes:
    """NLMSG_ERROR with the failing request's header."""
    orig = struct.pack("=IHHII", 28, RTM_GETROUTE, NLM_F_REQUEST, seq, 0)
    return struct.pack("=IHHIIi", 36, NLMSG_ERROR, 0, seq, pid, error) + orig


# -- reference decoding with pyroute2 ----------------------------------------------------


def _masked(family: int, addr: str, plen: int) -> str:
    return str(ipaddress.ip_network(f"{addr}/{plen}", strict=False).network_address)


def ref_route(data: bytes) -> dict[str, Any]:
    """What our Route and header should say, from pyroute2's decode of ``data``."""
    msg = rtmsg(data)
    msg.decode()
    family = msg["family"]
    table = msg["table"]
    dst = "0.0.0.0" if family == AF_INET else "::"
    src = gateway = prefsrc = oif = None
    priority = nhid = 0
    expires = 0.0
    metrics: tuple[tuple[int, int | str], ...] = ()
    nexthops: tuple[tuple[str | None, int, int, int], ...] = ()
    nh_dead = msg["flags"] & RTNH_F_DEAD
    for name, value in msg["attrs"]:
        if name == "RTA_DST":
            dst = value
        elif name == "RTA_SRC":
            src = value
        elif name == "RTA_GATEWAY":
            gateway = value
        elif name == "RTA_VIA":
            gateway = value["addr"]
        elif name == "RTA_PREFSRC":
            prefsrc = value
        elif name == "RTA_OIF":
            oif = value
        elif name == "RTA_PRIORITY":
            priority = value
        elif name == "RTA_TABLE":
            table = value
        elif name == "RTA_NH_ID":
            nhid = value
        elif name == "RTA_METRICS":
            metrics = tuple((RTAX_NUMBERS[n], v) for n, v in value["attrs"])
        elif name == "RTA_CACHEINFO":
            expires = value["rta_expires"] / 100
        elif name == "RTA_MULTIPATH":
            hops = []
            nh_dead = 0
            for i, nh in enumerate(value):
                nh_gw = None
                for nh_name, nh_value in nh["attrs"]:
                    if nh_name == "RTA_GATEWAY":
                        nh_gw = nh_value
                    elif nh_name == "RTA_VIA":
                        nh_gw = nh_value["addr"]
                hops.append((nh_gw, nh["oif"], nh["hops"] + 1, nh["flags"] & RTNH_F_IDENTITY))
                if nh["flags"] & RTNH_F_DEAD:
                    nh_dead |= 1 << i
            nexthops = tuple(hops)
    if nexthops and oif is None:
        gateway, oif = nexthops[0][:2]
    header = msg["header"]
    return {
        "hdr": (header["type"], header["flags"], header["sequence_number"], header["pid"]),
        "family": family,
        "dst": _masked(family, dst, msg["dst_len"]),
        "dst_len": msg["dst_len"],
        "table": table,
        "priority": priority,
        "tos": msg["tos"],
        "src": src,
        "src_len": msg["src_len"],
        "type": msg["type"],
        "gateway": gateway,
        "oif": oif,
        "prefsrc": prefsrc,
        "protocol": msg["proto"],
        "scope": msg["scope"],
        "nexthops": nexthops,
        "nh_flags": msg["flags"] & RTNH_F_IDENTITY,
        "metrics": metrics,
        "nhid": nhid,
        "rtm_flags": msg["flags"],
        "nh_dead": nh_dead,
        "expires": expires,
    }


def ours(route: Route, hdr: tuple[int, int, int, int]) -> dict[str, Any]:
    """Our decode in the same shape as ref_route."""
    fields = {name: getattr(route, name) for name in ref_fields()}
    fields["hdr"] = hdr
    fields["dst"] = route.dst
    return fields


def ref_fields() -> list[str]:
    return [f for f in Route._fields if f not in ("dst_num", "id")]


def flat_routes(records: list[NlRecord]) -> list[tuple[tuple[int, int, int, int], Route]]:
    """(header, route) for every route, in order."""
    return [(tuple(rec[:4]), r) for rec in records if isinstance(rec, RouteMsg) for r in rec.routes]  # type: ignore[misc]


# -- strategies --------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ifindex = st.integers(1, 0x7FFFFFFF)


@st.composite
def doc_address(draw: st.DrawFn, family: int) -> str:
    net = draw(st.sampled_from(V4_NETS if family == AF_INET else V6_NETS))
    return str(net.network_address + draw(st.integers(0, net.num_addresses - 1)))


@st.composite
def doc_prefix(draw: st.DrawFn, family: int, masked: bool = True) -> tuple[str, int]:
    net = draw(st.sampled_from(V4_NETS if family == AF_INET else V6_NETS))
    plen = draw(st.integers(net.prefixlen, MAX_PREFIX[family]))
    addr = net.network_address + draw(st.integers(0, net.num_addresses - 1))
    if masked:
        return _masked(family, str(addr), plen), plen
    return str(addr), plen


@st.composite
def route_attrs(draw: st.DrawFn, family: int) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Attributes (in random order) and rtmsg fields of one route message."""
    attrs: list[tuple[str, Any]] = []
    fields: dict[str, Any] = {"family": family}
    if draw(st.integers(0, 9)) == 0:
        fields["dst_len"] = 0  # a default route: no RTA_DST
    else:
        dst, fields["dst_len"] = draw(doc_prefix(family, masked=draw(st.integers(0, 9)) > 0))
        attrs.append(("RTA_DST", dst))
    if draw(st.booleans()):
        attrs.append(("RTA_GATEWAY", draw(doc_address(family))))
    if draw(st.booleans()):
        attrs.append(("RTA_OIF", draw(ifindex)))
    if draw(st.booleans()):
        attrs.append(("RTA_PRIORITY", draw(u32)))
    if draw(st.booleans()):
        attrs.append(("RTA_PREFSRC", draw(doc_address(family))))
    table = draw(st.sampled_from([254, 255, 253, 0, 1000, 0xFFFFFFFF]))
    fields["table"] = table if table <= 255 else 252
    if table > 255 or draw(st.booleans()):
        attrs.append(("RTA_TABLE", table))
    if draw(st.integers(0, 5)) == 0:
        src, fields["src_len"] = draw(doc_prefix(family))
        attrs.append(("RTA_SRC", src))
    if draw(st.integers(0, 4)) == 0:
        attrs.append(("RTA_PREF", draw(u8)))  # not decoded: skipped, 5 bytes + padding
    if draw(st.integers(0, 4)) == 0:
        attrs.append(("RTA_MARK", draw(u32)))  # not decoded
    if draw(st.integers(0, 6)) == 0:
        hops = []
        for _ in range(draw(st.integers(1, 3))):
            nh_attrs: list[tuple[str, Any]] = []
            if draw(st.booleans()):
                nh_attrs.append(("RTA_GATEWAY", draw(doc_address(family))))
            hops.append(
                {
                    "oif": draw(ifindex),
                    "hops": draw(st.sampled_from([0, 0, 1, 255])),
                    "flags": draw(st.sampled_from([0, 0, 1, 4, 0x11, 0x15])),
                    "attrs": nh_attrs,
                }
            )
        attrs.append(("RTA_MULTIPATH", hops))
    if draw(st.integers(0, 3)) == 0:
        attrs.append(("RTA_METRICS", {"attrs": draw(metrics_attrs())}))
    if draw(st.integers(0, 3)) == 0:
        attrs.append(("RTA_NH_ID", draw(u32)))
    if draw(st.integers(0, 3)) == 0:
        attrs.append(("RTA_CACHEINFO", cacheinfo(draw(st.integers(-(2**31), 2**31 - 1)))))
    if family == AF_INET and draw(st.integers(0, 8)) == 0:
        attrs.append(("RTA_VIA", {"family": AF_INET6, "addr": draw(doc_address(AF_INET6))}))
    attrs = draw(st.permutations(attrs))
    fields["tos"] = draw(st.sampled_from([0, 0, 0, 0x10]))
    fields["proto"] = draw(u8)
    fields["scope"] = draw(u8)
    fields["rtype"] = draw(st.integers(0, 11))
    fields["flags"] = draw(st.sampled_from([0, 0, 0x200, 0x10, 0x1, 0x4, 0x15]))
    fields["src_len"] = fields.get("src_len", 0)
    return attrs, fields


@st.composite
def metrics_attrs(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """RTAX_* attributes as ip route puts them (mtu, advmss, ..., congctl)."""
    names = draw(
        st.lists(
            st.sampled_from(["RTAX_MTU", "RTAX_ADVMSS", "RTAX_HOPLIMIT", "RTAX_INITCWND"]),
            max_size=3,
        )
    )
    metrics: list[tuple[str, Any]] = [(name, draw(u32)) for name in names]
    if draw(st.integers(0, 4)) == 0:
        metrics.append(("RTAX_CC_ALGO", draw(st.sampled_from(["cubic", "bbr", "reno"]))))
    return metrics


def cacheinfo(expires: int) -> dict[str, int]:
    """An RTA_CACHEINFO payload with only rta_expires set (in 1/100 s)."""
    names = ("clntref", "lastuse", "expires", "error", "used", "id", "ts", "tsage")
    return {f"rta_{name}": expires if name == "expires" else 0 for name in names}


@st.composite
def route_message(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from([AF_INET, AF_INET6]))
    attrs, fields = draw(route_attrs(family))
    mtype = draw(st.sampled_from([RTM_NEWROUTE, RTM_DELROUTE]))
    return enc_route(attrs, mtype=mtype, nl_flags=draw(u16), seq=draw(u32), pid=draw(u32), **fields)


@st.composite
def link_message(draw: st.DrawFn) -> bytes:
    attrs: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        attrs.append(
            ("IFLA_IFNAME", draw(st.text("abcdefxyz0123456789.-", min_size=1, max_size=15)))
        )
    if draw(st.booleans()):
        attrs.append(("IFLA_MTU", draw(st.integers(68, 65535))))
    attrs = draw(st.permutations(attrs))
    return enc_link(
        attrs,
        mtype=draw(st.sampled_from([RTM_NEWLINK, RTM_DELLINK])),
        nl_flags=draw(u16),
        seq=draw(u32),
        pid=draw(u32),
        family=draw(st.sampled_from([0, 7])),
        ifi_type=draw(u16),
        index=draw(ifindex),
        flags=draw(u32),
        change=draw(u32),
    )


@st.composite
def addr_message(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from([AF_INET, AF_INET6]))
    attrs: list[tuple[str, Any]] = []
    which = draw(st.sampled_from(["address", "local", "both"]))
    if which in ("address", "both"):
        attrs.append(("IFA_ADDRESS", draw(doc_address(family))))
    if which in ("local", "both"):
        attrs.append(("IFA_LOCAL", draw(doc_address(family))))
    if draw(st.booleans()):
        attrs.append(("IFA_LABEL", draw(st.text("abcxyz0123:", min_size=1, max_size=15))))
    if draw(st.booleans()):
        attrs.append(("IFA_FLAGS", draw(u32)))
    if draw(st.booleans()):
        attrs.append(("IFA_RT_PRIORITY", draw(u32)))  # not decoded
    attrs = draw(st.permutations(attrs))
    return enc_addr(
        attrs,
        mtype=draw(st.sampled_from([RTM_NEWADDR, RTM_DELADDR])),
        nl_flags=draw(u16),
        seq=draw(u32),
        pid=draw(u32),
        family=family,
        prefixlen=draw(st.integers(0, MAX_PREFIX[family])),
        flags=draw(u8),
        scope=draw(u8),
        index=draw(ifindex),
    )


@st.composite
def nexthop_message(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from([AF_INET, AF_INET6, 0]))
    attrs: list[tuple[str, Any]] = [("NHA_ID", draw(st.integers(1, 0xFFFFFFFF)))]
    kind = draw(st.sampled_from(["gateway", "dev", "blackhole", "group"]))
    if kind in ("gateway", "dev"):
        attrs.append(("NHA_OIF", draw(ifindex)))
    if kind == "gateway":
        gw_family = draw(st.sampled_from([AF_INET6, family])) if family else AF_INET6
        attrs.append(("NHA_GATEWAY", draw(doc_address(gw_family or AF_INET6))))
    elif kind == "blackhole":
        attrs.append(("NHA_BLACKHOLE", True))
    elif kind == "group":
        members = draw(
            st.lists(
                st.tuples(st.integers(1, 0xFFFFFFFF), st.integers(1, 65536)),
                min_size=1,
                max_size=4,
            )
        )
        attrs.append(("NHA_GROUP", members))
        if draw(st.booleans()):
            attrs.append(("NHA_GROUP_TYPE", draw(st.sampled_from([0, 1]))))
    if draw(st.integers(0, 5)) == 0:
        attrs.append(("NHA_FDB", True))
    if draw(st.integers(0, 5)) == 0:
        attrs.append(("NHA_MASTER", draw(ifindex)))  # not decoded
    attrs = [attrs[0], *draw(st.permutations(attrs[1:]))]
    return enc_nexthop(
        attrs,
        mtype=draw(st.sampled_from([RTM_NEWNEXTHOP, RTM_DELNEXTHOP])),
        nl_flags=draw(u16),
        seq=draw(u32),
        pid=draw(u32),
        family=family,
        scope=draw(u8),
        protocol=draw(u8),
        flags=draw(st.sampled_from([0, RTNH_F_DEAD, 0x10, 0x11])),
    )


any_message = st.one_of(
    route_message(),
    link_message(),
    addr_message(),
    nexthop_message(),
    st.builds(enc_done, seq=u32, pid=u32, nl_flags=u16, error=st.integers(-200, 0)),
    st.builds(enc_error, seq=u32, pid=u32, error=st.integers(-200, 0)),
)


# -- single messages agree with pyroute2 -------------------------------------------------


def check_route(data: bytes, records: list[NlRecord]) -> None:
    assert len(records) == 1
    rec = records[0]
    assert isinstance(rec, RouteMsg)
    assert len(rec.routes) == 1
    assert ours(rec.routes[0], rec[:4]) == ref_route(data)


@given(route_message())
def test_route_fields_agree_with_pyroute2(data: bytes) -> None:
    check_route(data, decode(data))
    check_route(data, decode(data))  # the second time through a learnt layout


@given(link_message())
def test_link_fields_agree_with_pyroute2(data: bytes) -> None:
    [rec] = decode(data)
    assert isinstance(rec, LinkMsg)
    msg = ifinfmsg(data)
    msg.decode()
    attrs = dict(msg["attrs"])
    header = msg["header"]
    assert (rec.type, rec.nl_flags, rec.seq, rec.pid) == (
        header["type"],
        header["flags"],
        header["sequence_number"],
        header["pid"],
    )
    assert (rec.family, rec.index, rec.flags, rec.change, rec.ifi_type) == (
        msg["family"],
        msg["index"],
        msg["flags"],
        msg["change"],
        msg["ifi_type"],
    )
    assert rec.name == attrs.get("IFLA_IFNAME")
    assert rec.up is bool(msg["flags"] & 1)


@given(addr_message())
def test_addr_fields_agree_with_pyroute2(data: bytes) -> None:
    [rec] = decode(data)
    assert isinstance(rec, AddrMsg)
    msg = ifaddrmsg(data)
    msg.decode()
    attrs = dict(msg["attrs"])
    header = msg["header"]
    assert (rec.type, rec.nl_flags, rec.seq, rec.pid) == (
        header["type"],
        header["flags"],
        header["sequence_number"],
        header["pid"],
    )
    assert (rec.family, rec.index, rec.prefixlen, rec.scope) == (
        msg["family"],
        msg["index"],
        msg["prefixlen"],
        msg["scope"],
    )
    assert rec.flags == msg["flags"] | attrs.get("IFA_FLAGS", 0)
    assert rec.address == attrs.get("IFA_ADDRESS", attrs.get("IFA_LOCAL"))
    assert rec.local == attrs.get("IFA_LOCAL", attrs.get("IFA_ADDRESS"))
    assert rec.label == attrs.get("IFA_LABEL")


@given(nexthop_message())
def test_nexthop_fields_agree_with_pyroute2(data: bytes) -> None:
    [rec] = decode(data)
    assert isinstance(rec, NexthopMsg)
    want = ref_nexthop(data)
    assert {name: getattr(rec, name) for name in want} == want
    assert rec.dead == bool(want["flags"] & RTNH_F_DEAD)


def test_a_kernel_nexthop_group_as_ip_nexthop_sends_it() -> None:
    # ip nexthop add id 12 group 10/11,5 (laid out as Linux 6.18 sends it): family 0,
    # the group type, nexthop_grp entries whose weight byte is weight - 1.
    raw = (
        struct.pack("=IHHIIBBBBI", 0, RTM_NEWNEXTHOP, 0x505, 0, 0, 0, 0, 0, 0, 0)
        + struct.pack("=HHI", 8, 1, 12)
        + struct.pack("=HHHxx", 6, 3, 0)
        + struct.pack("=HH", 20, 2)
        + struct.pack("=IBBH", 10, 0, 0, 0)
        + struct.pack("=IBBH", 11, 4, 0, 0)
        + struct.pack("=HHI", 8, 14, 0x80000000)  # NHA_OP_FLAGS: not decoded
    )
    raw = _corrupt(raw, 0, "=I", len(raw))
    [rec] = decode(raw)
    assert isinstance(rec, NexthopMsg)
    assert (rec.id, rec.group, rec.group_type, rec.oif, rec.blackhole) == (
        12,
        ((10, 1), (11, 5)),
        0,
        None,
        False,
    )
    assert ref_nexthop(raw)["group"] == rec.group


def test_malformed_nexthop_messages_are_skipped() -> None:
    good = enc_nexthop([("NHA_ID", 5), ("NHA_OIF", 2), ("NHA_GATEWAY", "198.51.100.2")])
    [rec] = decode(good)
    assert isinstance(rec, NexthopMsg) and rec.gateway == "198.51.100.2"

    def with_attr(attr: bytes) -> bytes:
        body = good[:24] + struct.pack("=HHI", 8, 1, 5) + attr
        return _corrupt(body, 0, "=I", len(body))

    bad = [
        good[:20] + b"",  # shorter than nhmsg
        with_attr(struct.pack("=HH", 3, 5)),  # attribute header below its own size
        with_attr(struct.pack("=HH", 40, 5)),  # attribute overruns the message
        with_attr(struct.pack("=HHH", 6, 5, 0) + bytes(2)),  # NHA_OIF size
        with_attr(struct.pack("=HH", 9, 6) + bytes(8)),  # NHA_GATEWAY of 5 bytes
        with_attr(struct.pack("=HH", 12, 2) + bytes(8)[:8]),  # NHA_GROUP not a multiple of 8
        with_attr(struct.pack("=HHI", 8, 3, 0)),  # NHA_GROUP_TYPE of 4 bytes
        _corrupt(good[:24] + struct.pack("=HHI", 8, 5, 2), 0, "=I", 32),  # no NHA_ID
    ]
    bad[0] = _corrupt(bad[0], 0, "=I", 20)
    bad[5] = with_attr(struct.pack("=HH", 16, 2) + bytes(12))
    for data in bad:
        assert decode(data) == [], data.hex()
    truncated = with_attr(b"\x08\x00")  # two bytes where an attribute header should be
    assert decode(truncated) == []


def test_fibmatch_request_matches_pyroute2() -> None:
    [rec] = decode(
        enc_route(
            [("RTA_DST", "2001:db8:9::"), ("RTA_OIF", 3), ("RTA_CACHEINFO", cacheinfo(2500))],
            family=AF_INET6,
            dst_len=64,
        )
    )
    assert isinstance(rec, RouteMsg)
    route = rec.routes[0]
    assert route.expires == 25.0
    msg = rtmsg()
    _header(msg, RTM_GETROUTE, NLM_F_REQUEST, 9, 0)
    for key, value in {"family": AF_INET6, "dst_len": 128, "src_len": 0, "tos": 0}.items():
        msg[key] = value
    for key in ("table", "proto", "scope", "type"):
        msg[key] = 0
    msg["flags"] = RTM_F_FIB_MATCH
    msg["attrs"] = [("RTA_DST", "2001:db8:9::"), ("RTA_OIF", 3)]
    msg.encode()
    assert fibmatch_request(route, 9) == bytes(msg.data)
    no_oif = route._replace(oif=None)
    assert len(fibmatch_request(no_oif, 9)) == len(bytes(msg.data)) - 8
    with pytest.raises(ValueError, match="family 7"):
        fibmatch_request(route._replace(family=7), 1)
    with pytest.raises(ValueError, match="seq"):
        fibmatch_request(route, 1 << 32)


@pytest.mark.parametrize(
    ("family", "dst", "src", "oif"),
    [
        (AF_INET, "203.0.113.1", "198.51.100.1", 0),
        (AF_INET, "203.0.113.1", None, 0),
        (AF_INET6, "fe80::1", "fe80::2", 3),
        (AF_INET6, "2001:db8:2::1", None, 5),
    ],
)
def test_flow_route_request_matches_pyroute2(
    family: int, dst: str, src: str | None, oif: int
) -> None:
    width = 32 if family == AF_INET else 128
    msg = rtmsg()
    _header(msg, RTM_GETROUTE, NLM_F_REQUEST, 9, 0)
    fields = {"family": family, "dst_len": width, "src_len": width if src else 0, "tos": 0}
    for key, value in fields.items():
        msg[key] = value
    for key in ("table", "proto", "scope", "type", "flags"):
        msg[key] = 0
    attrs: list[tuple[str, object]] = [("RTA_DST", dst)]
    if src is not None:
        attrs.append(("RTA_SRC", src))
    if oif:
        attrs.append(("RTA_OIF", oif))
    msg["attrs"] = attrs
    msg.encode()
    assert flow_route_request(family, dst, 9, src, oif) == bytes(msg.data)
    assert decode(flow_route_request(family, dst, 9, src, oif)) == []  # a request, no record


def test_flow_route_request_refuses_what_it_cannot_ask() -> None:
    with pytest.raises(ValueError, match="family 7"):
        flow_route_request(7, "203.0.113.1", 1)
    with pytest.raises(ValueError, match="seq"):
        flow_route_request(AF_INET, "203.0.113.1", 1 << 32)


def test_done_and_error() -> None:
    records = decode(enc_done(seq=7, pid=9) + enc_error(seq=8, error=0) + enc_error(error=-17))
    assert records == [DoneMsg(7, 9, NLM_F_MULTI, 0), ErrorMsg(8, 0, 0), ErrorMsg(1, 0, 17)]
    done, ack, err = records
    assert isinstance(done, DoneMsg) and not done.interrupted
    assert isinstance(ack, ErrorMsg) and ack.ack
    assert isinstance(err, ErrorMsg) and not err.ack
    [intr] = decode(enc_done(nl_flags=NLM_F_MULTI | NLM_F_DUMP_INTR))
    assert isinstance(intr, DoneMsg) and intr.interrupted
    # An old kernel's DONE without its payload.
    assert decode(struct.pack("=IHHII", 16, NLMSG_DONE, 0, 3, 0)) == [DoneMsg(3, 0, 0, 0)]


def test_noop_and_unknown_types_are_skipped() -> None:
    noop = struct.pack("=IHHII", 16, NLMSG_NOOP, 0, 0, 0)
    neigh = struct.pack("=IHHII", 16, 28, 0, 0, 0)  # RTM_NEWNEIGH: not ours
    assert decode(noop + neigh + enc_done()) == [DoneMsg(1, 0, NLM_F_MULTI, 0)]


def test_default_routes_and_v6() -> None:
    [v4] = decode(enc_route([("RTA_GATEWAY", "203.0.113.1"), ("RTA_OIF", 2)]))
    assert isinstance(v4, RouteMsg)
    assert (v4.routes[0].dst, v4.routes[0].dst_len, v4.routes[0].dst_num) == ("0.0.0.0", 0, 0)
    [v6] = decode(enc_route([("RTA_GATEWAY", "2001:db8::1")], family=AF_INET6, mtype=RTM_DELROUTE))
    assert isinstance(v6, RouteMsg) and v6.type == RTM_DELROUTE
    assert (v6.routes[0].dst, v6.routes[0].gateway) == ("::", "2001:db8::1")


def test_table_attribute_overrides_rtm_table() -> None:
    [rec] = decode(enc_route([("RTA_TABLE", 1000)], table=252))
    assert isinstance(rec, RouteMsg)
    assert rec.routes[0].table == 1000


def test_dst_host_bits_are_masked() -> None:
    data = enc_route([("RTA_DST", "198.51.100.77")], dst_len=24)
    for _ in range(2):  # walker, then learnt layout
        [rec] = decode(data)
        assert isinstance(rec, RouteMsg)
        assert rec.routes[0].dst == "198.51.100.0"


def test_route_record_helpers() -> None:
    [rec] = decode(
        enc_route(
            [
                ("RTA_DST", "2001:db8:1::"),
                (
                    "RTA_MULTIPATH",
                    [{"oif": 3, "attrs": [("RTA_GATEWAY", "2001:db8::1")]}, {"oif": 4}],
                ),
            ],
            family=AF_INET6,
            dst_len=48,
            tos=0x10,
            src_len=64,
        )
    )
    assert isinstance(rec, RouteMsg)
    route = rec.routes[0]
    assert (route.gateway, route.oif, route.oifs) == ("2001:db8::1", 3, (3, 4))
    assert route.nexthops == (("2001:db8::1", 3, 1, 0), (None, 4, 1, 0))
    text = repr(route)
    assert "2001:db8:1::/48" in text and "nexthops" in text and "tos 16" in text and "from" in text
    plain = route._replace(nexthops=(), oif=None, gateway=None, prefsrc="2001:db8::2")
    assert plain.oifs == ()
    assert "src 2001:db8::2" in repr(plain)
    bare = plain._replace(tos=0, src_len=0, prefsrc=None)
    assert repr(bare) == f"Route(id={route.id}, 2001:db8:1::/48 metric 0 table 254 type 1)"
    assert route._replace(nexthops=(), oif=5).oifs == (5,)
    assert route.same_as(route._replace(id=route.id + 1, rtm_flags=0x10))
    assert not route.same_as(route._replace(priority=7))
    # A Route made by hand with an impossible family or number still prints.
    assert route._replace(family=99).dst == str(route.dst_num)


# -- runs: many messages of one layout, as in a dump -------------------------------------


@st.composite
def route_run(draw: st.DrawFn) -> list[bytes]:
    """Messages with one attribute layout and varying values (a dump's regularity)."""
    family = draw(st.sampled_from([AF_INET, AF_INET6]))
    names = draw(
        st.lists(
            st.sampled_from(
                [
                    "RTA_GATEWAY",
                    "RTA_OIF",
                    "RTA_PRIORITY",
                    "RTA_PREFSRC",
                    "RTA_TABLE",
                    "RTA_NH_ID",
                    "RTA_CACHEINFO",
                    "RTA_METRICS",
                ]
            ),
            unique=True,
        )
    )
    names = ["RTA_DST", *names] if draw(st.integers(0, 5)) else names
    names = draw(st.permutations(names))
    vary = draw(st.sets(st.sampled_from(["hdr", "tos", "proto", "scope", "type", "flags", "len"])))
    mtype = draw(st.sampled_from([RTM_NEWROUTE, RTM_DELROUTE]))
    base = {"seq": draw(u32), "pid": draw(u32), "nl_flags": draw(u16), "tos": 0, "proto": 4}
    base |= {"scope": 0, "rtype": 1, "flags": 0, "dst_len": draw(st.integers(24, 32))}
    if family == AF_INET6:
        base["dst_len"] = draw(st.integers(32, 128))
    # Metrics of one layout (same attributes, so same length); values vary.
    metric_names = draw(st.sampled_from([["RTAX_MTU"], ["RTAX_MTU", "RTAX_ADVMSS"], []]))
    cc_algo = draw(st.sampled_from([None, "cubic"]))
    out = []
    for _ in range(draw(st.integers(1, 40))):
        values: dict[str, Any] = {}
        for name in names:
            if name == "RTA_DST":
                addr, plen = draw(doc_prefix(family))
                values[name] = addr
                if "len" in vary:
                    base["dst_len"] = plen
            elif name in ("RTA_GATEWAY", "RTA_PREFSRC"):
                values[name] = draw(doc_address(family))
            elif name == "RTA_TABLE":
                values[name] = draw(st.sampled_from([254, 255, 1000]))
            elif name == "RTA_CACHEINFO":
                values[name] = cacheinfo(draw(st.sampled_from([0, 0, 30000, -5, 2**31 - 1])))
            elif name == "RTA_METRICS":
                metrics: list[tuple[str, Any]] = [
                    (m, draw(st.sampled_from([1280, 1400, 1500]))) for m in metric_names
                ]
                if cc_algo is not None:
                    metrics.append(("RTAX_CC_ALGO", cc_algo))
                values[name] = {"attrs": metrics}
            elif name == "RTA_NH_ID":
                values[name] = draw(st.sampled_from([1, 7, 0xFFFFFFFF]))
            else:
                values[name] = draw(u32 if name == "RTA_PRIORITY" else ifindex)
        if "RTA_DST" not in names:
            base["dst_len"] = 0
        fields = dict(base)
        if "hdr" in vary:
            fields["seq"] = draw(st.sampled_from([1, 2]))
        for knob, key, strat in (
            ("tos", "tos", u8),
            ("proto", "proto", u8),
            ("scope", "scope", u8),
            ("type", "rtype", u8),
            ("flags", "flags", st.sampled_from([0, 1, 4, 0x15, 0x200, 0xFFFFFFFF])),
        ):
            if knob in vary:
                fields[key] = draw(strat)
        out.append(
            enc_route(
                [(name, values[name]) for name in names],
                mtype=mtype,
                family=family,
                table=254,
                **fields,
            )
        )
    return out


@given(route_run(), st.integers(0, 2))
def test_runs_agree_with_pyroute2(messages: list[bytes], warm: int) -> None:
    buf = b"".join(messages)
    for _ in range(warm):
        decode(messages[0])  # learnt before the run, or not
    got = flat_routes(decode(buf))
    assert [ours(route, hdr) for hdr, route in got] == [ref_route(m) for m in messages]
    assert len({route.id for _, route in got}) == len(got)
    # The same run again, now entirely from the learnt layout, through a memoryview.
    again = flat_routes(decode(memoryview(bytearray(buf))))
    assert [ours(route, hdr) for hdr, route in again] == [ref_route(m) for m in messages]


def test_dump_becomes_one_record_per_datagram() -> None:
    messages = [
        enc_route(
            [("RTA_TABLE", 254), ("RTA_DST", f"198.18.{i // 256}.{i % 256}"), ("RTA_OIF", 2)],
            nl_flags=NLM_F_MULTI,
            seq=5,
            dst_len=32,
        )
        for i in range(300)
    ]
    records = decode(b"".join(messages) + enc_done(seq=5))
    assert [type(r) for r in records] == [RouteMsg, DoneMsg]
    rec = records[0]
    assert isinstance(rec, RouteMsg)
    assert rec[:4] == (RTM_NEWROUTE, NLM_F_MULTI, 5, 0)
    assert [r.dst for r in rec.routes] == [f"198.18.{i // 256}.{i % 256}" for i in range(300)]
    assert {r.oif for r in rec.routes} == {2}


def test_run_broken_by_other_messages_and_layouts() -> None:
    a = [enc_route([("RTA_DST", f"198.51.100.{i}"), ("RTA_OIF", 2)], dst_len=32) for i in range(20)]
    b = enc_route([("RTA_DST", "203.0.113.0"), ("RTA_PRIORITY", 5)], dst_len=24)  # same length
    link = enc_link([("IFLA_IFNAME", "veth0")])
    buf = b"".join(a[:10]) + b + b"".join(a[10:15]) + link + b"".join(a[15:])
    records = decode(buf)
    kinds = [type(r).__name__ for r in records]
    assert kinds == ["RouteMsg", "LinkMsg", "RouteMsg"]
    got = [r.dst for _, r in flat_routes(records)]
    want = [f"198.51.100.{i}" for i in range(10)] + ["203.0.113.0"]
    want += [f"198.51.100.{i}" for i in range(10, 20)]
    assert got == want
    assert flat_routes(records)[10][1].priority == 5


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_bad_prefix_length_inside_a_run(caplog: pytest.LogCaptureFixture, level: int) -> None:
    good = [enc_route([("RTA_DST", f"198.51.100.{i}")], dst_len=32) for i in range(30)]
    bad = bytearray(good[20])
    bad[17] = 40  # dst_len 40 on IPv4
    buf = b"".join(good[:20]) + bytes(bad) + b"".join(good[21:])
    with caplog.at_level(level, logger="lwspy"):
        got = [r.dst for _, r in flat_routes(decode(buf))]
    assert got == [f"198.51.100.{i}" for i in range(30) if i != 20]
    assert ("prefix length 40/0" in caplog.text) is (level == logging.DEBUG)


def test_run_ending_on_a_chunk_boundary() -> None:
    # The first look ahead of a run is filled exactly; what follows must not match.
    first = 1 + nlmsg._RUN_FIRST  # one message walked, then a full look ahead
    for tail in (
        enc_link([("IFLA_IFNAME", "veth0")]),
        enc_route([("RTA_GATEWAY", "198.51.100.1")]),  # same length, other layout
    ):
        msgs = [enc_route([("RTA_DST", f"198.18.0.{i}")], dst_len=32) for i in range(first)]
        records = decode(b"".join(msgs) + tail)
        got = [r.dst for _, r in flat_routes(records)]
        assert got[:first] == [f"198.18.0.{i}" for i in range(first)]
        assert len(_flatten(records)) == first + 1


def test_one_destination_many_prefix_lengths_in_a_run() -> None:
    msgs = [enc_route([("RTA_DST", "198.51.100.0")], dst_len=plen) for plen in range(24, 33)] * 2
    other = [enc_route([("RTA_DST", "198.51.100.128")], dst_len=plen) for plen in range(24, 33)]
    # A link message ends the first run: all its destinations are one address.
    buf = b"".join(msgs) + enc_link([]) + b"".join(other)
    got = [(r.dst, r.dst_len) for _, r in flat_routes(decode(buf))]
    assert got == [(ref_route(m)["dst"], ref_route(m)["dst_len"]) for m in msgs + other]
    assert got[9] == ("198.51.100.0", 24)


def test_ipv6_address_columns_of_a_run_agree_with_pyroute2() -> None:
    # Gateways that differ from route to route, a source the whole run shares.
    msgs = [
        enc_route(
            [
                ("RTA_DST", f"2001:db8:{i:x}::"),
                ("RTA_GATEWAY", f"2001:db8:1::{i % 3 + 1:x}"),
                ("RTA_PREFSRC", "2001:db8:1::99"),
                ("RTA_OIF", 2),
            ],
            family=AF_INET6,
            dst_len=48,
        )
        for i in range(3 * nlmsg._RUN_MIN)
    ]
    got = flat_routes(decode(b"".join(msgs)))
    assert nlmsg._SHAPES  # the run went column-wise
    assert [ours(route, hdr) for hdr, route in got] == [ref_route(m) for m in msgs]
    assert {r.gateway for _, r in got} == {"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"}


def test_a_route_message_of_an_unaligned_length_is_walked_never_learnt() -> None:
    # An unknown last attribute of 1 byte, unpadded: the next message starts 4-aligned.
    msgs = []
    for i in range(2 * nlmsg._RUN_MIN):
        m = bytearray(enc_route([("RTA_DST", f"198.51.100.{i}")], dst_len=32))
        m += struct.pack("=HH", 5, 99) + b"x"
        m[0:4] = struct.pack("=I", len(m))
        msgs.append(bytes(m) + bytes(-len(m) % 4))
    got = [r.dst for _, r in flat_routes(decode(b"".join(msgs)))]
    assert got == [f"198.51.100.{i}" for i in range(2 * nlmsg._RUN_MIN)]
    assert not nlmsg._SHAPES


def test_headers_that_differ_inside_a_run_split_records() -> None:
    msgs = [
        enc_route([("RTA_DST", f"198.51.100.{i}")], dst_len=32, seq=1 + (i >= 12))
        for i in range(24)
    ]
    records = decode(b"".join(msgs))
    assert [(r.seq, len(r.routes)) for r in records if isinstance(r, RouteMsg)] == [
        (1, 12),
        (2, 12),
    ]


def test_layout_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # More layouts of one length than kept: all still decode right.
    names = ["RTA_OIF", "RTA_PRIORITY", "RTA_TABLE", "RTA_MARK", "RTA_FLOW", "RTA_IIF"]
    msgs = [enc_route([("RTA_DST", "198.51.100.0"), (n, 7)], dst_len=24) for n in names]
    assert len({len(m) for m in msgs}) == 1
    for msg in msgs * 2:
        check_route(msg, decode(msg))
        decode(msg * nlmsg._RUN_MIN)  # a run of alike messages is what teaches a layout
    assert len(nlmsg._SHAPES[len(msgs[0])]) == nlmsg._SHAPES_PER_LENGTH
    # More lengths than kept: the cache starts over.
    monkeypatch.setattr(nlmsg, "_SHAPE_LENGTHS_MAX", 2)
    for n in range(4):
        msg = enc_route([("RTA_DST", "198.51.100.0"), *[("RTA_OIF", 3)] * n], dst_len=24)
        check_route(msg, decode(msg))
        decode(msg * nlmsg._RUN_MIN)
    assert len(nlmsg._SHAPES) <= 2


def test_address_text_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlmsg, "_ADDR_CACHE_MAX", 3)
    nlmsg._ADDR_CACHE.clear()
    for i in range(10):
        msg = enc_route([("RTA_GATEWAY", f"203.0.113.{i}")])
        check_route(msg, decode(msg))
    assert len(nlmsg._ADDR_CACHE) <= 3


def test_multipath_and_via_layouts_are_not_learnt() -> None:
    mp = enc_route(
        [("RTA_DST", "198.51.100.0"), ("RTA_MULTIPATH", [{"oif": 2}, {"oif": 3}])], dst_len=24
    )
    via = enc_route([("RTA_VIA", {"family": AF_INET6, "addr": "2001:db8::9"}), ("RTA_OIF", 2)])
    for msg in (mp, via, mp, via):
        check_route(msg, decode(msg))
    assert not nlmsg._SHAPES
    odd = enc_route([("RTA_DST", "198.51.100.0"), ("RTA_PREF", 1)], dst_len=24)[:-3]
    odd = struct.pack("=I", len(odd)) + odd[4:]  # a message whose length is not aligned
    check_route(odd, decode(odd))
    assert not nlmsg._SHAPES


# -- robustness --------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    decode(data)


@given(st.lists(any_message, min_size=1, max_size=6), st.data())
def test_mutated_messages_never_raise(messages: list[bytes], data: st.DataObject) -> None:
    buf = bytearray(b"".join(messages))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(u8)
    decode(bytes(buf))
    decode(bytes(buf))  # with whatever layouts the first pass learnt


@settings(max_examples=40)
@given(st.lists(any_message, min_size=1, max_size=4))
def test_every_truncation_decodes_the_whole_messages(messages: list[bytes]) -> None:
    buf = b"".join(messages)
    full = _flatten(decode(buf))
    ends = []
    pos = 0
    for msg in messages:
        pos += len(msg)
        ends.append(pos)
    for cut in range(len(buf) + 1):
        whole = sum(1 for end in ends if end <= cut)
        assert _flatten(decode(buf[:cut])) == full[:whole]


def _flatten(records: list[NlRecord]) -> list[Any]:
    """One comparable item per message (routes lose their ids)."""
    items: list[Any] = []
    for rec in records:
        if isinstance(rec, RouteMsg):
            items.extend((tuple(rec[:4]), r[: nlmsg._CONTENT_END]) for r in rec.routes)
        else:
            items.append(rec)
    return items


@given(st.lists(any_message, min_size=1, max_size=8))
def test_concatenated_messages_decode_in_order(messages: list[bytes]) -> None:
    one_by_one = [item for msg in messages for item in _flatten(decode(msg))]
    assert _flatten(decode(b"".join(messages))) == one_by_one


def _corrupt(data: bytes, at: int, fmt: str, value: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, at, value)
    return bytes(buf)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_malformed_messages_are_skipped_with_a_debug_log(
    caplog: pytest.LogCaptureFixture, level: int
) -> None:
    route = enc_route([("RTA_DST", "198.51.100.0"), ("RTA_OIF", 2)], dst_len=24)
    link = enc_link([("IFLA_IFNAME", "veth0")])
    addr = enc_addr([("IFA_ADDRESS", "198.51.100.1")])
    done = enc_done()
    flags = enc_addr([("IFA_ADDRESS", "198.51.100.1"), ("IFA_FLAGS", 1)])
    bad = [
        (struct.pack("=IHHII", 20, RTM_NEWROUTE, 0, 0, 0) + bytes(4), "route message too short"),
        (_corrupt(route, 16, "=B", 7), "route family 7"),
        (_corrupt(route, 17, "=B", 33), "prefix length 33/0"),
        (_corrupt(route, 28, "=H", 7), "attribute 1 size 7"),  # an address of the wrong size
        (_corrupt(route, 36, "=H", 200), "attribute overruns message"),
        (_corrupt(route, 36, "=H", 2), "attribute overruns message"),
        (_corrupt(route, 36, "=H", 6), "attribute 4 size 6"),
        (_corrupt(route + bytes(2), 0, "=I", 46) + bytes(2), "attribute header truncated"),
        (struct.pack("=IHHII", 24, RTM_NEWLINK, 0, 0, 0) + bytes(8), "link message too short"),
        (_corrupt(link, 32, "=H", 99), "attribute overruns message"),
        (_corrupt(link + bytes(2), 0, "=I", len(link) + 2) + bytes(2), "overruns"),
        (struct.pack("=IHHII", 20, RTM_NEWADDR, 0, 0, 0) + bytes(4), "address message too short"),
        (_corrupt(addr, 16, "=B", 99), "address family 99"),
        (_corrupt(addr, 24, "=H", 5), "attribute 1 size 5"),
        (_corrupt(addr, 24, "=H", 90), "attribute overruns message"),
        (_corrupt(addr + bytes(2), 0, "=I", len(addr) + 2) + bytes(2), "overruns"),
        (enc_addr([("IFA_LABEL", "veth0")]), "no IFA_ADDRESS or IFA_LOCAL"),
        (_corrupt(flags, 32, "=H", 6), "IFA_FLAGS size 6"),
        (struct.pack("=IHHII", 16, NLMSG_ERROR, 0, 0, 0), "error message too short"),
        (struct.pack("=IHHII", 16, 99, 0, 0, 0), "unhandled type"),
    ]
    debug = level == logging.DEBUG
    for data, why in bad:
        caplog.clear()
        with caplog.at_level(level, logger="lwspy"):
            assert decode(data + done) == [DoneMsg(1, 0, NLM_F_MULTI, 0)], why
        assert (why in caplog.text) is debug, (why, caplog.text)
    # Broken framing ends the walk: a length past the end, a length below a header.
    for data in (_corrupt(route, 0, "=I", 4096), _corrupt(route, 0, "=I", 8)):
        caplog.clear()
        with caplog.at_level(level, logger="lwspy"):
            assert decode(done + data) == [DoneMsg(1, 0, NLM_F_MULTI, 0)]
        assert ("bad length" in caplog.text) is debug
    with caplog.at_level(level, logger="lwspy"):
        decode(done + b"\0" * 7)
    assert ("7 trailing bytes" in caplog.text) is debug


def test_bad_attributes_inside_nested_ones() -> None:
    def mp(hops: bytes) -> bytes:
        return (
            enc_route([("RTA_DST", "198.51.100.0"), ("RTA_MULTIPATH", [{"oif": 2}])], dst_len=24)[
                :36
            ]
            + struct.pack("=HH", 4 + len(hops), 9)
            + hops
        )

    def fixed(data: bytes) -> bytes:
        return _corrupt(data, 0, "=I", len(data))

    gw = struct.pack("=HH4s", 8, 5, socket.inet_aton("203.0.113.1"))
    good_nh = struct.pack("=HBBi", 8 + len(gw), 0, 0, 2) + gw
    [rec] = decode(fixed(mp(good_nh)))
    assert isinstance(rec, RouteMsg) and rec.routes[0].nexthops == (("203.0.113.1", 2, 1, 0),)
    bad_nhs = [
        struct.pack("=HBB", 8, 0, 0),  # rtnexthop truncated
        struct.pack("=HBBi", 4, 0, 0, 2),  # rtnh_len below its own size
        struct.pack("=HBBi", 8 + 3, 0, 0, 2) + b"\0\0\0",  # attribute header truncated
        struct.pack("=HBBi", 12, 0, 0, 2) + struct.pack("=HH", 2, 5),  # attribute too short
        struct.pack("=HBBi", 12, 0, 0, 2) + struct.pack("=HH", 6, 5),  # bad gateway size
        struct.pack("=HBBi", 16, 0, 0, 2) + struct.pack("=HHH", 6, 18, 10) + bytes(2),  # bad via
    ]
    for nh in bad_nhs:
        assert decode(fixed(mp(nh))) == []
    flow = struct.pack("=HH4s", 8, 11, bytes(4))  # RTA_FLOW: not ours, skipped
    [rec] = decode(fixed(mp(struct.pack("=HBBi", 16, 0, 0, 2) + flow)))
    assert isinstance(rec, RouteMsg) and rec.routes[0].nexthops == ((None, 2, 1, 0),)
    via = enc_route([("RTA_VIA", {"family": AF_INET6, "addr": "2001:db8::9"})])
    assert decode(_corrupt(via, 32, "=H", 99)) == []  # RTA_VIA of an unknown family
    short_via = via[:28] + struct.pack("=HHB", 5, 18, 0) + b"\0\0\0"
    assert decode(fixed(short_via)) == []  # RTA_VIA without room for its family


def test_logging_is_free_when_debug_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lwspy"):
        assert decode(b"\xff" * 40) == []
    assert caplog.text == ""


def test_link_and_addr_details() -> None:
    [link] = decode(enc_link([("IFLA_IFNAME", "veth0")], flags=0x1003, family=7))
    assert isinstance(link, LinkMsg) and link.up and link.name == "veth0" and link.family == 7
    raw = bytearray(enc_link([("IFLA_IFNAME", "abc")]))
    raw[36:39] = b"\xff\xfe\x00"  # not UTF-8, NUL inside
    [odd] = decode(bytes(raw))
    assert isinstance(odd, LinkMsg) and odd.name == "\ufffd\ufffd"
    unterminated = enc_link([]) + struct.pack("=HH4s", 8, 3, b"eth9")
    [named] = decode(_corrupt(unterminated, 0, "=I", len(unterminated)))
    assert isinstance(named, LinkMsg) and named.name == "eth9"
    [addr] = decode(enc_addr([("IFA_LOCAL", "198.51.100.1")], flags=0x80))
    assert isinstance(addr, AddrMsg) and addr.address == addr.local == "198.51.100.1"


# -- requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "cls"),
    [
        (RTM_GETLINK, ifinfmsg),
        (RTM_GETADDR, ifaddrmsg),
        (RTM_GETROUTE, rtmsg),
        (RTM_GETNEXTHOP, nhmsg),
    ],
)
@pytest.mark.parametrize("family", [0, AF_INET, AF_INET6])
def test_dump_request_matches_pyroute2(msg_type: int, cls: Any, family: int) -> None:
    msg = cls()
    _header(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP, 77, 0)
    msg["family"] = family
    msg.encode()
    assert dump_request(msg_type, family, 77) == bytes(msg.data)


def test_dump_request_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="msg_type 24"):
        dump_request(RTM_NEWROUTE, AF_INET, 1)
    with pytest.raises(ValueError, match="family 7"):
        dump_request(RTM_GETROUTE, 7, 1)
    with pytest.raises(ValueError, match="seq"):
        dump_request(RTM_GETROUTE, AF_INET, -1)


def test_subscription_groups() -> None:
    from pyroute2.netlink import rtnl

    want = (
        rtnl.RTMGRP_LINK
        | rtnl.RTMGRP_IPV4_IFADDR
        | rtnl.RTMGRP_IPV6_IFADDR
        | rtnl.RTMGRP_IPV4_ROUTE
        | rtnl.RTMGRP_IPV6_ROUTE
    )
    assert want == RTMGRP_SUBSCRIBE
    for name in ("RTM_NEWLINK", "RTM_DELADDR", "RTM_GETROUTE", "RTNLGRP_IPV6_ROUTE"):
        assert getattr(nlmsg, name) == getattr(rtnl, name)
    for name in ("NLM_F_REPLACE", "NLM_F_APPEND", "NLM_F_DUMP", "NLMSG_DONE"):
        from pyroute2 import netlink

        assert getattr(nlmsg, name) == getattr(netlink, name)


def test_modules_import_no_pyroute2_and_no_io_layers() -> None:
    import ast
    import pathlib

    from lwspy.net import route

    for module in (nlmsg, route):
        tree = ast.parse(pathlib.Path(str(module.__file__)).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        for name in names:
            assert not name.startswith(("pyroute2", "asyncio", "lwspy.core", "lwspy.roles")), name


# -- metrics, lifetimes, nexthop ids -----------------------------------------------------


def _metrics_route(payload: bytes, dst: str = "198.51.100.0") -> bytes:
    """A host route message whose RTA_METRICS payload is ``payload`` as given (padded)."""
    base = enc_route([("RTA_DST", dst)], dst_len=32)
    pad = bytes(-len(payload) % 4)
    body = base + struct.pack("=HH", 4 + len(payload), 8) + payload + pad
    return _corrupt(body, 0, "=I", len(body))


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_malformed_metrics_and_cacheinfo_are_skipped(
    caplog: pytest.LogCaptureFixture, level: int
) -> None:
    good = _metrics_route(struct.pack("=HHI", 8, 2, 1400))
    [rec] = decode(good)
    assert isinstance(rec, RouteMsg) and rec.routes[0].metrics == ((2, 1400),)
    bad = [
        _metrics_route(b"\x08\x00"),  # nested header truncated
        _metrics_route(struct.pack("=HH", 2, 2)),  # nested length below its header
        _metrics_route(struct.pack("=HHI", 12, 2, 1400)),  # nested attribute overruns
        _metrics_route(struct.pack("=HHH", 6, 2, 1400)),  # a u32 metric of 2 bytes
    ]
    short_ci = enc_route([("RTA_DST", "198.51.100.0")], dst_len=24)
    short_ci += struct.pack("=HHII", 12, 12, 0, 0)  # rta_cacheinfo cut before rta_expires
    bad.append(_corrupt(short_ci, 0, "=I", len(short_ci)))
    with caplog.at_level(level, logger="lwspy"):
        for data in bad:
            assert decode(data) == []
    assert ("RTA_METRICS malformed" in caplog.text) is (level == logging.DEBUG)
    assert ("attribute 12 size 12" in caplog.text) is (level == logging.DEBUG)


def test_a_bad_metric_inside_a_run_is_left_to_the_walker() -> None:
    good = [
        _metrics_route(struct.pack("=HHI", 8, 2, 1280 + i), dst=f"203.0.113.{i}") for i in range(30)
    ]
    good[20] = _metrics_route(struct.pack("=HHHxx", 6, 2, 1400), dst="203.0.113.20")
    got = [(r.dst, r.metrics) for _, r in flat_routes(decode(b"".join(good)))]
    assert got == [(f"203.0.113.{i}", ((2, 1280 + i),)) for i in range(30) if i != 20]


def test_metrics_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlmsg, "_ADDR_CACHE_MAX", 3)
    nlmsg._METRICS_CACHE.clear()
    for i in range(10):
        msg = enc_route([("RTA_METRICS", {"attrs": [("RTAX_MTU", 1280 + i)]})])
        check_route(msg, decode(msg))
    assert len(nlmsg._METRICS_CACHE) <= 3


def test_route_repr_says_nexthop_object_and_lifetime() -> None:
    [rec] = decode(
        enc_route(
            [("RTA_DST", "2001:db8:9::"), ("RTA_NH_ID", 7), ("RTA_CACHEINFO", cacheinfo(250))],
            family=AF_INET6,
            dst_len=64,
        )
    )
    assert isinstance(rec, RouteMsg)
    text = repr(rec.routes[0])
    assert "nhid 7" in text and "expires 2.5s" in text


def test_a_skipped_nexthop_message_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    data = _corrupt(enc_nexthop([("NHA_ID", 1)])[:20], 0, "=I", 20)
    with caplog.at_level(logging.DEBUG, logger="lwspy"):
        assert decode(data) == []
    assert "nexthop message too short" in caplog.text
