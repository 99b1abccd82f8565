"""Happy Eyeballs and the CAO database in the namespace lab, names served by a real dnsmasq.

"dual.test" has an AAAA that is black-holed (2001:db8:1::99, on the veth subnet, held by
nobody: a connect hangs about 3 s in neighbour discovery) and a working A (198.51.100.2,
namespace "b", where a peer context listens). dnsmasq runs in "b" on 198.51.100.2:53;
lwspy runs in "a" with netlink on, so each CAO carries the route, link and gateway it
took, and the netlink role forgets history that routing changes make stale.

The only timing assertions are orderings and generous bounds: the first connect starts
IPv4 no earlier than one Connection Attempt Delay after the IPv6 attempt, and well before
the black hole would have answered.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwspy import Cao, CaoResult, Context, Protocol, Reason, SystemState, Wsi, WsiState
from tests.conftest import Recorder
from tests.netns.conftest import Dnsmasq, Lab, require_dnsmasq

pytestmark = pytest.mark.netns

HOLE6 = "2001:db8:1::99"  # on va's subnet, held by nobody
HOLE4 = "198.51.100.99"
NOROUTE6 = "2001:db8:ffff::1"  # no route from "a"
NAME = "dual.test"
V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)


def _nop(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
    return 0


class Race:
    """dnsmasq and a listening peer in "b"; lwspy (netlink on) in "a"."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        hosts = (
            f"{HOLE6} {NAME}\n{lab.B_ADDR} {NAME}\n"
            f"{HOLE4} v6wins.test\n{lab.B_ADDR6} v6wins.test\n"
            f"{NOROUTE6} noroute.test\n{lab.B_ADDR} noroute.test\n"
        )
        self.dnsmasq = Dnsmasq(lab, workdir, hosts, NAME)
        self.b: Context | None = None
        self.a: Context | None = None
        try:
            with lab.inside("b"):
                self.b = Context(protocols=[Protocol("peer", _nop)], netlink=False)
                self.port = self.b.create_vhost("default", port=0).port
            self.rec = Recorder("cli")
            self.a = Context(
                protocols=[self.rec.protocol],
                netlink=True,
                hosts_file="/dev/null",
                nameservers=[lab.B_ADDR],
            )
            self.service_until(lambda: self.ctx.system.state is SystemState.OPERATIONAL)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def wait_ipv6(lab: Lab) -> None:
        """Until the links' IPv6 link-local addresses have passed DAD: before that, neighbour
        discovery stalls and a first IPv6 connect loses its SYN (a 1 s retransmit)."""
        for _ in range(300):
            if not any(lab.ip(ns, "-6", "addr", "show", "tentative").strip() for ns in "ab"):
                return
            time.sleep(0.01)
        raise RuntimeError("IPv6 addresses still tentative")

    @property
    def ctx(self) -> Context:
        assert self.a is not None
        return self.a

    def service(self) -> None:
        self.ctx.service(5)
        assert self.b is not None
        with self.lab.inside("b"):
            self.b.service(0)

    def service_until(self, cond: Any, passes: int = 2000) -> None:
        for _ in range(passes):
            if cond():
                return
            self.service()
        raise AssertionError("condition not reached")

    def connect(self, name: str = NAME, port: int | None = None, ok: bool = True) -> Wsi:
        port = port or self.port
        assert port is not None
        w = self.ctx.connect(name, port)
        self.service_until(lambda: w.state not in (WsiState.PENDING, WsiState.CONNECTING))
        connected = Reason.RAW_CONNECTED in self.rec.reasons(w)
        assert connected is ok, self.rec.data(Reason.CLIENT_CONNECTION_ERROR, w)
        return w

    def settle(self) -> None:
        for _ in range(10):
            self.service()

    def close(self) -> None:
        for ctx in (self.a, self.b):
            if ctx is not None:
                ctx.destroy()
        self.dnsmasq.stop()


