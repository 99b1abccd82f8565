"""The netlink role in a real kernel: cold plug, live changes, culling, SMD, ENOBUFS.

Every test builds its own two-namespace lab (see conftest.py) and runs lwspy in "a"
with a peer context in "b"; traffic stays inside the lab's documentation addresses.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from lwspy import Context, Protocol, Reason, SmdClass, SystemState, Wsi, WsiState
from tests.conftest import Recorder
from tests.netns.conftest import Lab

pytestmark = pytest.mark.netns


class Net:
    """lwspy under test in ns "a" (netlink on), a peer context in ns "b" (netlink off)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cli = Recorder("cli")
        self.srv = Recorder("srv")
        self.smd: list[dict[str, Any]] = []

        def echo(wsi: Wsi | None, reason: Reason, data: object) -> int:
            if reason is Reason.RAW_RX and wsi is not None:
                assert isinstance(data, bytes)
                wsi.write(data)
            return 0

        self.peer_srv = Recorder("srv", echo)
        self.a = Context(protocols=[self.cli.protocol, self.srv.protocol], netlink=True)
        self.a.smd.register(
            lambda cls, ts, payload: self.smd.append(json.loads(payload)), SmdClass.NETWORK
        )
        with lab.inside("b"):
            self.b = Context(protocols=[self.peer_srv.protocol, Protocol("c", _nop)], netlink=False)
            self.b_port = self.b.create_vhost("default", port=0).port
        self.a_vh = self.a.create_vhost("default", port=0, accept_protocol="srv")
        self.service_until(lambda: self.a.system.state is SystemState.OPERATIONAL)

    def service(self) -> None:
        self.a.service(5)
        with self.lab.inside("b"):  # b's connects make their sockets in the loop
            self.b.service(5)

    def service_until(self, cond: Any, passes: int = 1000) -> None:
        for _ in range(passes):
            if cond():
                return
            self.service()
        raise AssertionError("condition not reached")

    def connect(self, host: str, iface: str | None = None) -> Wsi:
        assert self.b_port is not None
        w = self.a.connect(host, self.b_port, protocol="cli", iface=iface)
        self.service_until(lambda: Reason.RAW_CONNECTED in self.cli.reasons(w))
        return w

    def loopback(self) -> Wsi:
        assert self.a_vh.port is not None
        w = self.a.connect("127.0.0.1", self.a_vh.port, protocol="cli")
        self.service_until(lambda: Reason.RAW_CONNECTED in self.cli.reasons(w))
        return w

    def settle(self) -> None:
        """Service a few passes so every netlink event has been read."""
        for _ in range(5):
            self.service()

    def check_table(self) -> None:
        """lwspy's table equals the kernel's (tables main and local), once the events of
        the last change (some come late, e.g. IPv6 link-local routes after link up) are in."""
        table = self.a.routes
        assert table is not None
        for _ in range(100):
            if Lab.table_routes(table) == self.lab.kernel_routes("a"):
                return
            for _ in range(4):
                self.service()
        assert Lab.table_routes(table) == self.lab.kernel_routes("a")

    def alive(self, w: Wsi) -> bool:
        return w.state is WsiState.ESTABLISHED

    def close(self) -> None:
        self.a.destroy()
        self.b.destroy()


