"""RouteTable.resync_slices and load(like=): a re-dump swapped in a bounded slice at a time.

Only documentation addresses and 198.18.0.0/15.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwspy.net.nlmsg import NLM_F_APPEND, Route
from lwspy.net.route import RouteDiff, RouteTable
from tests.test_route import copy, dump, new, rt

BASE = int(ipaddress.IPv4Address("198.18.0.0"))


def host(i: int, **kw: object) -> Route:
    return rt(f"{ipaddress.IPv4Address(BASE + i)}/32", **kw)  # type: ignore[arg-type]


def steps_of(live: RouteTable, fresh: RouteTable, size: int) -> tuple[int, RouteDiff]:
    """Run a sliced resync to its end: (how many steps gave None, the diff)."""
    for nones, delta in enumerate(live.resync_slices(fresh, size)):
        if delta is not None:
            return nones, delta
    raise AssertionError("no result")


def test_slices_leave_the_table_alone_until_the_last_step() -> None:
    live, fresh = RouteTable(), RouteTable()
    old = [host(i) for i in range(100)]
    live.load(dump(*old))
    fresh.load(dump(*[copy(r) for r in old[10:]], *[host(i) for i in range(100, 130)]))
    generation = live.generation
    steps = live.resync_slices(fresh, 16)
    seen = 0
    while (delta := next(steps)) is None:
        seen += 1
        assert len(live) == 100 and live.lookup("198.18.0.1") is old[1]  # unchanged so far
        assert live.generation == generation
    # 120 fresh prefixes, then the 10 only the live table has: 130 compared, 16 a step
    assert seen == 130 // 16
    assert sorted(r.dst_num for r in delta.removed) == [r.dst_num for r in old[:10]]
    assert len(delta.added) == 30 and live.generation == generation + 1
    assert len(live) == 120 and live.lookup("198.18.0.1") is None
    assert live.lookup("198.18.0.50") is old[50]  # equal routes keep their id


def test_a_table_that_changes_between_steps_stops_the_resync() -> None:
    live, fresh = RouteTable(), RouteTable()
    live.load(dump(*[host(i) for i in range(40)]))
    fresh.load(dump(*[host(i) for i in range(40)]))
    steps = live.resync_slices(fresh, 8)
    assert next(steps) is None
    live.add(host(500))
    with pytest.raises(RuntimeError, match="changed while a resync"):
        next(steps)
    steps = live.resync_slices(fresh, 8)
    assert next(steps) is None
    fresh.add(host(501))
    with pytest.raises(RuntimeError):
        next(steps)


def test_side_indexes_follow_a_small_change_and_are_rebuilt_after_a_big_one() -> None:
    live, fresh = RouteTable(), RouteTable()
    old = [host(i, oif=2) for i in range(50)]
    live.load(dump(*old))
    assert live.get(old[0].id) is old[0] and len(live.routes_via_link(2)) == 50  # built
    came = host(60, oif=3)
    fresh.load(dump(*[copy(r) for r in old[1:]], came))
    _, delta = steps_of(live, fresh, 8)
    assert delta.added == [came] and delta.removed == [old[0]]
    assert live._by_id is not None  # kept, and brought along
    assert live.get(old[0].id) is None and live.get(came.id) is came
    assert live.routes_via_link(3) == [came] and len(live.routes_via_link(2)) == 49
    other = RouteTable()
    other.load(dump(*[host(i, oif=4) for i in range(200, 230)]))
    _, delta = steps_of(live, other, 8)
    assert len(delta.added) == 30 and len(delta.removed) == 50
    assert live._by_id is None  # more changed than a slice: rebuilt on first use
    assert len(live.routes_via_link(4)) == 30 and live.routes_via_link(2) == []
    assert all(live.get(r.id) is r for r in delta.added)


def test_the_same_routes_in_another_order_are_a_change() -> None:
    a, b = rt("198.51.100.0/24", oif=5), rt("198.51.100.0/24", oif=6)
    live, fresh = RouteTable(), RouteTable()
    live.load(dump(a, b))
    fresh.load(dump(copy(b), copy(a)))
    generation = live.generation
    assert live.resync(fresh) == RouteDiff()
    assert live.generation == generation + 1 and list(live) == [b, a]
    assert live.lookup("198.51.100.1") is b
    assert live.resync(fresh) == RouteDiff() and live.generation == generation + 1


def test_load_like_shares_the_live_tables_equal_routes() -> None:
    live = RouteTable()
    kept, changed = host(1), host(2)
    a, b = rt("198.51.100.0/24", oif=5), rt("198.51.100.0/24", oif=6)
    v6 = rt("2001:db8::/64")
    live.load(dump(kept, changed, a, b, v6))
    fresh = RouteTable()
    c = rt("198.51.100.0/24", oif=7)
    moved = copy(changed, gateway="198.51.100.254")
    fresh.load(dump(copy(kept), moved, host(3), copy(v6)), like=live)
    fresh.load([new(copy(a), c, nl_flags=NLM_F_APPEND)], like=live)
    assert fresh.lookup("198.18.0.1") is kept and fresh.lookup("2001:db8::1") is v6
    assert fresh.lookup("198.18.0.2") is moved
    bucket = [r for r in fresh if r.dst == "198.51.100.0"]
    assert bucket[0] is a and bucket[1] is c  # shared inside a bucket too
    _, delta = steps_of(live, fresh, 0)
    assert {r.id for r in delta.added} == {moved.id, c.id, fresh.lookup("198.18.0.3").id}  # type: ignore[union-attr]
    assert {r.id for r in delta.removed} == {changed.id, b.id}


def test_load_like_leaves_an_indexed_table_to_the_resync() -> None:
    live, fresh = RouteTable(), RouteTable()
    kept = host(1)
    live.load(dump(kept))
    fresh.load(dump(host(7)))
    fresh.get(0)  # the id index now exists on fresh
    twin = copy(kept)
    fresh.load(dump(twin), like=live)
    assert fresh.lookup("198.18.0.1") is twin  # not shared: the index names the copy
    _, delta = steps_of(live, fresh, 4)
    assert live.lookup("198.18.0.1") is kept and [r.dst for r in delta.added] == ["198.18.0.7"]


@given(
    have=st.sets(st.integers(0, 60), max_size=40),
    want=st.sets(st.integers(0, 60), max_size=40),
    moved=st.sets(st.integers(0, 60), max_size=10),
    size=st.integers(0, 9),
)
def test_any_sliced_resync_equals_the_one_shot_diff(
    have: set[int], want: set[int], moved: set[int], size: int
) -> None:
    live, fresh = RouteTable(), RouteTable()
    old = {i: host(i, oif=2 + i % 3) for i in have}
    live.load(dump(*old.values()))
    fresh.load(
        dump(*[host(i, oif=9) if i in moved else host(i, oif=2 + i % 3) for i in want]),
        like=live if size % 2 else None,
    )
    expected = live.diff(fresh)
    _, delta = steps_of(live, fresh, size)
    assert sorted(r.id for r in delta.added) == sorted(r.id for r in expected.added)
    assert sorted(r.id for r in delta.removed) == sorted(r.id for r in expected.removed)
    assert sorted(r.dst_num for r in live) == sorted(BASE + i for i in want)
    for i in want & have:
        if i not in moved:
            assert live.lookup(str(ipaddress.IPv4Address(BASE + i))) is old[i]
    assert live.diff(fresh) == RouteDiff()


def test_holds_is_a_delete_that_would_find_its_route() -> None:
    table = RouteTable()
    a = rt("198.51.100.0/24", oif=5)
    multi = rt(
        "203.0.113.0/24",
        gateway="198.51.100.2",
        oif=5,
        nexthops=(("198.51.100.2", 5), ("198.51.100.3", 6)),
    )
    multi6 = rt(
        "2001:db8:9::/64",
        gateway="2001:db8:1::2",
        oif=5,
        nexthops=(("2001:db8:1::2", 5), ("2001:db8:1::3", 6)),
    )
    nh6 = rt("2001:db8:8::/64", oif=None, nhid=7)
    table.load(dump(a, multi, multi6, nh6))
    assert table.holds(copy(a)) and not table.holds(copy(a, oif=6))
    # An IPv4 DELROUTE carries the whole route: one path of it names no route.
    assert not table.holds(rt("203.0.113.0/24", gateway="198.51.100.3", oif=6))
    assert table.holds(copy(multi))
    assert table.holds(rt("2001:db8:9::/64", gateway="2001:db8:1::3", oif=6))  # one sibling
    assert not table.holds(rt("2001:db8:9::/64", gateway="2001:db8:1::4", oif=6))
    assert table.holds(rt("2001:db8:8::/64", oif=None, nhid=7))
    assert not table.holds(rt("2001:db8:8::/64", oif=None, nhid=8))  # another object's
    assert not table.holds(rt("203.0.113.0/24", table=7))
