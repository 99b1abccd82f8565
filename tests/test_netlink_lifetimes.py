"""The netlink role's timing of IPv6 route lifetimes, nexthop records, and the nexthop
dump step, driven without a lab: a fake clock and records handed to the watcher.

Only documentation addresses (2001:db8::/32, 198.51.100.0/24, 203.0.113.0/24); nothing
is sent but netlink requests to the host's own kernel.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest

import lwspy.roles.netlink as netlink_mod
from lwspy import Context
from lwspy.net.nlmsg import (
    AF_INET,
    AF_INET6,
    RTM_DELADDR,
    RTM_GETNEXTHOP,
    RTM_NEWADDR,
    RTM_NEWNEXTHOP,
    RTM_NEWROUTE,
    AddrMsg,
    ErrorMsg,
    NexthopMsg,
    Route,
    RouteMsg,
    fibmatch_request,
    next_route_id,
)
from lwspy.roles.netlink import EXPIRY_SLACK, RouteWatcher, _Batch, open_netlink
from tests.conftest import FakeClock, service_until


def v6(dst_num: int, *, expires: float, oif: int = 1) -> Route:
    """An IPv6 route of table main in 2001:db8::/32 with a lifetime."""
    return Route(
        AF_INET6,
        (0x20010DB8 << 96) | (dst_num << 64),
        64,
        254,
        1024,
        0,
        None,
        0,
        1,
        None,
        oif,
        None,
        3,
        0,
        (),
        0,
        (),
        0,
        0,
        0,
        expires,
        next_route_id(),
    )


@pytest.fixture
def timed() -> Iterator[tuple[Context, RouteWatcher, FakeClock]]:
    clock = FakeClock()
    ctx = Context(netlink=True, clock=clock)
    watcher = ctx._netlink
    assert watcher is not None
    service_until(ctx, lambda: watcher.coldplug_done)
    try:
        yield ctx, watcher, clock
    finally:
        ctx.destroy()


def _arrive(watcher: RouteWatcher, *routes: Route) -> None:
    """Routes come as one event, read in one pass."""
    batch = _Batch()
    watcher._record(RouteMsg(RTM_NEWROUTE, 0x600, 0, 0, routes), batch)
    watcher._expiries(batch)
    watcher._settle(batch)


def test_a_route_expires_at_its_lifetime_when_the_kernel_says_so(
    timed: tuple[Context, RouteWatcher, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, watcher, clock = timed
    asked: list[Route] = []

    def kernel_says(self: RouteWatcher, route: Route) -> float | None:
        asked.append(route)
        return answers.pop(0)

    answers: list[float | None] = [20.0, None, 0.0]
    monkeypatch.setattr(RouteWatcher, "_lifetime_left", kernel_says)
    table = watcher.table
    a, b, c = v6(0x77, expires=30.0), v6(0x78, expires=45.0), v6(0x79, expires=-1.0)
    start = clock()
    _arrive(watcher, a, b, c)
    # c came already expired: out of lookups at once, without asking.
    assert table.expired(c) and asked == []
    assert watcher._deadlines[a.id][0] == pytest.approx(start + 30.0 + EXPIRY_SLACK)
    assert watcher._expiry_timer.due == pytest.approx(start + 30.0 + EXPIRY_SLACK)
    clock.advance(30.0)
    ctx.service(0)
    assert asked == []  # not due yet: the slack covers the kernel's rounding down
    clock.advance(EXPIRY_SLACK)
    ctx.service(0)
    assert asked == [a]  # the kernel says 20 s more (a silent refresh)
    assert not table.expired(a) and table.lookup("2001:db8:0:77::1") is a
    assert watcher._deadlines[a.id][0] == pytest.approx(clock() + 20.0 + EXPIRY_SLACK)
    clock.advance(15.0)
    ctx.service(0)
    assert asked == [a, b] and table.expired(b) and b.id not in watcher._deadlines
    assert table.lookup("2001:db8:0:78::1") is not b  # passed over (the host may have a default)
    clock.advance(10.0)
    ctx.service(0)
    assert asked == [a, b, a]  # no lifetime any more: no deadline either
    assert not table.expired(a) and watcher._deadlines == {}
    assert not watcher._expiry_timer.scheduled


def test_a_route_gone_before_its_expiry_is_not_asked_about(
    timed: tuple[Context, RouteWatcher, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, watcher, clock = timed
    monkeypatch.setattr(RouteWatcher, "_lifetime_left", lambda self, route: pytest.fail())
    route = v6(0x7A, expires=5.0)
    _arrive(watcher, route)
    watcher.table.delete(route)
    clock.advance(6.0)
    ctx.service(0)
    assert watcher._deadlines == {}


def test_the_kernel_is_asked_with_a_fibmatch_request(
    timed: tuple[Context, RouteWatcher, FakeClock],
) -> None:
    _, watcher, _ = timed
    # The host has no such route: the kernel answers with another entry or an error.
    assert watcher._lifetime_left(v6(0x7B, expires=5.0)) is None
    query = watcher._query
    assert query is not None
    # An answer left unread from an earlier ask is passed over, and both are read.
    query.send(fibmatch_request(v6(0x7C, expires=5.0), 999))
    assert watcher._lifetime_left(v6(0x7B, expires=5.0)) is None
    with pytest.raises(BlockingIOError):
        query.recv(1 << 16)
    watcher._query = None
    try:
        assert watcher._lifetime_left(v6(0x7B, expires=5.0)) is None
    finally:
        watcher._query = query
    query.close()  # a dead socket: the send fails, and that is no expiry extension
    try:
        assert watcher._lifetime_left(v6(0x7B, expires=5.0)) is None
    finally:
        watcher._query = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def test_nexthop_records_during_and_after_a_dump(
    timed: tuple[Context, RouteWatcher, FakeClock],
) -> None:
    _, watcher, _ = timed
    msg = NexthopMsg(RTM_NEWNEXTHOP, 0, 0, 0, AF_INET, 0, 0, 0, 70, None, None, True, (), 0, False)
    batch = _Batch()
    watcher._record(msg, batch)
    assert watcher.table.nexthops[70] is msg
    watcher._start_dump()  # a re-dump: records are applied to its table while replayed
    dump = watcher._dump
    assert dump is not None and not dump.initial
    watcher._record(msg, batch)
    assert dump.routes.nexthops[70] is msg
    # A DELADDR during the dump for an address the dump has.
    addr = AddrMsg(RTM_NEWADDR, 0, 0, 0, AF_INET, 9, 24, 0, 0, "198.51.100.9", "198.51.100.9", None)
    watcher._record(addr, batch)
    assert len(dump.addrs) >= 1
    watcher._record(dataclasses.replace(addr, type=RTM_DELADDR), batch)
    assert all(key[2] != "198.51.100.9" for key in dump.addrs)
    # A kernel without nexthop objects refuses that dump step: the dump goes on without.
    dump.step = netlink_mod._DUMP_STEPS.index(RTM_GETNEXTHOP)
    assert not watcher._dump_reply(dump, ErrorMsg(dump.seq, dump.pid, 95))  # EOPNOTSUPP
    assert dump.step == netlink_mod._DUMP_STEPS.index(RTM_GETNEXTHOP) + 1
    assert not watcher._retry.scheduled
    # Any other step that is refused is asked for again.
    assert not watcher._dump_reply(dump, ErrorMsg(dump.seq, dump.pid, 16))  # EBUSY
    assert watcher._retry.scheduled


def test_open_netlink_goes_on_without_the_nexthop_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlink_mod, "RTNLGRP_NEXTHOP", 0)  # a group the kernel refuses
    sock = open_netlink()
    try:
        assert sock.getsockname()[1] != 0
    finally:
        sock.close()