def _nop(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
    return 0


@pytest.fixture
def net(lab: Lab) -> Iterator[Net]:
    n = Net(lab)
    try:
        yield n
    finally:
        n.close()


def test_cold_plug_gives_the_kernels_table_and_holds_the_state_until_then(lab: Lab) -> None:
    ctx = Context(netlink=True)
    try:
        states: list[SystemState] = []
        ctx.system.register_notifier(lambda cur, nxt: states.append(nxt) or True)
        for _ in range(200):
            ctx.service(5)
            if ctx.system.state is SystemState.OPERATIONAL:
                break
        assert ctx.system.state is SystemState.OPERATIONAL
        assert ctx.routes is not None and len(ctx.routes) > 0
        assert Lab.table_routes(ctx.routes) == lab.kernel_routes("a")
        assert ctx.routes.routable(Lab.PEER) and ctx.routes.routable(Lab.PEER6)
        assert not ctx.routes.routable("198.18.0.1")  # no default route in the lab
    finally:
        ctx.destroy()


def test_deleting_a_route_culls_only_its_connections(net: Net) -> None:
    far = net.connect(Lab.PEER)
    near = net.connect(Lab.B_ADDR)  # over the on-link route, not the deleted one
    loop = net.loopback()
    rechecked = net.a._netlink.stats["rechecked"]  # type: ignore[union-attr]
    net.lab.ip("a", "route", "del", "203.0.113.0/24")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    assert net.cli.reasons(far).count(Reason.RAW_CLOSE) == 1
    net.settle()
    assert net.alive(near) and net.alive(loop)
    # only the connection on the deleted route was looked at
    assert net.a._netlink.stats["rechecked"] - rechecked == 1  # type: ignore[union-attr]
    net.check_table()
    assert {"rt": "del"} in net.smd
    assert {"trigger": "cpdcheck", "src": "gw-change"} in net.smd


def test_adding_an_unrelated_route_closes_nothing(net: Net) -> None:
    far = net.connect(Lab.PEER)
    near = net.connect(Lab.B_ADDR)
    net.smd.clear()
    net.lab.ip("a", "route", "add", "198.18.0.0/15", "via", Lab.B_ADDR)
    net.service_until(lambda: {"rt": "add"} in net.smd)
    net.settle()
    assert net.alive(far) and net.alive(near)
    assert {"trigger": "cpdcheck", "src": "gw-change"} in net.smd
    net.check_table()


def test_a_route_without_gateway_does_not_trigger_cpd(net: Net) -> None:
    net.smd.clear()
    net.lab.ip("a", "route", "add", "198.18.0.0/15", "dev", "va")
    net.service_until(lambda: {"rt": "add"} in net.smd)
    net.settle()
    assert {"trigger": "cpdcheck", "src": "gw-change"} not in net.smd


def test_a_more_specific_route_moves_connections_and_its_removal_keeps_them(net: Net) -> None:
    far = net.connect(Lab.PEER)
    net.lab.ip("a", "route", "add", "203.0.113.1/32", "via", Lab.B_ADDR)
    net.settle()
    net.lab.ip("a", "route", "del", "203.0.113.1/32")
    net.settle()
    assert net.alive(far)  # the /24 still carries it
    net.lab.ip("a", "route", "del", "203.0.113.0/24")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    net.check_table()


def test_a_blackhole_route_culls_the_connections_it_covers(net: Net) -> None:
    far = net.connect(Lab.PEER)
    near = net.connect(Lab.B_ADDR)
    net.lab.ip("a", "route", "add", "blackhole", "203.0.113.1/32")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    net.settle()
    assert net.alive(near)
    net.check_table()


def test_link_down_culls_what_used_the_link_and_the_table_follows(net: Net) -> None:
    far = net.connect(Lab.PEER)
    near = net.connect(Lab.B_ADDR)
    far6 = net.connect(Lab.PEER6)
    loop = net.loopback()
    net.lab.ip("a", "link", "set", "va", "down")
    net.service_until(lambda: not any(net.alive(w) for w in (far, near, far6)))
    assert {far.close_reason, near.close_reason, far6.close_reason} <= {
        "route lost",
        "source address gone",
    }
    assert far.close_reason == "route lost" and near.close_reason == "route lost"
    net.settle()
    assert net.alive(loop)
    net.check_table()  # the IPv4 routes the kernel flushed silently are gone here too
    net.lab.ip("a", "link", "set", "va", "up")
    net.settle()
    net.check_table()


def test_deleting_the_local_address_culls_with_source_address_gone(net: Net) -> None:
    far = net.connect(Lab.PEER)
    near = net.connect(Lab.B_ADDR)
    far6 = net.connect(Lab.PEER6)
    net.lab.ip("a", "addr", "del", f"{Lab.A_ADDR}/24", "dev", "va")
    net.service_until(lambda: not net.alive(far) and not net.alive(near))
    assert far.close_reason == "source address gone"
    assert near.close_reason == "source address gone"
    net.settle()
    assert net.alive(far6)  # IPv6 is untouched
    net.check_table()  # including the gateway route the kernel dropped without a word


def test_promote_secondaries_keeps_routes_and_only_the_deleted_address_goes(net: Net) -> None:
    net.lab.sysctl("a", "net.ipv4.conf.va.promote_secondaries", "1")
    net.lab.ip("a", "addr", "add", "198.51.100.9/24", "dev", "va")
    net.settle()
    on_primary = net.connect(Lab.PEER, iface=Lab.A_ADDR)
    on_secondary = net.connect(Lab.PEER, iface="198.51.100.9")
    net.lab.ip("a", "addr", "del", f"{Lab.A_ADDR}/24", "dev", "va")
    net.service_until(lambda: not net.alive(on_primary))
    assert on_primary.close_reason == "source address gone"
    net.settle()
    assert net.alive(on_secondary)
    net.check_table()


def test_accepted_connections_are_culled_like_client_ones(net: Net) -> None:
    port = net.a_vh.port
    assert port is not None
    # the peer connects from behind the gateway
    peer = net.b.connect(Lab.A_ADDR, port, protocol="c", iface=Lab.PEER)
    net.service_until(lambda: bool(net.srv.data(Reason.RAW_ADOPT)))
    accepted = next(w for w in net.a.wsis if w.protocol is net.srv.protocol)
    assert accepted.peer is not None and accepted.peer[0].endswith(Lab.PEER)
    net.lab.ip("a", "route", "del", "203.0.113.0/24")
    net.service_until(lambda: accepted.state is WsiState.CLOSED)
    assert accepted.close_reason == "route lost"
    assert peer.caos[0].address == Lab.A_ADDR


def test_ipv6_route_deletion_culls(net: Net) -> None:
    far6 = net.connect(Lab.PEER6)
    far = net.connect(Lab.PEER)
    net.lab.ip("a", "-6", "route", "del", "2001:db8:2::/64")
    net.service_until(lambda: far6.state is WsiState.CLOSED)
    assert far6.close_reason == "route lost"
    net.settle()
    assert net.alive(far)
    net.check_table()


def test_enobufs_redumps_and_ends_equal_to_the_kernel(net: Net) -> None:
    far = net.connect(Lab.PEER)
    watcher = net.a._netlink
    assert watcher is not None
    watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    batch = "".join(
        f"route add 198.18.{i // 256}.{i % 256}/32 via {Lab.B_ADDR}\n" for i in range(2000)
    )
    batch += "route del 203.0.113.0/24\n"
    _ip_batch(net.lab, batch)
    watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    net.service_until(lambda: watcher.stats["resyncs"] >= 1, passes=2000)
    net.settle()
    assert watcher.stats["enobufs"] >= 1
    net.check_table()
    assert far.state is WsiState.CLOSED and far.close_reason == "route lost"


def _ip_batch(lab: Lab, text: str) -> None:
    subprocess.run(["ip", "-n", lab.ns["a"], "-batch", "-"], input=text, text=True, check=True)


def test_deleting_the_link_culls_and_the_table_follows(net: Net) -> None:
    far = net.connect(Lab.PEER)
    far6 = net.connect(Lab.PEER6)
    loop = net.loopback()
    net.lab.ip("a", "link", "del", "va")
    net.service_until(lambda: not net.alive(far) and not net.alive(far6))
    assert far.close_reason in {"route lost", "source address gone"}
    assert far6.close_reason in {"route lost", "source address gone"}
    net.settle()
    assert net.alive(loop)
    net.check_table()
    watcher = net.a._netlink
    assert watcher is not None
    assert not any(link.name == "va" for link in watcher.links.values())


def test_a_route_with_a_source_address_follows_that_address(net: Net) -> None:
    net.lab.ip("a", "addr", "add", "198.51.100.9/24", "dev", "va")
    net.lab.ip("a", "route", "add", "203.0.113.128/25", "via", Lab.B_ADDR, "src", "198.51.100.9")
    net.settle()
    net.check_table()
    net.lab.ip("a", "addr", "del", "198.51.100.9/24", "dev", "va")
    net.settle()
    net.check_table()


class HeldNet:
    """lwspy in "a" whose dump socket is not read until ``release()``, and a peer in
    "b": for what happens before the cold plug's dump is in."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.cli = Recorder("cli")
        with lab.inside("b"):
            self.b = Context(protocols=[Recorder("srv").protocol], netlink=False)
            port = self.b.create_vhost("default", port=0).port
        assert port is not None
        self.port = port
        self.a = Context(protocols=[self.cli.protocol], netlink=True)
        watcher = self.a._netlink
        assert watcher is not None
        self.watcher = watcher
        assert watcher._dump is not None and watcher._dump.wsi is not None
        self.held = watcher._dump.wsi
        self.a.pt.set_events(self.held, 0)  # the dump waits

    def connect(self) -> Wsi:
        w = self.a.connect(Lab.PEER, self.port)
        self.until(lambda: Reason.RAW_CONNECTED in self.cli.reasons(w), both=True)
        return w

    def release(self) -> None:
        self.a.pt.set_events(self.held, 1)

    def until(self, cond: Any, both: bool = False) -> None:
        for _ in range(400):
            if cond():
                return
            self.a.service(5)
            if both:
                with self.lab.inside("b"):
                    self.b.service(5)
        raise AssertionError("condition not reached")

    def close(self) -> None:
        self.a.destroy()
        self.b.destroy()


def test_connections_made_before_the_cold_plug_ended_are_culled_too(lab: Lab) -> None:
    h = HeldNet(lab)
    try:
        w = h.connect()
        assert not h.watcher.coldplug_done and w in h.watcher._early
        h.release()
        h.until(lambda: h.watcher.coldplug_done)
        assert w._route_id is not None
        lab.ip("a", "route", "del", "203.0.113.0/24")
        h.until(lambda: w.state is WsiState.CLOSED)
        assert w.close_reason == "route lost"
    finally:
        h.close()


def test_a_dump_that_ends_after_the_cold_plug_timeout_indexes_what_came_before(
    lab: Lab,
) -> None:
    h = HeldNet(lab)
    seen: list[bytes] = []
    h.a.smd.register(lambda c, ts, p: seen.append(p), SmdClass.NETWORK)
    try:
        h.watcher._coldplug_timeout()  # as if the 5 s had passed with no dump
        assert h.watcher.coldplug_done and len(h.watcher.table) == 0
        w = h.connect()
        assert w._route_id is None  # looked up in an empty table
        h.release()
        h.until(lambda: h.watcher._dump is None and len(h.watcher.table) > 0)
        assert w._route_id is not None
        h.a.service(5)
        assert seen == []  # the late cold plug is still a cold plug: no SMD
        lab.ip("a", "route", "del", "203.0.113.0/24")
        h.until(lambda: w.state is WsiState.CLOSED)
        assert w.close_reason == "route lost"
    finally:
        h.close()
