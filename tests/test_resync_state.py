"""A resync (7A's sliced swap) carries 7B's state: nexthop objects, dead paths, expiry.

The dump's state wins: a live route equal in content to the dump's but in another state
is swapped like a changed route; one equal in both keeps its id and its state. Only
documentation addresses and 198.18.0.0/15.
"""

from __future__ import annotations

from lwspy.net.nlmsg import AF_INET, RTM_NEWNEXTHOP, NexthopMsg, Route
from lwspy.net.route import RouteDiff, RouteTable
from tests.test_resync import host, steps_of
from tests.test_route import copy, dump, rt


def _multipath(nh_dead: int = 0) -> Route:
    return rt(
        "203.0.113.0/24",
        gateway="198.51.100.2",
        oif=2,
        nexthops=(("198.51.100.2", 2), ("203.0.113.194", 3), ("198.51.100.3", 4)),
        nh_dead=nh_dead,
    )


def _v6(expires: float) -> Route:
    return rt("2001:db8:5::/64", gateway="2001:db8::2", priority=1024, expires=expires)


def _nexthop(nhid: int) -> NexthopMsg:
    return NexthopMsg(
        RTM_NEWNEXTHOP, 0, 0, 0, AF_INET, 0, 0, 0, nhid, 2, "198.51.100.2", False, (), 0, False
    )


def test_a_route_whose_dead_paths_differ_from_the_dumps_is_swapped() -> None:
    live, fresh = RouteTable(), RouteTable()
    mp = _multipath()
    live.load(dump(mp, host(1)))
    dumped = copy(mp, nh_dead=0b010)  # a link went down while events were lost
    fresh.load(dump(dumped, copy(host(1))), like=live)
    assert fresh.lookup("203.0.113.9") is dumped  # not shared: another state
    _, delta = steps_of(live, fresh, 1)
    assert delta.added == [dumped] and delta.removed == [mp]
    assert live.dead_paths(dumped) == 0b010 and live.dead_paths(mp) == 0
    assert live.link_down(4) == [] and live.dead_paths(dumped) == 0b110
    assert dumped in live.link_down(2)  # the kernel's rule, on the dump's state


def test_a_route_in_the_same_state_is_shared_and_its_state_comes_along() -> None:
    live, fresh = RouteTable(), RouteTable()
    mp = _multipath(nh_dead=0b001)
    live.load(dump(mp))
    fresh.load(dump(copy(mp, nh_dead=0b001)), like=live)
    assert fresh.lookup("203.0.113.9") is mp and fresh.dead_paths(mp) == 0b001  # moved
    fresh.link_down(3)  # a replayed link down, onto the dump's table
    assert fresh.dead_paths(mp) == 0b011 and live.dead_paths(mp) == 0b001
    _, delta = steps_of(live, fresh, 0)
    assert delta == RouteDiff()  # the same route: no change to announce ...
    assert live.dead_paths(mp) == 0b011  # ... but the dump's dead paths
    assert live.link_down(4) == [mp]


def test_an_equal_route_found_by_the_resync_moves_its_state_too() -> None:
    live, fresh = RouteTable(), RouteTable()
    mp, other = _multipath(nh_dead=0b100), rt("203.0.113.0/24", oif=7)
    live.load(dump(mp, other))
    twin = copy(mp, nh_dead=0b100)
    fresh.get(0)  # an index on fresh: nothing is shared while it loads
    fresh.load(dump(twin, copy(other)))
    assert fresh.lookup("203.0.113.9") is twin
    _, delta = steps_of(live, fresh, 0)
    assert delta == RouteDiff() and live.lookup("203.0.113.9") is mp
    assert live.dead_paths(mp) == 0b100


def test_expiry_state_follows_the_dump() -> None:
    live = RouteTable()
    expired, stale, plain = _v6(5.0), _v6(30.0), rt("2001:db8:6::/64", priority=256)
    stale = stale._replace(dst_num=stale.dst_num + (1 << 64))  # 2001:db8:5:1::/64
    live.load(dump(expired, stale, plain))
    assert sorted(r.id for r in live.take_expiring()) == sorted((expired.id, stale.id))
    assert live.expire(expired)
    fresh = RouteTable()
    again = copy(expired, expires=1800.0)  # deleted and added again while events were lost
    past = copy(stale, expires=-3.0)  # the live timer has not fired yet
    fresh.load(dump(again, past, copy(plain)), like=live)
    _, delta = steps_of(live, fresh, 2)
    assert sorted(r.id for r in delta.added) == sorted((again.id, past.id))
    assert sorted(r.id for r in delta.removed) == sorted((expired.id, stale.id))
    assert not live.expired(again) and live.lookup("2001:db8:5::1") is again
    assert live.lookup("2001:db8:6::1") is plain  # unchanged: kept
    assert sorted(r.id for r in live.take_expiring()) == sorted((again.id, past.id))
    # A route expired in the live table that the dump also shows expired stays one.
    fresh2 = RouteTable()
    assert live.expire(again) and live.expire(past)  # what the role's timer does
    fresh2.load(dump(copy(again, expires=-1.0), copy(past), copy(plain)), like=live)
    assert fresh2.lookup("2001:db8:5::1") is again  # shared
    assert steps_of(live, fresh2, 0)[1] == RouteDiff()
    assert live.expired(again) and live.take_expiring() == []


def test_nexthop_objects_come_from_the_dump_even_when_no_route_changed() -> None:
    live, fresh = RouteTable(), RouteTable()
    kept = host(1)
    live.load(dump(kept))
    live.apply_nexthop(_nexthop(7))
    fresh.apply_nexthop(_nexthop(8))
    fresh.load(dump(copy(kept)), like=live)
    assert steps_of(live, fresh, 0)[1] == RouteDiff()
    assert set(live.nexthops) == {8}


def test_holds_looks_for_a_path_only_within_the_deletes_key() -> None:
    table = RouteTable()
    multi = _multipath()
    table.load(dump(multi))
    # IPv4: the kernel's DELROUTE carries the whole route; one path of it is no route.
    assert table.holds(copy(multi))
    assert not table.holds(rt("203.0.113.0/24", gateway="203.0.113.194", oif=3))
    multi6 = rt(
        "2001:db8:9::/64",
        gateway="2001:db8:1::2",
        oif=2,
        nexthops=(("2001:db8:1::2", 2), ("2001:db8:3::2", 3)),
    )
    table.load(dump(multi6))
    one_path = rt("2001:db8:9::/64", gateway="2001:db8:3::2", oif=3)
    assert table.holds(one_path)  # IPv6: one sibling of a multipath route
    assert not table.holds(one_path._replace(priority=5))  # another metric: another key
    assert not table.holds(rt("203.0.113.0/24", table=7))  # a table not kept