@pytest.fixture
def race(lab: Lab, tmp_path: Path) -> Iterator[Race]:
    require_dnsmasq()
    r = Race(lab, tmp_path)
    try:
        yield r
    finally:
        r.close()


def _route_id(race: Race, addr: str) -> int:
    table = race.ctx.routes
    assert table is not None
    route = table.lookup(addr)
    assert route is not None
    return route.id


def test_a_black_holed_aaaa_loses_once_then_ipv4_goes_straight(race: Race) -> None:
    lab = race.lab
    va = socket.if_nametoindex("va")
    first = race.connect()
    head, loser = first.caos
    assert (head.address, head.result) == (lab.B_ADDR, CaoResult.WON)
    assert (loser.address, loser.result) == (HOLE6, CaoResult.LOST_RACE)
    # IPv4 started one Connection Attempt Delay (0.25 s) after IPv6, not at once and not
    # after the black hole's ~3 s: an ordering and a generous bound.
    assert 0.25 <= head.started - loser.started < 2.5
    assert first.peer == (lab.B_ADDR, race.port)
    assert (loser.ifindex, loser.gateway, loser.route_id) == (va, None, _route_id(race, HOLE6))
    assert (head.ifindex, head.route_id) == (va, _route_id(race, lab.B_ADDR))
    cm = first.conmon
    assert cm is not None and cm.dns_disposition == "OK"
    assert sorted(cm.dns_results) == sorted([HOLE6, lab.B_ADDR])
    attempt_fds = [w for w in race.ctx.pt.fds.values() if w.role.name == "connect-attempt"]
    assert attempt_fds == []  # the loser's socket is closed

    second = race.connect()
    assert [(c.address, c.result) for c in second.caos] == [(lab.B_ADDR, CaoResult.WON)]
    st6 = race.ctx.cao_db.stats(host=NAME, family=V6)
    st4 = race.ctx.cao_db.stats(host=NAME, family=V4)
    assert (st6.attempts, st6.lost, st6.wins) == (1, 1, 0)
    assert (st4.attempts, st4.wins) == (2, 2) and st4.median_connect_us is not None


def test_deleting_the_ipv6_route_forgets_ipv6_history_and_keeps_ipv4s(race: Race) -> None:
    race.connect()
    db = race.ctx.cao_db
    assert db.stats(host=NAME, family=V6).attempts == 1
    old = _route_id(race, HOLE6)
    race.lab.ip("a", "-6", "route", "del", "2001:db8:1::/64", "dev", "va")
    race.lab.ip("a", "-6", "route", "add", "2001:db8:1::/64", "dev", "va")
    race.service_until(lambda: _route_id(race, HOLE6) != old)
    race.settle()
    assert db.stats(host=NAME, family=V6).attempts == 0
    assert db.stats(host=NAME, family=V4).attempts == 1
    assert db.stats(host=NAME, family=V4).wins == 1


@pytest.mark.parametrize("family", [V6, V4], ids=["IPv6", "IPv4"])
def test_replacing_a_route_forgets_the_history_of_the_attempts_that_took_it(
    race: Race, family: int
) -> None:
    # Issue 10: "route deleted or replaced -> by route id". A replace (same destination,
    # metric and table; another MTU) is one RTM_NEWROUTE with NLM_F_REPLACE, no DELROUTE.
    lab = race.lab
    race.connect()
    db = race.ctx.cao_db
    hole, other = (HOLE6, V4) if family == V6 else (lab.B_ADDR, V6)
    old = _route_id(race, hole)
    assert db.stats(route_id=old).attempts == 1
    kept = db.stats(host=NAME, family=other).attempts
    if family == V6:
        lab.ip("a", "-6", "route", "replace", "2001:db8:1::/64", "dev", "va", "metric", "256",
               "proto", "kernel", "mtu", "1400")  # fmt: skip
    else:
        lab.ip("a", "route", "replace", "198.51.100.0/24", "dev", "va", "proto", "kernel",
               "scope", "link", "src", lab.A_ADDR, "mtu", "1400")  # fmt: skip
    race.service_until(lambda: _route_id(race, hole) != old)
    race.settle()
    assert db.stats(route_id=old).attempts == 0
    assert db.stats(host=NAME, family=family).attempts == 0
    assert db.stats(host=NAME, family=other).attempts == kept == 1


