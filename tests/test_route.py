"""lwspy.net.route: longest-prefix match, route identity, and what netlink changes.

Only documentation addresses: 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15 and
2001:db8::/32.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwspy.net.nlmsg import (
    AF_INET,
    AF_INET6,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    RT_SCOPE_HOST,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTM_DELNEXTHOP,
    RTM_DELROUTE,
    RTM_F_CLONED,
    RTM_GETROUTE,
    RTM_NEWNEXTHOP,
    RTM_NEWROUTE,
    RTN_BLACKHOLE,
    RTN_LOCAL,
    RTN_PROHIBIT,
    RTN_THROW,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTNH_F_IDENTITY,
    RTPROT_RA,
    DoneMsg,
    Metrics,
    NextHop,
    NexthopMsg,
    Route,
    RouteMsg,
    next_route_id,
)
from lwspy.net.route import NexthopChange, RouteChange, RouteDiff, RouteTable

V4_NETS = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")]
V6_NET = ipaddress.ip_network("2001:db8::/32")


def rt(
    dst: str = "198.51.100.0/24",
    *,
    gateway: str | None = None,
    oif: int | None = 2,
    priority: int = 0,
    table: int = RT_TABLE_MAIN,
    rtype: int = RTN_UNICAST,
    prefsrc: str | None = None,
    tos: int = 0,
    src: str | None = None,
    src_len: int = 0,
    nexthops: tuple[tuple[str | None, int], ...] | tuple[NextHop, ...] = (),
    protocol: int = 4,
    scope: int = 0,
    rtm_flags: int = 0,
    metrics: Metrics = (),
    nhid: int = 0,
    nh_dead: int = 0,
    expires: float = 0.0,
) -> Route:
    """A route as the decoder would make it (a fresh id each time); a path given as
    ``(gateway, oif)`` has weight 1 and no flags."""
    net = ipaddress.ip_network(dst)
    family = AF_INET if net.version == 4 else AF_INET6
    hops = tuple((*hop, 1, 0) if len(hop) == 2 else hop for hop in nexthops)
    return Route(
        family,
        int(net.network_address),
        net.prefixlen,
        table,
        priority,
        tos,
        src,
        src_len,
        rtype,
        gateway,
        oif,
        prefsrc,
        protocol,
        scope,
        hops,  # type: ignore[arg-type]
        rtm_flags & RTNH_F_IDENTITY,
        metrics,
        nhid,
        rtm_flags,
        nh_dead,
        expires,
        next_route_id(),
    )


def new(*routes: Route, nl_flags: int = NLM_F_CREATE) -> RouteMsg:
    return RouteMsg(RTM_NEWROUTE, nl_flags, 0, 0, routes)


def gone(*routes: Route) -> RouteMsg:
    return RouteMsg(RTM_DELROUTE, 0, 0, 0, routes)


def dump(*routes: Route) -> list[Any]:
    return [RouteMsg(RTM_NEWROUTE, NLM_F_MULTI, 1, 0, routes), DoneMsg(1, 0, NLM_F_MULTI, 0)]


def copy(route: Route, **changes: Any) -> Route:
    """The same kernel route as a later message would carry it: same content, new id."""
    return route._replace(id=next_route_id(), **changes)


# -- lookup ------------------------------------------------------------------------------


def test_longest_prefix_then_lowest_priority() -> None:
    table = RouteTable()
    default = rt("0.0.0.0/0", gateway="203.0.113.1")
    wide = rt("198.51.100.0/24", priority=100)
    wide_better = rt("198.51.100.0/24", priority=10)
    narrow = rt("198.51.100.128/25", priority=500)
    table.load(dump(default, wide, wide_better, narrow))
    assert table.lookup("198.51.100.7") is wide_better
    assert table.lookup("198.51.100.200") is narrow
    assert table.lookup("203.0.113.9") is default
    assert table.lookup("2001:db8::1") is None
    assert len(table) == 4


def test_lookup_accepts_strings_and_ipaddress_objects() -> None:
    table = RouteTable()
    v4 = rt("198.51.100.0/24")
    v6 = rt("2001:db8::/32", oif=3)
    table.load(dump(v4, v6))
    assert table.lookup(ipaddress.IPv4Address("198.51.100.1")) is v4
    assert table.lookup(ipaddress.IPv6Address("2001:db8::5")) is v6
    assert table.lookup("2001:db8::5%eth0") is v6  # a zone is ignored
    assert table.lookup("::ffff:198.51.100.9") is v4  # IPv4-mapped counts as IPv4
    assert table.lookup(ipaddress.IPv6Address("::ffff:198.51.100.9")) is v4
    assert table.routable("198.51.100.1")


@pytest.mark.parametrize(
    "bad", ["", "example.test", "198.51.100", "198.51.100.1/24", "2001:db8::g"]
)
def test_lookup_rejects_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        RouteTable().lookup(bad)


def test_lookup_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="expected str or ipaddress address, got int"):
        RouteTable().lookup(3325256705)  # type: ignore[arg-type]


@pytest.mark.parametrize("rtype", [RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT, RTN_THROW])
def test_blocking_route_types_match_but_are_not_routable(rtype: int) -> None:
    table = RouteTable()
    default = rt("0.0.0.0/0", gateway="203.0.113.1")
    block = rt("198.51.100.0/24", rtype=rtype, oif=None)
    table.load(dump(default, block))
    assert table.lookup("198.51.100.1") is block
    assert not table.routable("198.51.100.1")
    assert table.routable("203.0.113.5")
    assert not table.routable("2001:db8::1")  # no route at all


def test_local_table_first_and_throw_goes_on_to_main() -> None:
    table = RouteTable()
    local = rt("198.51.100.1/32", table=RT_TABLE_LOCAL, rtype=RTN_LOCAL)
    longer_in_main = rt("198.51.100.0/24")
    table.load(dump(local, longer_in_main))
    assert table.lookup("198.51.100.1") is local
    # A throw in local moves on to main; a throw in main is the answer (not routable).
    throw_local = rt("203.0.113.0/24", table=RT_TABLE_LOCAL, rtype=RTN_THROW, oif=None)
    main = rt("203.0.113.0/25")
    table.load(dump(throw_local, main))
    assert table.lookup("203.0.113.1") is main
    assert table.lookup("203.0.113.200") is throw_local
    assert not table.routable("203.0.113.200")


def test_other_tables_and_cloned_routes_are_ignored() -> None:
    table = RouteTable()
    other = rt("198.51.100.0/24", table=1000)
    default_table = rt("203.0.113.0/24", table=253)
    cloned = rt("2001:db8::1/128", rtm_flags=RTM_F_CLONED)
    assert table.load(dump(other, default_table, cloned)) == 0
    assert table.apply_route(new(other, default_table, cloned)) == []
    assert table.apply_route(gone(other, cloned)) == []
    assert table.add(other) is None
    assert table.delete(cloned) is None
    assert len(table) == 0 and table.generation == 0
    assert table.lookup("198.51.100.1") is None


def test_tos_and_source_specific_routes_do_not_serve_plain_lookups() -> None:
    table = RouteTable()
    plain = rt("198.51.100.0/24")
    tos = rt("198.51.100.0/25", tos=0x10)
    from_src = rt("2001:db8:1::/48", src="2001:db8:2::", src_len=48)
    v6 = rt("2001:db8::/32")
    table.load(dump(plain, tos, from_src, v6))
    assert table.lookup("198.51.100.1") is plain
    assert table.lookup("2001:db8:1::1") is v6
    # Same prefix: the plain route is preferred whatever the metrics.
    tos_same = rt("198.51.100.0/24", tos=0x10, priority=0)
    table.add(tos_same)
    table.add(copy(plain, priority=50))
    assert table.lookup("198.51.100.1") is plain


@st.composite
def tables(draw: st.DrawFn) -> list[Route]:
    """Random routes with distinct (table, prefix, metric) so insertion order is moot."""
    routes = []
    seen = set()
    for _ in range(draw(st.integers(0, 40))):
        v6 = draw(st.booleans())
        if v6:
            plen = draw(st.integers(32, 128))
            addr = V6_NET.network_address + draw(st.integers(0, V6_NET.num_addresses - 1))
        else:
            net = draw(st.sampled_from(V4_NETS))
            plen = draw(st.integers(net.prefixlen, 32))
            addr = net.network_address + draw(st.integers(0, net.num_addresses - 1))
        if draw(st.integers(0, 15)) == 0:
            plen = 0
        prefix = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        which = draw(st.sampled_from([RT_TABLE_MAIN, RT_TABLE_MAIN, RT_TABLE_LOCAL, 1000]))
        priority = draw(st.sampled_from([0, 10, 100, 1024]))
        key = (which, str(prefix), priority)
        if key in seen:
            continue
        seen.add(key)
        rtype = draw(st.sampled_from([RTN_UNICAST] * 5 + [RTN_BLACKHOLE, RTN_THROW, RTN_LOCAL]))
        routes.append(rt(str(prefix), table=which, priority=priority, rtype=rtype))
    return routes


def reference_lookup(routes: list[Route], addr: str) -> Route | None:
    """Brute force: local then main, longest prefix, lowest metric; throw moves on."""
    ip = ipaddress.ip_address(addr)
    thrown = None
    for which in (RT_TABLE_LOCAL, RT_TABLE_MAIN):
        best = None
        for route in routes:
            if route.table != which or (route.family == AF_INET) != (ip.version == 4):
                continue
            net = ipaddress.ip_network(f"{route.dst}/{route.dst_len}")
            if ip in net and (
                best is None or (route.dst_len, -route.priority) > (best.dst_len, -best.priority)
            ):
                best = route
        if best is not None:
            if best.type != RTN_THROW:
                return best
            thrown = best
    return thrown


@given(tables(), st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20), st.data())
def test_lookup_matches_brute_force(
    routes: list[Route], picks: list[int], data: st.DataObject
) -> None:
    table = RouteTable()
    if data.draw(st.booleans()):
        table.load(dump(*routes))
    else:
        for route in routes:
            table.add(route)
    assert len(table) == sum(r.table in (RT_TABLE_MAIN, RT_TABLE_LOCAL) for r in routes)
    for pick in picks:
        v4net = V4_NETS[pick % 3]
        v4 = str(v4net.network_address + pick % v4net.num_addresses)
        v6 = str(V6_NET.network_address + (pick * 0x9E3779B97F4A7C15) % V6_NET.num_addresses)
        for addr in (v4, v6):
            assert table.lookup(addr) is reference_lookup(routes, addr)
    # Taking them out one by one keeps lookups right.
    for i, route in enumerate(routes):
        table.delete(copy(route))
        left = routes[i + 1 :]
        addr = v4 if route.family == AF_INET else v6
        assert table.lookup(addr) is reference_lookup(left, addr)
    assert len(table) == 0
    assert list(table) == []


# -- changes -----------------------------------------------------------------------------


def test_add_delete_and_generation() -> None:
    table = RouteTable()
    route = rt("198.51.100.0/24", gateway="203.0.113.1")
    assert table.generation == 0
    [change] = table.apply_route(new(route))
    assert change == RouteChange(added=route, removed=None)
    assert table.generation == 1 and route in table and table.get(route.id) is route
    # The same route again (a repeated notification, a re-dump) changes nothing.
    assert table.apply_route(new(copy(route))) == []
    assert table.add(copy(route, rtm_flags=0x10)) is None  # flags such as linkdown do not count
    assert table.generation == 1 and table.get(route.id) is route
    [change] = table.apply_route(gone(copy(route)))
    assert change == RouteChange(added=None, removed=route)
    assert table.generation == 2 and route not in table and table.get(route.id) is None
    assert table.apply_route(gone(copy(route))) == []
    assert table.delete(copy(route, priority=9)) is None
    assert table.generation == 2
    assert table.apply_route(RouteMsg(RTM_GETROUTE, 0, 0, 0, (route,))) == []
    assert route not in table and "not a route" not in table
    assert repr(table) == "<RouteTable 0 routes, generation 2>"


def test_replace_gives_a_new_id() -> None:
    table = RouteTable()
    old = rt("198.51.100.0/24", gateway="203.0.113.1")
    table.add(old)
    newer = rt("198.51.100.0/24", gateway="203.0.113.2")
    [change] = table.apply_route(new(newer, nl_flags=NLM_F_REPLACE | NLM_F_CREATE))
    assert change == RouteChange(added=newer, removed=old)
    assert newer.id != old.id
    assert table.lookup("198.51.100.1") is newer
    assert table.get(old.id) is None and table.get(newer.id) is newer
    assert len(table) == 1


def test_ipv6_ecmp_joins_by_a_shared_path_and_parts_a_path_at_a_time() -> None:
    table = RouteTable()
    old = rt("2001:db8::/48", gateway="2001:db8::1", priority=1024)
    table.add(old)
    both = rt(
        "2001:db8::/48",
        priority=1024,
        gateway="2001:db8::1",
        oif=2,
        nexthops=(("2001:db8::1", 2), ("2001:db8::2", 3)),
    )
    [change] = table.apply_route(new(both, nl_flags=NLM_F_CREATE | NLM_F_APPEND))
    assert change == RouteChange(added=both, removed=old)
    assert len(table) == 1
    # Deleting one path of the multipath route leaves the other, under a new id.
    [change] = table.apply_route(
        gone(rt("2001:db8::/48", priority=1024, gateway="2001:db8::2", oif=3))
    )
    assert change.removed is both
    left = change.added
    assert left is not None and left.id not in (both.id, old.id)
    assert (left.gateway, left.oif, left.nexthops) == ("2001:db8::1", 2, ())
    assert table.lookup("2001:db8::9") is left
    # Deleting the whole route by its content.
    [change] = table.apply_route(gone(copy(left)))
    assert change.removed is left and len(table) == 0
    # A delete naming every path of a multipath route takes all of it, even if the rest
    # of what it says is stale.
    table.add(both)
    [change] = table.apply_route(gone(copy(both, protocol=99)))
    assert change == RouteChange(added=None, removed=both) and len(table) == 0


def test_ipv4_aliases_append_prepend_and_replace_the_first() -> None:
    table = RouteTable()
    first = rt("198.51.100.0/24", gateway="203.0.113.1")
    table.add(first, NLM_F_CREATE)
    appended = rt("198.51.100.0/24", gateway="203.0.113.2")
    table.add(appended, NLM_F_CREATE | NLM_F_APPEND)
    prepended = rt("198.51.100.0/24", gateway="203.0.113.3")
    table.add(prepended, NLM_F_CREATE)
    assert len(table) == 3
    assert table.lookup("198.51.100.1") is prepended
    replacement = rt("198.51.100.0/24", gateway="203.0.113.4")
    [change] = table.apply_route(new(replacement, nl_flags=NLM_F_CREATE | NLM_F_REPLACE))
    assert change.removed is prepended and table.lookup("198.51.100.1") is replacement
    # A delete names the alias by its content.
    [change] = table.apply_route(gone(copy(appended)))
    assert change.removed is appended
    # Not an echo of a route here: the kernel deleted another route (one this table
    # already flushed, say): no alias of that key is taken instead.
    assert table.apply_route(gone(copy(first, gateway="203.0.113.99"))) == []
    assert sorted(r.id for r in table) == sorted((first.id, replacement.id))
    [change] = table.apply_route(gone(copy(replacement)))
    assert change.removed is replacement
    assert list(table) == [first]
    # A dump lists aliases in order: they stay in that order.
    fresh = RouteTable()
    a, b = rt("198.51.100.0/24", oif=5), rt("198.51.100.0/24", oif=6)
    fresh.load(dump(a, b, rt("198.51.100.0/24", priority=5)))
    assert fresh.lookup("198.51.100.1") is a
    assert [r.oif for r in fresh] == [5, 6, 2]


def test_metric_order_inside_a_prefix() -> None:
    table = RouteTable()
    worse, better, middle = (rt("198.51.100.0/24", priority=p) for p in (300, 100, 200))
    for route in (worse, better, middle):
        table.add(route)
    assert table.lookup("198.51.100.1") is better
    table.delete(copy(better))
    assert table.lookup("198.51.100.1") is middle
    table.delete(copy(middle))
    assert table.lookup("198.51.100.1") is worse


# -- what the kernel removes without telling ----------------------------------------------


def test_drop_link() -> None:
    table = RouteTable()
    on2 = rt("198.51.100.0/24", oif=2)
    on2_v6 = rt("2001:db8::/64", oif=2)
    on3 = rt("203.0.113.0/24", oif=3)
    local2 = rt("198.51.100.1/32", oif=2, table=RT_TABLE_LOCAL, rtype=RTN_LOCAL)
    both = rt("198.18.0.0/15", nexthops=(("203.0.113.1", 2), ("198.51.100.1", 3)))
    only2 = rt("198.18.0.0/16", nexthops=(("203.0.113.1", 2), ("203.0.113.2", 2)))
    blackhole = rt("198.18.1.0/24", oif=None, rtype=RTN_BLACKHOLE)
    table.load(dump(on2, on2_v6, on3, local2, both, only2, blackhole))
    assert set(table.routes_via_link(2)) == {on2, on2_v6, local2, both, only2}
    assert table.routes_via_link(9) == []
    generation = table.generation
    dropped = table.drop_link(2, family=AF_INET)
    assert set(dropped) == {on2, local2, only2}
    assert table.generation == generation + 1
    assert set(table) == {on2_v6, on3, both, blackhole}
    assert set(table.routes_via_link(2)) == {on2_v6, both}
    assert table.drop_link(2) == [on2_v6]
    assert table.drop_link(2) == []
    assert table.generation == generation + 2
    # The link index follows later changes.
    later = rt("198.51.100.0/24", oif=2)
    table.add(later)
    assert table.routes_via_link(2) == [both, later]
    table.delete(copy(later))
    assert table.routes_via_link(2) == [both]
    assert table.routes_via_link(3) == [on3, both]
    table.delete(copy(on3))
    table.delete(copy(both))
    assert table.routes_via_link(3) == []


def test_drop_prefsrc() -> None:
    table = RouteTable()
    connected = rt("198.51.100.0/24", prefsrc="198.51.100.7", scope=253)
    other = rt("203.0.113.0/24", prefsrc="203.0.113.7")
    table.load(dump(connected, other, rt("198.18.0.0/15")))
    assert table.routes_with_prefsrc("198.51.100.7") == [connected]
    assert table.drop_prefsrc("198.51.100.7") == [connected]
    assert table.drop_prefsrc("198.51.100.7") == []
    assert len(table) == 2
    again = copy(connected)
    table.add(again)
    assert table.routes_with_prefsrc("198.51.100.7") == [again]
    table.delete(copy(other))
    assert table.routes_with_prefsrc("203.0.113.7") == []
    host = rt("198.51.100.9/32", prefsrc="198.51.100.7")
    table.add(host)
    table.delete(copy(again))
    assert table.routes_with_prefsrc("198.51.100.7") == [host]


def test_get_finds_routes_by_id_after_changes() -> None:
    table = RouteTable()
    routes = [rt(f"198.51.100.{i}/32") for i in range(20)]
    table.load(dump(*routes))
    assert all(table.get(r.id) is r for r in routes)
    extra = rt("203.0.113.0/24")
    table.add(extra)
    table.delete(copy(routes[0]))
    assert table.get(extra.id) is extra and table.get(routes[0].id) is None
    # With side indexes built, a dump goes the general way and keeps them right.
    more = [rt(f"198.18.0.{i}/32") for i in range(20)]
    table.load(dump(*more))
    assert all(table.get(r.id) is r for r in more)


# -- cold plug ---------------------------------------------------------------------------


def test_load_counts_and_skips_what_is_not_a_new_route() -> None:
    table = RouteTable()
    routes = [rt(f"198.18.{i // 256}.{i % 256}/32", gateway="198.51.100.1") for i in range(600)]
    records = [*dump(*routes[:300]), *dump(*routes[300:]), gone(routes[0])]
    assert table.load(records) == 600
    assert table.generation == 1 and len(table) == 600
    assert table.lookup("198.18.1.7") is routes[263]
    assert table.load(records) == 0  # all there already
    assert table.generation == 1


def test_load_batches_that_are_not_simple() -> None:
    table = RouteTable()
    mixed_tables = [
        rt(f"198.51.100.{i}/32", table=RT_TABLE_LOCAL if i % 2 else 254) for i in range(10)
    ]
    with_clone = [rt(f"198.51.100.{i}/32") for i in range(10)]
    with_clone[3] = rt("198.51.100.3/32", rtm_flags=RTM_F_CLONED)
    other_table = [rt(f"203.0.113.{i}/32", table=7) for i in range(10)]
    aliases = [rt(f"198.18.0.{i // 2}/32", oif=2 + i % 2) for i in range(10)]
    assert table.load(dump(*mixed_tables)) == 10
    table2 = RouteTable()
    assert table2.load(dump(*with_clone)) == 9
    assert table2.load(dump(*other_table)) == 0
    assert table2.load(dump(*aliases)) == 10
    assert len(table2) == 19
    assert [r.oif for r in table2 if r.dst == "198.18.0.2"] == [2, 3]
    # Some prefixes of a batch already present: the general path, nothing lost.
    overlap = [rt(f"198.18.0.{i}/32", oif=9) for i in range(3, 13)]
    assert table2.load(dump(*overlap)) == 10
    assert len(table2) == 29


# -- re-dump after ENOBUFS ---------------------------------------------------------------


def test_snapshot_diff_and_resync() -> None:
    live = RouteTable()
    keep = rt("198.51.100.0/24", gateway="203.0.113.1")
    lost = rt("203.0.113.0/24")
    live.load(dump(keep, lost, rt("2001:db8::/64")))
    snap = live.snapshot()
    assert len(snap) == 3 and snap.generation == live.generation
    assert snap.diff(live) == RouteDiff()
    live.delete(copy(lost))
    assert len(snap) == 3 and snap.lookup("203.0.113.1") is lost  # independent
    fresh = RouteTable()
    came = rt("198.18.0.0/15", oif=4)
    fresh.load(dump(copy(keep), came, rt("2001:db8::/64")))
    delta = snap.diff(fresh)
    assert delta.added == [came] and delta.removed == [lost]
    assert bool(delta) and not RouteDiff()
    generation = snap.generation
    assert snap.resync(fresh) == delta
    assert snap.generation == generation + 1
    assert snap.lookup("198.51.100.1") is keep  # unchanged routes keep their ids
    assert snap.lookup("198.18.0.1") is came
    assert snap.lookup("203.0.113.1") is None
    assert snap.resync(fresh) == RouteDiff() and snap.generation == generation + 1
    # Indexes are rebuilt after a resync.
    assert snap.routes_via_link(4) == [came] and snap.get(keep.id) is keep


def test_resync_keeps_ids_inside_multi_route_prefixes() -> None:
    live = RouteTable()
    a, b = rt("198.51.100.0/24", oif=5), rt("198.51.100.0/24", oif=6)
    live.load(dump(a, b))
    fresh = RouteTable()
    c = rt("198.51.100.0/24", oif=7)
    fresh.load(dump(copy(a), c))
    delta = live.resync(fresh)
    assert delta.added == [c] and delta.removed == [b]
    assert list(live) == [a, c]


def test_iteration_is_safe_while_changing() -> None:
    table = RouteTable()
    routes = [rt(f"198.51.100.{i}/32") for i in range(10)]
    table.load(dump(*routes))
    for route in table:
        table.delete(copy(route))
    assert len(table) == 0


# -- the kernel's identity of a route ---------------------------------------------------


def test_tables_are_keyed_by_family_and_table_not_packed_into_one_int() -> None:
    table = RouteTable()
    # (AF_INET << 8) | 766 == (AF_INET << 8) | 254, and | 2302 == (AF_INET6 << 8) | 254
    for number in (766, 767, 2302):
        assert table.add(rt("0.0.0.0/0", rtype=RTN_BLACKHOLE, table=number)) is None
    assert len(table) == 0 and table.lookup("203.0.113.1") is None
    assert table.add(rt("::/0", rtype=RTN_BLACKHOLE, table=2814)) is None
    assert not table.delete(rt("0.0.0.0/0", table=766))


def test_ipv6_routes_of_one_metric_on_different_links_coexist() -> None:
    table = RouteTable()
    va = rt("fe80::/64", oif=2, priority=256, protocol=2)
    vc = rt("fe80::/64", oif=5, priority=256, protocol=2)
    table.load(dump(va, vc))
    assert len(table) == 2 and table.lookup("fe80::1") is va
    # A gatewayed route joins one of them as ECMP: the kernel announces the whole set.
    gw = rt("2001:db8:8::/64", gateway="2001:db8:1::2", oif=2, priority=1024)
    table.add(gw)
    both = rt(
        "2001:db8:8::/64",
        gateway="2001:db8:3::2",
        oif=5,
        priority=1024,
        nexthops=(("2001:db8:3::2", 5), ("2001:db8:1::2", 2)),
    )
    [change] = table.apply_route(new(both, nl_flags=NLM_F_CREATE | NLM_F_APPEND))
    assert change == RouteChange(added=both, removed=gw)
    # Deleting one link's route leaves the other's.
    [change] = table.apply_route(gone(copy(vc)))
    assert change.removed is vc and list(table.routes_via_link(2)) == [va, both]
    # An echo that is not exact takes the route with a path in common, not the first.
    again = rt("fe80::/64", oif=5, priority=256, protocol=2)
    table.add(again)
    [change] = table.apply_route(gone(copy(again, protocol=3)))
    assert change.removed is again and table.lookup("fe80::1") is va
    # One on a link the table has no route of that key for names no route here.
    assert table.apply_route(gone(rt("fe80::/64", oif=9, priority=256, protocol=2))) == []
    assert table.lookup("fe80::1") is va


def test_ipv6_replace_takes_the_first_route_that_can_form_ecmp_like_it() -> None:
    table = RouteTable()
    dev = rt("2001:db8:8::/64", oif=2, priority=1024)
    ra = rt("2001:db8:8::/64", gateway="fe80::1", oif=3, priority=1024, protocol=RTPROT_RA)
    gw = rt("2001:db8:8::/64", gateway="2001:db8:1::2", oif=2, priority=1024)
    table.load(dump(dev, ra, gw))
    assert len(table) == 3
    newer = rt("2001:db8:8::/64", gateway="2001:db8:1::3", oif=2, priority=1024)
    [change] = table.apply_route(new(newer, nl_flags=NLM_F_REPLACE))
    assert change.removed is gw
    nothing_alike = rt("2001:db8:8::/64", gateway="2001:db8:1::4", oif=2, priority=1024, nhid=7)
    [change] = table.apply_route(new(nothing_alike, nl_flags=NLM_F_REPLACE))
    assert change.removed is dev  # no other route that cannot form ECMP: the first


def test_ipv4_aliases_differ_by_metrics_onlink_weight_and_nexthop_object() -> None:
    table = RouteTable()
    base = rt("203.0.113.0/24", gateway="198.51.100.2")
    variants = [
        base,
        copy(base, metrics=((2, 1400),)),
        copy(base, metrics=((2, 1300),)),
        rt("203.0.113.0/24", gateway="198.51.100.2", rtm_flags=4),  # onlink
        copy(base, nhid=10),
    ]
    for route in variants:
        assert table.add(route, NLM_F_APPEND) is not None
    assert table.add(copy(variants[1]), NLM_F_APPEND) is None  # the same route again
    assert len(table) == 5
    [change] = table.apply_route(gone(copy(variants[2])))
    assert change.removed is variants[2] and len(table) == 4
    assert table.lookup("203.0.113.1") is base
    table.add(rt("198.18.0.0/24", nexthops=(("198.51.100.2", 2, 1, 0), ("203.0.113.2", 3, 1, 0))))
    table.add(
        rt("198.18.0.0/24", nexthops=(("198.51.100.2", 2, 3, 0), ("203.0.113.2", 3, 1, 0))),
        NLM_F_APPEND,
    )
    assert len(table) == 6  # the weights tell the two multipath routes apart


# -- what the kernel drops without a word ------------------------------------------------


def test_multipath_goes_when_its_last_path_dies_and_paths_come_back() -> None:
    table = RouteTable()
    mp = rt("203.0.113.0/24", nexthops=(("198.51.100.2", 2), ("203.0.113.194", 3)))
    single = rt("198.18.1.0/24", gateway="198.51.100.2", oif=2)
    host = rt("198.18.2.1/32", oif=2, scope=RT_SCOPE_HOST)
    v6 = rt("2001:db8:5::/64", oif=2)
    table.load(dump(mp, single, host, v6))
    assert table.link_down(3) == []
    assert table.dead_paths(mp) == 0b10 and table.lookup("203.0.113.1") is mp
    table.link_up(3)
    assert table.dead_paths(mp) == 0
    assert table.link_down(2) == [single]  # the scope host route and IPv6 stay
    assert table.dead_paths(mp) == 0b01
    assert table.link_down(3) == [mp]
    assert table.link_down(2, force=True) == [host]
    assert list(table) == [v6]
    table.link_up(2)  # nothing dead left: nothing to do
    empty = RouteTable()
    assert empty.link_down(2) == [] and empty.drop_prefsrc("198.51.100.1") == []


def test_dead_paths_come_from_the_message_and_follow_a_resync() -> None:
    table = RouteTable()
    mp = rt("203.0.113.0/24", nexthops=(("198.51.100.2", 2), ("203.0.113.194", 3)), nh_dead=0b10)
    table.load(dump(mp))  # a dead path is noted, so the bulk path is not taken
    assert table.dead_paths(mp) == 0b10
    table.link_up(3)
    assert table.dead_paths(mp) == 0
    table.link_down(3)
    snap = table.snapshot()
    assert snap.dead_paths(mp) == 0b10
    fresh = RouteTable()
    fresh.load(dump(copy(mp, nh_dead=0b10)))
    assert table.resync(fresh) == RouteDiff() and table.dead_paths(mp) == 0b10
    assert table.link_down(2) == [mp]


def test_only_table_main_loses_routes_with_a_deleted_source() -> None:
    table = RouteTable()
    main = rt("198.18.8.0/24", gateway="198.51.100.2", prefsrc="198.51.100.9")
    local = rt("203.0.113.0/25", gateway="198.51.100.2", prefsrc="198.51.100.9", table=255)
    table.load(dump(main, local))
    assert table.drop_prefsrc("198.51.100.9") == [main]
    assert list(table) == [local]


def nh(
    nh_id: int,
    *,
    oif: int | None = 2,
    gateway: str | None = "198.51.100.2",
    blackhole: bool = False,
    group: tuple[tuple[int, int], ...] = (),
    mtype: int = RTM_NEWNEXTHOP,
) -> NexthopMsg:
    if blackhole or group:
        oif = gateway = None
    return NexthopMsg(
        mtype, 0, 0, 0, AF_INET, 0, 0, 0, nh_id, oif, gateway, blackhole, group, 0, False
    )


def test_nexthop_objects_take_their_routes_and_groups_along() -> None:
    table = RouteTable()
    for msg in (nh(10), nh(11, oif=3, gateway="203.0.113.194"), nh(12, group=((10, 1), (11, 1)))):
        assert table.apply_nexthop(msg) == NexthopChange()
    r10 = rt("198.18.10.0/24", gateway="198.51.100.2", nhid=10)
    r12 = rt("203.0.113.0/24", nhid=12, oif=None)
    r6 = rt("2001:db8:2::/64", nhid=10, oif=None)
    table.load(dump(r10, r12))
    table.add(r6)
    assert table.routes_with_nexthop(10) == [r10, r6]
    change = table.apply_nexthop(nh(10, mtype=RTM_DELNEXTHOP))
    assert change.removed == [r10, r6] and change.changed == [r12]
    assert change.nexthops == {10, 12}  # gone, and shrunk
    assert table.nexthops[12].group == ((11, 1),) and table.routable("203.0.113.1")
    # The kernel's own group update after that changes nothing more.
    assert table.apply_nexthop(nh(12, group=((11, 1),))) == NexthopChange()
    # The last member goes with its link's carrier: the group and its route go too.
    change = table.flush_nexthops(3)
    assert change.removed == [r12] and not table.nexthops and len(table) == 0
    assert change.nexthops == {11, 12}  # the link's, and the group it left empty
    assert table.flush_nexthops(3) == NexthopChange()
    assert table.apply_nexthop(nh(99, mtype=RTM_DELROUTE)) == NexthopChange()


def test_a_nexthop_that_turns_blackhole_retypes_and_blocks_its_routes() -> None:
    table = RouteTable()
    table.apply_nexthop(nh(31))
    table.apply_nexthop(nh(32, group=((31, 1),)))
    direct = rt("203.0.113.0/24", nhid=31, oif=None)
    grouped = rt("198.18.3.0/24", nhid=32, oif=None)
    other = rt("198.18.4.0/24", nhid=77, oif=None, rtype=RTN_LOCAL)  # unknown nexthop: trusted
    table.load(dump(direct, grouped, other))
    table.link_down(9)  # builds nothing odd: no route there
    assert table.routable("203.0.113.1") and table.routable("198.18.4.1")
    change = table.apply_nexthop(nh(31, blackhole=True))
    assert sorted(r.id for r in change.changed) == sorted((direct.id, grouped.id))
    assert all(r.type == RTN_BLACKHOLE for r in change.changed)
    assert table.lookup("203.0.113.1") == direct._replace(type=RTN_BLACKHOLE)
    assert not table.routable("203.0.113.1") and not table.routable("198.18.3.1")
    back = table.apply_nexthop(nh(31))
    assert all(r.type == RTN_UNICAST for r in back.changed)
    assert table.routable("198.18.3.1")
    table.apply_nexthop(nh(33, blackhole=True))
    table.apply_nexthop(nh(34, group=((31, 1), (33, 1))))
    assert table.forwards(rt("198.18.5.0/24", nhid=34))  # a group of two never drops


def test_retype_keeps_path_and_expiry_state() -> None:
    table = RouteTable()
    table.apply_nexthop(nh(40, oif=2))
    route = rt("2001:db8:9::/64", nhid=40, oif=None, expires=30.0)
    table.add(route)
    assert table.take_expiring() == [route]
    assert table.expire(route) and not table.expire(route)
    change = table.apply_nexthop(nh(40, blackhole=True))
    [now] = change.changed
    assert now.id == route.id and table.expired(now) and table.take_expiring() == []


def test_an_expired_ipv6_route_is_passed_over_until_it_comes_again() -> None:
    table = RouteTable()
    short = rt("2001:db8:2::/64", gateway="2001:db8:1::2", priority=1024, expires=2.0)
    longer = rt("2001:db8:2::/64", gateway="2001:db8:3::2", oif=3, priority=2048)
    wide = rt("2001:db8::/32", gateway="2001:db8:1::2", priority=1024, expires=-1.0)
    table.load(dump(short, longer, wide))
    assert table.take_expiring() == [short, wide] and table.take_expiring() == []
    assert table.lookup("2001:db8:2::1") is short
    assert table.expire(short) and table.lookup("2001:db8:2::1") is longer
    assert table.expire(wide)
    table.delete(copy(longer))
    assert table.lookup("2001:db8:2::1") is None  # every route there expired
    # The same route again (a replace with a new lifetime): usable, same id.
    table.apply_route(new(copy(short, expires=60.0), nl_flags=NLM_F_REPLACE))
    again = table.lookup("2001:db8:2::1")
    assert again is not None and again.id == short.id and again.expires == 60.0
    assert table.take_expiring() == [again]
    assert table.apply_route(new(copy(again))) == [] and table.take_expiring() == []
    assert not table.expire(short)  # the old object is no longer in the table
    gone_route = rt("2001:db8:7::/64", expires=5.0)
    table.add(gone_route)
    table.delete(copy(gone_route))
    assert table.take_expiring() == []


def test_ipv6_routes_over_different_nexthop_objects_are_different_routes() -> None:
    table = RouteTable()
    for compat in (True, False):  # the path shown (nexthop_compat_mode=1) or none
        table.clear()
        path = {"gateway": "2001:db8:1::2", "oif": 2} if compat else {"oif": None}
        six, seven, eight = (
            rt("2001:db8:9::/64", priority=1024, nhid=n, **path)  # type: ignore[arg-type]
            for n in (6, 7, 8)
        )
        for route in (six, seven, eight):
            [change] = table.apply_route(new(route, nl_flags=NLM_F_CREATE | NLM_F_APPEND))
            assert change.removed is None
        assert len(table) == 3
        # A route over an object one here uses is that route (the kernel never adds a
        # duplicate, rt6_duplicate_nexthop): taken in its place, not beside it.
        [change] = table.apply_route(new(copy(seven, protocol=3), nl_flags=NLM_F_CREATE))
        assert change.removed is seven
        # A delete names its object: 6's, not 8's of the same path.
        assert table.apply_route(gone(rt("2001:db8:9::/64", priority=1024, nhid=9))) == []
        [change] = table.apply_route(gone(copy(six, protocol=9)))
        assert change.removed is six and len(table) == 2 and eight in table
        assert table.holds(copy(eight)) and not table.holds(copy(six))


def test_a_delete_matching_nothing_changes_nothing() -> None:
    table = RouteTable()
    va = rt("198.51.100.0/24", oif=2, prefsrc="198.51.100.1", protocol=2, scope=253)
    vb = rt("198.51.100.0/24", oif=3, prefsrc="198.51.100.50", protocol=2, scope=253)
    table.load(dump(va, vb))
    table.link_down(3, force=True)  # vb's link lost its last address: flushed silently
    assert list(table) == [va]
    generation = table.generation
    assert table.apply_route(gone(copy(vb))) == []  # the kernel's late DELROUTE for vb
    assert list(table) == [va] and table.generation == generation
