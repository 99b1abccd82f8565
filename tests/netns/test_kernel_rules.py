"""The table's identity of a route is the kernel's, and what the kernel drops without a
word is dropped here too (issue 7, part B).

Each test sets up what a real host does in the lab's namespaces, compares ``ctx.routes``
with ``ip -j route show table all`` as a multiset with the attributes that tell routes
apart (metric, mtu, onlink, nexthop object, the paths of a multipath route), and checks
which connections close and why. Traffic stays on the lab's documentation addresses;
198.18.0.0/15 carries none.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from lwspy import Context, SystemState, WsiState
from tests.netns.conftest import RTN_NAMES, Lab
from tests.netns.test_routing import Net

pytestmark = pytest.mark.netns

RTAX_MTU = 2
RTNH_F_ONLINK = 4
# A second link between the namespaces: va2 (in "a") -- vb2 (in "b").
A2_ADDR = "203.0.113.193"
B2_ADDR = "203.0.113.194"
A2_ADDR6 = "2001:db8:3::1"
B2_ADDR6 = "2001:db8:3::2"


def second_link(lab: Lab) -> None:
    """va2 -- vb2 with 203.0.113.192/26 and 2001:db8:3::/64, both ends up."""
    subprocess.run(
        [
            *("ip", "link", "add", "va2", "netns", lab.ns["a"]),
            *("type", "veth", "peer", "name", "vb2", "netns", lab.ns["b"]),
        ],
        check=True,
    )
    for ns, dev, v4, v6 in (("a", "va2", A2_ADDR, A2_ADDR6), ("b", "vb2", B2_ADDR, B2_ADDR6)):
        lab.ip(ns, "addr", "add", f"{v4}/26", "dev", dev)
        lab.ip(ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
        lab.ip(ns, "link", "set", dev, "up")


Item = tuple[object, ...]


def kernel_multiset(lab: Lab, ns: str = "a", family: int | None = None) -> Counter[Item]:
    """Tables main and local, one item per kernel route (duplicates kept), with what
    tells two routes of one prefix apart (the paths of a multipath route sorted: the
    kernel announces a joined IPv6 sibling first, and dumps it in table order)."""
    index = {name: idx for idx, name in socket.if_nameindex()}
    out: Counter[Item] = Counter()
    for fam, dst, table, r in lab.kernel_json(ns, family):
        mtu = next((m["mtu"] for m in r.get("metrics", ()) if "mtu" in m), None)
        hops = tuple(
            sorted(
                (h.get("gateway"), index.get(h["dev"]), h.get("weight", 1))
                for h in r.get("nexthops", ())
            )
        )
        gateway, dev = r.get("gateway"), index.get(r.get("dev", ""))
        nhid = r.get("nhid", 0)
        if hops or nhid:
            gateway = dev = None  # the paths (or the nexthop object) say it
        if nhid:
            hops = ()  # shown only where nexthop_compat_mode is on
        out[
            (
                int(fam),
                dst,
                table,
                r.get("type", "unicast"),
                gateway,
                dev,
                r.get("metric", 0),
                mtu,
                "onlink" in r.get("flags", ()),
                nhid,
                hops,
            )
        ] += 1
    return out


def table_multiset(table: Iterable[Any], family: int | None = None) -> Counter[Item]:
    """lwspy's table in the form of :func:`kernel_multiset` (read with defaults, so the
    same test runs against a table that lacks the newer fields)."""
    out: Counter[Item] = Counter()
    for r in table:
        if family is not None and r.family != family:
            continue
        metrics = dict(getattr(r, "metrics", ()))
        hops = tuple(sorted((h[0], h[1], h[2] if len(h) > 2 else 1) for h in r.nexthops))
        nhid = getattr(r, "nhid", 0)
        gateway, dev = r.gateway, r.oif
        if hops or nhid:
            gateway = dev = None
        if nhid:
            hops = ()
        out[
            (
                r.family,
                f"{r.dst}/{r.dst_len}",
                r.table,
                RTN_NAMES.get(r.type, str(r.type)),
                gateway,
                dev,
                r.priority,
                metrics.get(RTAX_MTU),
                bool(getattr(r, "nh_flags", r.rtm_flags) & RTNH_F_ONLINK),
                nhid,
                hops,
            )
        ] += 1
    return out


def check_kernel(net: Net, family: int | None = None) -> None:
    """lwspy's table equals the kernel's as a multiset (of one family, if given), once
    late events are in."""
    table = net.a.routes
    assert table is not None
    for _ in range(100):
        if table_multiset(table, family) == kernel_multiset(net.lab, family=family):
            return
        for _ in range(4):
            net.service()
    mine, kernel = table_multiset(table, family), kernel_multiset(net.lab, family=family)
    assert mine == kernel, (mine - kernel, kernel - mine)


@pytest.fixture
def net(lab: Lab) -> Iterator[Net]:
    n = Net(lab)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def net2(lab: Lab) -> Iterator[Net]:
    """The lab with a second link (va2 -- vb2) made before lwspy starts."""
    second_link(lab)
    n = Net(lab)
    try:
        yield n
    finally:
        n.close()


# -- the table's identity of a route is the kernel's -----------------------------------


def test_ipv6_routes_of_one_metric_on_two_links_are_two_routes(net2: Net) -> None:
    # Cold plug with two IPv6 links: fe80::/64 and ff00::/8 on each.
    check_kernel(net2)
    far6 = net2.connect(Lab.PEER6)  # 2001:db8:2::/64 via 2001:db8:1::2 dev va
    # The same prefix and metric on the other link, without a gateway: a route of its own.
    net2.lab.ip("a", "-6", "route", "append", "2001:db8:2::/64", "dev", "va2")
    net2.settle()
    check_kernel(net2)
    net2.lab.ip("a", "link", "del", "va2")  # takes its route, not the one over va
    net2.settle()
    check_kernel(net2)
    assert net2.alive(far6), far6.close_reason


def test_ipv6_ecmp_siblings_join_and_part_as_the_kernel_says(net2: Net) -> None:
    net2.lab.ip("a", "-6", "route", "append", "2001:db8:2::/64", "via", B2_ADDR6, "dev", "va2")
    net2.settle()
    check_kernel(net2)  # one multipath route with both paths
    net2.lab.ip("a", "-6", "route", "del", "2001:db8:2::/64", "via", B2_ADDR6, "dev", "va2")
    net2.settle()
    check_kernel(net2)


def test_ipv4_routes_differing_in_mtu_or_onlink_are_kept_apart(net: Net) -> None:
    far = net.connect(Lab.PEER)
    lab = net.lab
    lab.ip("a", "route", "append", "203.0.113.0/24", "via", Lab.B_ADDR, "mtu", "1400")
    lab.ip("a", "route", "append", "203.0.113.0/24", "via", Lab.B_ADDR, "dev", "va", "onlink")
    lab.ip("a", "route", "append", "198.18.0.0/24", "via", Lab.B_ADDR, "mtu", "1400")
    lab.ip("a", "route", "append", "198.18.0.0/24", "via", Lab.B_ADDR, "mtu", "1300")
    net.settle()
    check_kernel(net)
    # The first of the three aliases goes; the kernel routes by the next one.
    lab.ip("a", "route", "del", "203.0.113.0/24", "via", Lab.B_ADDR)
    lab.ip("a", "route", "del", "198.18.0.0/24", "via", Lab.B_ADDR, "mtu", "1300")
    net.settle()
    check_kernel(net)
    assert net.alive(far), far.close_reason


def test_tables_whose_numbers_alias_main_local_or_the_other_family_are_not_kept(
    net: Net,
) -> None:
    far = net.connect(Lab.PEER)
    far6 = net.connect(Lab.PEER6)
    lab = net.lab
    # (AF_INET << 8) | 766 == (AF_INET << 8) | 254, 767 likewise with 255, and 2302
    # with the IPv6 main table: none of these is main or local.
    lab.ip("a", "route", "add", "blackhole", f"{Lab.PEER}/32", "table", "766")
    lab.ip("a", "route", "add", "blackhole", f"{Lab.PEER}/32", "table", "767")
    lab.ip("a", "route", "add", "blackhole", "0.0.0.0/0", "table", "2302")
    lab.ip("a", "-6", "route", "add", "blackhole", f"{Lab.PEER6}/128", "table", "2814")
    net.settle()
    check_kernel(net)
    assert net.a.routes is not None
    assert net.a.routes.routable(Lab.PEER) and net.a.routes.routable(Lab.PEER6)
    assert net.alive(far) and net.alive(far6), (far.close_reason, far6.close_reason)


@pytest.mark.parametrize(
    "second",
    [("198.51.100.1/25",), ("198.51.100.1", "peer", "198.51.100.77")],
    ids=["other-prefix-length", "point-to-point"],
)
def test_an_address_held_twice_on_a_link_loses_one_copy_only(
    net: Net, second: tuple[str, ...]
) -> None:
    lab = net.lab
    lab.ip("a", "addr", "add", *second, "dev", "va")
    net.settle()
    far = net.connect(Lab.PEER)
    assert far.local is not None and far.local[0] == Lab.A_ADDR
    lab.ip("a", "addr", "del", *second, "dev", "va")
    net.settle()
    check_kernel(net)  # the link's routes stay: it still holds 198.51.100.1/24
    assert net.alive(far), far.close_reason
    lab.ip("a", "addr", "del", f"{Lab.A_ADDR}/24", "dev", "va")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "source address gone"
    check_kernel(net)


# -- what the kernel flushes without a word ----------------------------------------------


def test_ipv4_multipath_goes_when_its_last_path_dies(net2: Net) -> None:
    lab = net2.lab
    lab.ip(
        "a",
        *("route", "replace", "203.0.113.0/24"),
        *("nexthop", "via", Lab.B_ADDR, "dev", "va"),
        *("nexthop", "via", B2_ADDR, "dev", "va2"),
    )
    net2.settle()
    far = net2.connect(Lab.PEER, iface=Lab.A_ADDR)
    check_kernel(net2, socket.AF_INET)
    lab.ip("a", "link", "set", "va2", "down")  # one path dead: the route stays
    net2.settle()
    check_kernel(net2, socket.AF_INET)
    assert net2.alive(far), far.close_reason
    lab.ip("a", "link", "set", "va2", "up")  # and lives again
    net2.settle()
    lab.ip("a", "link", "set", "va", "down")
    net2.settle()
    check_kernel(net2, socket.AF_INET)
    assert net2.alive(far), far.close_reason
    # Now the path over va2 dies with its link's last IPv4 address: no path is left.
    lab.ip("a", "addr", "del", f"{A2_ADDR}/26", "dev", "va2")
    net2.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    check_kernel(net2, socket.AF_INET)
    check_kernel(net2)  # and IPv6 (two links) too


def test_a_scope_host_route_survives_link_down(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "route", "add", f"{Lab.PEER}/32", "dev", "va", "scope", "host")
    lab.ip("a", "route", "add", "198.18.6.0/24", "dev", "va", "scope", "host")
    net.settle()
    far = net.connect(Lab.PEER)
    lab.ip("a", "link", "set", "va", "down")
    net.settle()
    check_kernel(net)  # the scope host routes stay; 203.0.113.0/24 via 198.51.100.2 went
    assert net.alive(far), far.close_reason  # the kernel still has its route


def test_a_local_table_route_with_src_survives_the_deletion_of_src(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "addr", "add", "198.51.100.9/24", "dev", "va")
    lab.ip(
        "a",
        *("route", "add", "table", "local", "203.0.113.0/25", "via", Lab.B_ADDR),
        *("src", "198.51.100.9"),
    )
    lab.ip("a", "route", "add", "198.18.8.0/24", "via", Lab.B_ADDR, "src", "198.51.100.9")
    net.settle()
    on_src = net.connect(Lab.PEER)  # takes the route's source
    on_primary = net.connect(Lab.PEER, iface=Lab.A_ADDR)
    assert on_src.local is not None and on_src.local[0] == "198.51.100.9"
    lab.ip("a", "addr", "del", "198.51.100.9/24", "dev", "va")
    net.service_until(lambda: on_src.state is WsiState.CLOSED)
    assert on_src.close_reason == "source address gone"
    net.settle()
    check_kernel(net)  # table local keeps its route; main's "src" route went
    assert net.alive(on_primary), on_primary.close_reason


def _nexthops(lab: Lab) -> dict[int, dict[str, Any]]:
    return {nh["id"]: nh for nh in json.loads(lab.ip("a", "-j", "nexthop", "show") or "[]")}


def test_nexthop_objects_and_groups_take_their_routes_along(net2: Net) -> None:
    lab = net2.lab
    lab.ip("a", "nexthop", "add", "id", "10", "via", Lab.B_ADDR, "dev", "va")
    lab.ip("a", "nexthop", "add", "id", "11", "via", B2_ADDR, "dev", "va2")
    lab.ip("a", "nexthop", "add", "id", "12", "group", "10/11")
    lab.ip("a", "route", "replace", "203.0.113.0/24", "nhid", "12")
    lab.ip("a", "route", "add", "198.18.10.0/24", "nhid", "10")
    net2.settle()
    far = net2.connect(Lab.PEER)
    check_kernel(net2, socket.AF_INET)
    table = net2.a.routes
    assert table is not None
    assert set(table.nexthops) == set(_nexthops(lab)) == {10, 11, 12}
    lab.ip("a", "nexthop", "del", "id", "10")  # 198.18.10.0/24 goes; the group shrinks
    net2.settle()
    check_kernel(net2, socket.AF_INET)
    assert net2.alive(far), far.close_reason
    assert table.nexthops[12].group == ((11, 1),)
    lab.ip("a", "nexthop", "del", "id", "11")  # the group goes, and its route
    net2.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    check_kernel(net2, socket.AF_INET)
    assert set(table.nexthops) == set(_nexthops(lab)) == set()
    check_kernel(net2)  # and IPv6 (two links) too


def test_nexthop_objects_go_with_their_links_carrier(net2: Net) -> None:
    lab = net2.lab
    lab.ip("a", "nexthop", "add", "id", "20", "via", B2_ADDR, "dev", "va2")
    lab.ip("a", "nexthop", "add", "id", "21", "blackhole")
    lab.ip("a", "route", "replace", "203.0.113.0/24", "nhid", "20")
    lab.ip("a", "route", "add", "198.18.11.0/24", "nhid", "21")
    net2.settle()
    far = net2.connect(Lab.PEER)
    lab.ip("b", "link", "set", "vb2", "down")  # va2 stays up, without carrier
    net2.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    check_kernel(net2, socket.AF_INET)
    assert net2.a.routes is not None
    assert set(net2.a.routes.nexthops) == set(_nexthops(lab)) == {21}
    assert not net2.a.routes.routable("198.18.11.1")  # over a blackhole nexthop
    check_kernel(net2)  # and IPv6 (two links) too


def test_nexthop_objects_with_compat_mode_off(net: Net) -> None:
    lab = net.lab
    lab.sysctl("a", "net.ipv4.nexthop_compat_mode", "0")
    lab.ip("a", "-6", "nexthop", "add", "id", "30", "via", Lab.B_ADDR6, "dev", "va")
    lab.ip("a", "nexthop", "add", "id", "31", "via", Lab.B_ADDR, "dev", "va")
    lab.ip("a", "-6", "route", "replace", "2001:db8:2::/64", "nhid", "30")
    lab.ip("a", "route", "replace", "203.0.113.0/24", "nhid", "31")
    net.settle()
    far6 = net.connect(Lab.PEER6)
    far = net.connect(Lab.PEER)
    check_kernel(net)
    lab.ip("a", "nexthop", "del", "id", "30")  # no RTM_DELROUTE for the IPv6 route
    net.service_until(lambda: far6.state is WsiState.CLOSED)
    assert far6.close_reason == "route lost"
    check_kernel(net)
    assert net.alive(far), far.close_reason
    lab.ip("a", "nexthop", "replace", "id", "31", "blackhole")  # its route now drops
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    check_kernel(net)


def test_nexthop_objects_are_dumped_at_cold_plug(lab: Lab) -> None:
    lab.ip("a", "nexthop", "add", "id", "40", "via", Lab.B_ADDR, "dev", "va")
    lab.ip("a", "nexthop", "add", "id", "41", "group", "40")
    lab.ip("a", "route", "replace", "203.0.113.0/24", "nhid", "41")
    ctx = Context(netlink=True)
    try:
        for _ in range(400):
            ctx.service(5)
            if ctx.system.state is SystemState.OPERATIONAL:
                break
        assert ctx.routes is not None
        assert table_multiset(ctx.routes) == kernel_multiset(lab)
        assert set(ctx.routes.nexthops) == {40, 41}
        assert ctx.routes.nexthops[41].group == ((40, 1),)
        lab.ip("a", "nexthop", "del", "id", "40")
        for _ in range(20):
            ctx.service(5)
        assert table_multiset(ctx.routes) == kernel_multiset(lab)
        assert not ctx.routes.routable(Lab.PEER)
    finally:
        ctx.destroy()


# -- IPv6 lifetimes ----------------------------------------------------------------------


def _service_for(net: Net, cond: Any, seconds: float) -> None:
    """Service until ``cond()`` holds, for at most ``seconds`` of wall time (a bound on
    waiting for the kernel's clock, not a timing assertion)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        net.service()
    raise AssertionError("condition not reached")


def test_an_ipv6_route_stops_routing_at_its_expiry(net: Net) -> None:
    lab = net.lab
    lab.sysctl("a", "net.ipv6.route.gc_interval", "3600")  # the kernel keeps it listed
    lab.ip("a", "-6", "route", "replace", "2001:db8:2::/64", "via", Lab.B_ADDR6, "expires", "2")
    net.settle()
    far6 = net.connect(Lab.PEER6)
    far = net.connect(Lab.PEER)
    _service_for(net, lambda: far6.state is WsiState.CLOSED, 15)
    assert far6.close_reason == "route lost"
    assert "2001:db8:2::/64" in lab.ip("a", "-6", "route", "show")  # not yet deleted
    check_kernel(net)  # still in both tables, used by neither
    assert net.a.routes is not None and not net.a.routes.routable(Lab.PEER6)
    assert net.alive(far)


def _send_ra(lab: Lab, lifetime: int) -> None:
    """A router advertisement from b's link-local address on vb: a default route for
    "a" with this lifetime (ICMPv6 type 134; the kernel fills in the checksum)."""
    with lab.inside("b"):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            index = socket.if_nametoindex("vb")
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, lifetime, 0, 0)
            sock.sendto(ra, ("ff02::1", 0, 0, index))
        finally:
            sock.close()


def test_an_ipv6_lifetime_extended_without_a_message_is_followed(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "-6", "route", "del", "2001:db8:2::/64")  # the peer goes by the default
    # The router's link-local address must be past duplicate address detection.
    _service_for(net, lambda: "tentative" not in lab.ip("b", "-6", "addr", "show", "dev", "vb"), 10)
    table, watcher = net.a.routes, net.a._netlink
    assert table is not None and watcher is not None

    def default() -> Any:
        return next((r for r in table if r.family == socket.AF_INET6 and not r.dst_len), None)

    _send_ra(lab, 3)
    _service_for(net, lambda: default() is not None, 10)
    far6 = net.connect(Lab.PEER6)
    route = default()
    due = watcher._deadlines[route.id][0]
    _send_ra(lab, 60)  # the kernel extends the lifetime and says nothing
    # At the old expiry lwspy asks the kernel, and moves its deadline on.
    _service_for(net, lambda: watcher._deadlines[route.id][0] > due + 30, 15)
    assert net.alive(far6), far6.close_reason
    assert table.routable(Lab.PEER6) and default() is route
    check_kernel(net)