@pytest.mark.parametrize("how", ["down", "deleted"])
def test_a_link_going_down_forgets_every_path_over_it(race: Race, how: str) -> None:
    race.connect()
    race.connect()
    db = race.ctx.cao_db
    va = socket.if_nametoindex("va")
    assert db.stats(host=NAME).attempts == db.stats(ifindex=va).attempts == 3
    # history over another link stays: a record of an attempt over loopback
    lo = Cao("lo.test", 80, "127.0.0.1", V4, 0.0, ifindex=1, result=CaoResult.WON)
    db.add(lo)
    if how == "down":
        race.lab.ip("a", "link", "set", "va", "down")
    else:  # the veth pair goes: RTM_DELLINK (after the link-down news)
        race.lab.ip("a", "link", "del", "va")
    race.service_until(lambda: db.stats(host=NAME).attempts == 0)
    assert db.stats(ifindex=va).attempts == 0
    assert db.query(ifindex=1) == [lo]
    if how == "down":
        race.lab.ip("a", "link", "set", "va", "up")


def test_a_dead_a_does_not_go_before_a_live_aaaa(race: Race) -> None:
    # lws 5.0.99 sorts IPv4 first whatever the addresses: here the dead A would cost it a
    # delay on every connect. RFC 6724 puts the global IPv6 destination first.
    race.wait_ipv6(race.lab)
    w = race.connect("v6wins.test")
    assert [(c.address, c.result) for c in w.caos] == [(race.lab.B_ADDR6, CaoResult.WON)]


@pytest.mark.parametrize("netlink", [True, False])
def test_a_candidate_without_a_route_goes_last_and_is_not_dropped(
    race: Race, netlink: bool
) -> None:
    ctx = race.ctx
    if not netlink:  # the kernel's own source selection instead of the route table
        race.a = Context(
            protocols=[race.rec.protocol],
            netlink=False,
            hosts_file="/dev/null",
            nameservers=[race.lab.B_ADDR],
        )
        ctx.destroy()
    with race.lab.inside("b"):
        closed = socket.socket()  # bound, not listening: connects are refused
    with closed:
        closed.bind((race.lab.B_ADDR, 0))
        w = race.connect("noroute.test", closed.getsockname()[1], ok=False)
    assert [(c.address, c.result) for c in w.caos] == [
        (race.lab.B_ADDR, CaoResult.REFUSED),
        (NOROUTE6, CaoResult.UNREACHABLE),
    ]
    assert race.rec.data(Reason.CLIENT_CONNECTION_ERROR, w) == ["network unreachable"]


def test_removing_a_route_with_a_gateway_forgets_every_path_via_that_gateway(race: Race) -> None:
    lab = race.lab
    via_gw = race.connect(lab.PEER)  # 203.0.113.0/24 via 198.51.100.2
    (cao,) = via_gw.caos
    assert (cao.gateway, cao.result) == (lab.B_ADDR, CaoResult.WON)
    race.connect()  # dual.test: on-link paths, no gateway
    db = race.ctx.cao_db
    assert db.stats(gateway=lab.B_ADDR).attempts == 1
    on_link = db.stats(host=NAME).attempts
    lab.ip("a", "route", "del", "203.0.113.0/24", "via", lab.B_ADDR)
    race.service_until(lambda: db.stats(gateway=lab.B_ADDR).attempts == 0)
    assert db.stats(host=NAME).attempts == on_link  # other paths keep their history
    assert via_gw.close_reason == "route lost"
