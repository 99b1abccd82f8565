"""CAOs of connects made while the netlink role is still in its cold plug.

The route table is empty until the cold plug's dump is in, so an attempt started before
then cannot take its interface, gateway and route id from it. They come later: when the
connection is established, from the kernel (the route it sends the flow by); when the
table is known, from the table (the route id too), for every attempt started before it,
still in flight or already recorded, so the CAO database finds and forgets them by path.

"Before the cold plug ends" is made, not hoped for: the dump socket is not read until the
test releases it (as tests/netns/test_routing.py's HeldNet does), or the connect is made
before the context's first service pass.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from lwspy import CaoResult, Context, Reason
from lwspy.roles.netlink import RouteWatcher
from tests.conftest import Recorder
from tests.netns.conftest import Lab

pytestmark = pytest.mark.netns

HOLE4 = "198.51.100.99"  # on va's subnet, held by nobody: a connect hangs (ARP)


class Early:
    """lwspy in "a" (netlink on), a listener in "b" on every address (203.0.113.1 too)."""

    def __init__(self, lab: Lab, hold: bool) -> None:
        self.lab = lab
        self.cli = Recorder("cli")
        with lab.inside("b"):
            self.b = Context(protocols=[Recorder("srv").protocol], netlink=False)
            port = self.b.create_vhost("default", port=0).port
        assert port is not None
        self.port = port
        self.a = Context(protocols=[self.cli.protocol], netlink=True)
        watcher = self.a._netlink
        assert isinstance(watcher, RouteWatcher)
        self.watcher = watcher
        assert watcher._dump is not None and watcher._dump.wsi is not None
        self.held = watcher._dump.wsi
        if hold:
            self.a.pt.set_events(self.held, 0)  # the dump waits

    def release(self) -> None:
        self.a.pt.set_events(self.held, 1)

    def until(self, cond: Any) -> None:
        for _ in range(400):
            if cond():
                return
            self.a.service(5)
            with self.lab.inside("b"):
                self.b.service(0)
        raise AssertionError("condition not reached")

    def route_id(self, addr: str) -> int:
        route = self.watcher.table.lookup(addr)
        assert route is not None
        return route.id

    def close(self) -> None:
        self.a.destroy()
        self.b.destroy()


@pytest.fixture
def early(lab: Lab) -> Iterator[Early]:
    e = Early(lab, hold=True)
    try:
        yield e
    finally:
        e.close()


def test_a_connection_made_in_the_cold_plug_gets_its_path_then_its_route_id(
    early: Early,
) -> None:
    va = socket.if_nametoindex("va")
    w = early.a.connect(Lab.PEER, early.port)
    early.until(lambda: Reason.RAW_CONNECTED in early.cli.reasons(w))
    assert not early.watcher.coldplug_done
    [head] = w.caos
    # Established before the table is known: the kernel's word for the interface and the
    # gateway; a route id is the table's, so none yet.
    assert head.result is CaoResult.WON
    assert (head.ifindex, head.gateway, head.route_id) == (va, Lab.B_ADDR, None)
    db = early.a.cao_db
    assert db.query(ifindex=va) == [head] and db.query(gateway=Lab.B_ADDR) == [head]

    early.release()
    early.until(lambda: early.watcher.coldplug_done)
    rid = early.route_id(Lab.PEER)
    assert (head.ifindex, head.gateway, head.route_id) == (va, Lab.B_ADDR, rid)
    assert db.query(route_id=rid) == [head] and db.query(ifindex=va) == [head]

    # The history is the path's: a change of that route forgets it like any other.
    w.close()
    early.lab.ip("a", "route", "del", "203.0.113.0/24")
    early.until(lambda: db.stats(host=Lab.PEER).attempts == 0)


def test_an_attempt_still_in_flight_when_the_table_comes_gets_its_path(early: Early) -> None:
    va = socket.if_nametoindex("va")
    w = early.a.connect(HOLE4, early.port)
    early.until(lambda: len(w.caos) == 1)
    [cao] = w.caos
    assert cao.result is CaoResult.PENDING
    assert (cao.ifindex, cao.gateway, cao.route_id) == (None, None, None)
    early.release()
    early.until(lambda: early.watcher.coldplug_done)
    assert cao.result is CaoResult.PENDING  # still hanging in ARP
    assert (cao.ifindex, cao.gateway, cao.route_id) == (va, None, early.route_id(HOLE4))
    w.close()  # abandoned: an attempt the application gave up is not the path's fault
    assert early.a.cao_db.stats(host=HOLE4).attempts == 0


def test_a_failed_attempt_recorded_in_the_cold_plug_is_refiled_by_its_path(
    early: Early,
) -> None:
    va = socket.if_nametoindex("va")
    w = early.a.connect(Lab.PEER, 9)  # nobody listens on port 9 in "b": refused
    early.until(lambda: Reason.CLIENT_CONNECTION_ERROR in early.cli.reasons(w))
    [cao] = w.caos
    assert cao.result is CaoResult.REFUSED and cao.ifindex is None
    db = early.a.cao_db
    assert db.query(ifindex=va) == [] and db.query(host=Lab.PEER) == [cao]
    early.release()
    early.until(lambda: early.watcher.coldplug_done)
    rid = early.route_id(Lab.PEER)
    assert (cao.ifindex, cao.gateway, cao.route_id) == (va, Lab.B_ADDR, rid)
    assert db.query(ifindex=va) == [cao] and db.query(route_id=rid) == [cao]
    assert db.query(gateway=Lab.B_ADDR) == [cao]


def test_a_connect_made_before_the_first_service_pass(lab: Lab) -> None:
    e = Early(lab, hold=False)
    try:
        va = socket.if_nametoindex("va")
        w = e.a.connect(Lab.PEER, e.port)  # the context has not run a pass yet
        hole = e.a.connect(HOLE4, e.port)
        e.until(lambda: Reason.RAW_CONNECTED in e.cli.reasons(w) and e.watcher.coldplug_done)
        [head] = w.caos
        [pending] = hole.caos
        assert (head.ifindex, head.gateway, head.route_id) == (va, Lab.B_ADDR, e.route_id(Lab.PEER))
        assert (pending.ifindex, pending.route_id) == (va, e.route_id(HOLE4))
        assert e.a.cao_db.query(route_id=e.route_id(Lab.PEER)) == [head]
    finally:
        e.close()


def test_the_kernel_is_asked_only_about_a_connected_routed_socket(early: Early) -> None:
    watcher = early.watcher
    with socket.socket() as s:
        assert watcher.ask_path(s) is None  # no peer: nothing to ask about
    w = early.a.connect(Lab.PEER, early.port)
    early.until(lambda: Reason.RAW_CONNECTED in early.cli.reasons(w))
    assert w.sock is not None
    assert watcher.ask_path(w.sock) == (socket.if_nametoindex("va"), Lab.B_ADDR)
    early.lab.ip("a", "route", "del", "203.0.113.0/24")
    assert watcher.ask_path(w.sock) is None  # the kernel has no route for it now
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:  # sends nothing
        udp.connect((Lab.PEER6, 9))
        assert watcher.ask_path(udp) == (socket.if_nametoindex("va"), Lab.B_ADDR6)
        query, watcher._query = watcher._query, None
        try:
            assert watcher.ask_path(udp) is None  # no query socket: nobody to ask
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW) as closed:
                watcher._query = closed
            assert watcher.ask_path(udp) is None  # the ask fails: no answer
        finally:
            watcher._query = query


# -- what changed during the cold plug ---------------------------------------------------
# Events read during the cold plug are only queued and applied to the dump: the history
# of the attempts started meanwhile must still go when the path they took goes.


def test_a_link_that_went_down_during_the_cold_plug_takes_its_history(early: Early) -> None:
    va = socket.if_nametoindex("va")
    w = early.a.connect(Lab.PEER, early.port)
    early.until(lambda: Reason.RAW_CONNECTED in early.cli.reasons(w))
    assert w.caos[0].ifindex == va  # the kernel said so
    w.close()
    db = early.a.cao_db
    early.lab.ip("a", "link", "set", "va", "down")
    early.release()
    early.until(lambda: early.watcher.coldplug_done)
    assert db.stats(ifindex=va).attempts == 0
    assert db.stats(host=Lab.PEER).attempts == 0


def test_a_route_deleted_and_added_again_during_the_cold_plug_takes_its_history(
    early: Early,
) -> None:
    w = early.a.connect(Lab.PEER, 9)  # refused, via 203.0.113.0/24
    other = early.a.connect(Lab.B_ADDR, 9)  # refused, on va's own subnet
    early.until(
        lambda: all(Reason.CLIENT_CONNECTION_ERROR in early.cli.reasons(x) for x in (w, other))
    )
    db = early.a.cao_db
    early.lab.ip("a", "route", "del", "203.0.113.0/24")
    early.lab.ip("a", "route", "add", "203.0.113.0/24", "via", Lab.B_ADDR)
    early.release()
    early.until(lambda: early.watcher.coldplug_done)
    assert db.stats(host=Lab.PEER).attempts == 0  # the route it took went
    [kept] = db.query(host=Lab.B_ADDR)  # another path's history stays, and gets its path
    assert kept.route_id == early.route_id(Lab.B_ADDR)


def test_events_lost_during_the_cold_plug_take_the_early_history(early: Early) -> None:
    w = early.a.connect(Lab.PEER, 9)
    early.until(lambda: Reason.CLIENT_CONNECTION_ERROR in early.cli.reasons(w))
    db = early.a.cao_db
    watcher = early.watcher
    watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's least
    batch = "".join(f"route add 198.18.{i // 256}.{i % 256}/32 dev va\n" for i in range(2000))
    subprocess.run(
        ["ip", "-n", early.lab.ns["a"], "-batch", "-"], input=batch, text=True, check=True
    )
    early.release()
    early.until(lambda: watcher.coldplug_done)
    assert watcher.stats["enobufs"] >= 1
    assert db.stats(host=Lab.PEER).attempts == 0
