"""Culling as the kernel routes: policy rules, other tables, source-specific IPv6 routes,
connections bound to a device, and bulk blackhole loads.

Each test sets up what real devices run (wg-quick's rules, OpenWrt's ``from`` routes,
SO_BINDTODEVICE), makes a change, and checks the connections against the kernel's own
decision for their flow: a fresh TCP connect made like the connection (same device
binding, same source) either starts (the kernel routes it) or fails at once (it does
not), and a connection the kernel routes still echoes.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from collections.abc import Iterator
from types import FrameType

import pytest

from lwspy import Reason, Wsi, WsiState
from tests.netns.conftest import Lab
from tests.netns.test_routing import Net

pytestmark = pytest.mark.netns

WG_TABLE = "51820"


@pytest.fixture
def net(lab: Lab) -> Iterator[Net]:
    n = Net(lab)
    try:
        yield n
    finally:
        n.close()
        FLOWS.clear()


class Flow:
    """A connection's flow as the kernel routes it: family, device binding, source, peer
    (taken while the socket is open)."""

    def __init__(self, w: Wsi) -> None:
        sock = w.sock
        assert sock is not None and w.peer is not None and w.local is not None
        self.family = sock.family
        self.bound = sock.getsockopt(socket.SOL_SOCKET, 62)  # SO_BINDTOIFINDEX
        self.local = w.local[0]
        self.peer = w.peer


FLOWS: dict[Wsi, Flow] = {}


def connect(net: Net, host: str, iface: str | None = None) -> Wsi:
    w = net.connect(host, iface=iface)
    FLOWS[w] = Flow(w)
    return w


def kernel_routes(net: Net, w: Wsi) -> bool:
    """Would the kernel route a new TCP flow made like ``w`` (its device, its source)?"""
    flow = FLOWS[w]
    with net.lab.inside("a"):
        probe = socket.socket(flow.family, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        if flow.bound:
            probe.setsockopt(socket.SOL_SOCKET, 62, flow.bound)
        try:
            probe.bind((flow.local, 0))
        except OSError:
            return False  # the source address is gone
        err = probe.connect_ex(flow.peer)
    finally:
        probe.close()
    return err in (0, errno.EINPROGRESS)


def echoes(net: Net, w: Wsi) -> bool:
    """Send a line over ``w`` and wait for the peer's echo."""
    before = len(net.cli.data(Reason.RAW_RX, w))
    w.write(b"ping\n")
    for _ in range(400):
        net.service()
        if len(net.cli.data(Reason.RAW_RX, w)) > before:
            return True
        if w.state is not WsiState.ESTABLISHED:
            return False
    return False


def agrees(net: Net, *conns: Wsi) -> None:
    """Every connection is open exactly when the kernel routes it."""
    net.settle()
    for w in conns:
        assert (w.state is WsiState.ESTABLISHED) == kernel_routes(net, w), w
        if w.state is WsiState.CLOSED:
            assert w.close_reason == "route lost"


def test_wg_quick_rules_decide_and_culls_follow_them(net: Net) -> None:
    """wg-quick: table 51820 carries the tunnel's routes, `lookup main
    suppress_prefixlength 0` keeps main's default route out of the decision."""
    lab = net.lab
    lab.ip("a", "route", "del", "203.0.113.0/24")
    lab.ip("a", "route", "add", "default", "via", Lab.B_ADDR)
    lab.ip("a", "route", "add", "203.0.113.0/24", "via", Lab.B_ADDR, "table", WG_TABLE)
    lab.ip("a", "rule", "add", "not", "fwmark", WG_TABLE, "table", WG_TABLE, "prio", "32765")
    lab.ip("a", "rule", "add", "table", "main", "suppress_prefixlength", "0", "prio", "32764")
    far = connect(net, Lab.PEER)
    net.settle()
    # main's default route goes: the kernel still routes the peer by table 51820
    lab.ip("a", "route", "del", "default")
    agrees(net, far)
    assert net.alive(far) and echoes(net, far)
    # the tunnel's route goes: nothing routes the peer any more
    lab.ip("a", "route", "del", "203.0.113.0/24", "table", WG_TABLE)
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agrees(net, far)
    net.check_table()  # ctx.routes stays tables main and local


def test_a_route_in_table_default_still_carries_a_connection(net: Net) -> None:
    """The default rules end with `lookup default`: a peer that only table default
    routes is routed by the kernel, though ctx.routes (main and local) has no route."""
    lab = net.lab
    lab.ip("a", "route", "add", "203.0.113.0/24", "via", Lab.B_ADDR, "table", "default")
    far = connect(net, Lab.PEER)
    lab.ip("a", "route", "del", "203.0.113.0/24")
    agrees(net, far)
    assert net.alive(far) and echoes(net, far)
    # a route in main again: the table decides for it again
    lab.ip("a", "route", "add", "203.0.113.0/28", "via", Lab.B_ADDR)
    net.settle()
    assert far._route_id is not None
    lab.ip("a", "route", "del", "203.0.113.0/28")
    agrees(net, far)
    assert net.alive(far)
    # table default's route goes: nothing routes the peer, and nothing in main changed
    lab.ip("a", "route", "del", "203.0.113.0/24", "table", "default")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agrees(net, far)
    # a connection made while only table default routes its peer
    lab.ip("a", "route", "add", "203.0.113.0/24", "via", Lab.B_ADDR, "table", "default")
    late = connect(net, Lab.PEER)
    assert late._route_id is None and net.alive(late)
    lab.ip("a", "route", "add", "blackhole", f"{Lab.PEER}/32")
    net.service_until(lambda: late.state is WsiState.CLOSED)
    agrees(net, late)


def test_a_throw_route_hands_the_lookup_on_to_table_default(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "route", "add", "203.0.113.0/24", "via", Lab.B_ADDR, "table", "default")
    far = connect(net, Lab.PEER)
    lab.ip("a", "route", "add", "throw", f"{Lab.PEER}/32")
    agrees(net, far)
    assert net.alive(far) and echoes(net, far)
    lab.ip("a", "route", "del", "203.0.113.0/24", "table", "default")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agrees(net, far)


def test_a_rule_that_blocks_a_peer_culls_and_its_removal_leaves_the_rest(net: Net) -> None:
    far = connect(net, Lab.PEER)
    near = connect(net, Lab.B_ADDR)
    far6 = connect(net, Lab.PEER6)
    lab = net.lab
    lab.ip("a", "rule", "add", "from", "198.51.100.9", "table", "100")  # matches nobody
    agrees(net, far, near, far6)
    assert net.alive(far) and net.alive(near) and net.alive(far6)
    lab.ip("a", "rule", "add", "to", Lab.PEER, "prohibit")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agrees(net, far, near, far6)
    assert net.alive(near) and net.alive(far6)
    lab.ip("a", "-6", "rule", "add", "to", "2001:db8:2::/64", "unreachable")
    net.service_until(lambda: far6.state is WsiState.CLOSED)
    agrees(net, near, far6)
    assert net.alive(near)


def test_default_rules_again_give_the_table_back_the_decision(net: Net) -> None:
    watcher = net.a._netlink
    assert watcher is not None
    far = connect(net, Lab.PEER)
    assert far._route_id is not None  # the table decides: indexed by its route
    net.lab.ip("a", "rule", "add", "from", "198.51.100.9", "table", "100", "prio", "100")
    net.settle()
    assert far._route_id is None and watcher._keys[far].probe
    net.lab.ip("a", "rule", "del", "prio", "100")
    net.settle()
    assert far._route_id is not None and not watcher._keys[far].probe
    rechecked = watcher.stats["rechecked"]
    net.lab.ip("a", "route", "del", "203.0.113.0/24")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    assert far.close_reason == "route lost"
    assert watcher.stats["rechecked"] - rechecked == 1


def test_source_specific_ipv6_routes_as_openwrt_installs_them(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "-6", "route", "del", "2001:db8:2::/64")
    lab.ip("a", "-6", "route", "add", "default", "via", Lab.B_ADDR6)
    lab.ip(
        "a", "-6", "route", "add", "default", "from", "2001:db8:1::/64", "via", Lab.B_ADDR6,
        "metric", "512",
    )  # fmt: skip
    far6 = connect(net, Lab.PEER6)
    far = connect(net, Lab.PEER)
    net.settle()
    # the plain default goes; the source-specific one still carries the connection
    lab.ip("a", "-6", "route", "del", "default", "from", "::/0", "via", Lab.B_ADDR6)
    agrees(net, far6, far)
    assert net.alive(far6) and echoes(net, far6)
    net.check_table()
    # and when it goes too, the connection is culled
    lab.ip("a", "-6", "route", "del", "default", "from", "2001:db8:1::/64")
    net.service_until(lambda: far6.state is WsiState.CLOSED)
    agrees(net, far6, far)
    assert net.alive(far)
    net.check_table()


def _second_link(lab: Lab) -> None:
    """A veth pair vc/vd inside ns "a", up, without IPv6 link-local addresses."""
    lab.ip("a", "link", "add", "vc", "type", "veth", "peer", "name", "vd")
    for dev in ("vc", "vd"):
        lab.ip("a", "link", "set", dev, "addrgenmode", "none")
        lab.ip("a", "link", "set", dev, "up")


def test_a_connection_bound_to_a_device_is_decided_for_that_device(net: Net) -> None:
    lab = net.lab
    _second_link(lab)
    lab.ip("a", "-6", "route", "add", "2001:db8:2::/64", "dev", "vc", "metric", "2048")
    lab.ip("a", "route", "add", "203.0.113.0/24", "dev", "vc", "metric", "2048")
    far = connect(net, Lab.PEER, iface="va")
    far6 = connect(net, Lab.PEER6, iface="va")
    plain6 = connect(net, Lab.PEER6)
    # a blackhole for the peers: a socket bound to va still reaches them over va
    lab.ip("a", "route", "add", "blackhole", f"{Lab.PEER}/32")
    lab.ip("a", "-6", "route", "add", "blackhole", f"{Lab.PEER6}/128")
    net.service_until(lambda: plain6.state is WsiState.CLOSED)
    agrees(net, far, far6, plain6)
    assert net.alive(far) and net.alive(far6)
    assert echoes(net, far) and echoes(net, far6)
    lab.ip("a", "-6", "route", "del", "blackhole", f"{Lab.PEER6}/128")
    # va's IPv6 route goes: vc's still covers the peer, but not for a socket bound to va
    lab.ip("a", "-6", "route", "del", "2001:db8:2::/64", "via", Lab.B_ADDR6)
    net.service_until(lambda: far6.state is WsiState.CLOSED)
    agrees(net, far, far6)
    assert net.alive(far)


def test_a_bound_connection_whose_device_goes_down_is_culled(net: Net) -> None:
    lab = net.lab
    _second_link(lab)
    lab.ip("a", "route", "add", "203.0.113.0/24", "dev", "vc", "metric", "2048")
    far = connect(net, Lab.PEER, iface="va")
    plain = connect(net, Lab.PEER)
    net.settle()
    lab.ip("a", "link", "set", "vd", "down")  # vc loses its carrier: nothing changes
    agrees(net, far, plain)
    assert net.alive(far) and net.alive(plain)
    # va goes down: the table still routes the peer over vc, but not a socket bound to va
    lab.ip("a", "link", "set", "va", "down")
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agrees(net, far, plain)
    assert net.alive(plain)


def test_blackhole_bulk_load_costs_per_route_not_per_connection(net: Net) -> None:
    """20 connections over the default route, then 3,000 blackholes (one covering the
    peer): the work per new route must not grow with the connections."""
    lab = net.lab
    lab.ip("a", "route", "del", "203.0.113.0/24")
    lab.ip("a", "route", "add", "default", "via", Lab.B_ADDR)
    conns = [connect(net, Lab.PEER) for _ in range(20)]
    near = connect(net, Lab.B_ADDR)
    net.settle()
    n = 3000
    text = "".join(f"route add blackhole 198.18.{i // 250}.{i % 250}/32\n" for i in range(n))
    text += f"route add blackhole {Lab.PEER}/32\n"
    calls = 0
    settling: FrameType | None = None

    def count(frame: FrameType, event: str, arg: object) -> None:
        # Python calls made while the watcher settles a batch (the culling work; not
        # the decode or the table update, which are per route by nature)
        nonlocal calls, settling
        if event == "call":
            if settling is not None:
                calls += 1
            elif frame.f_code.co_name == "_settle":
                settling = frame
        elif event == "return" and frame is settling:
            settling = None

    subprocess.run(["ip", "-n", lab.ns["a"], "-batch", "-"], input=text, text=True, check=True)
    sys.setprofile(count)
    try:
        for _ in range(200):
            net.a.service(5)
            if all(w.state is WsiState.CLOSED for w in conns):
                break
    finally:
        sys.setprofile(None)
    assert all(w.close_reason == "route lost" for w in conns)
    # measured: about 4 per route here; the old design made some 60 (3 per connection)
    assert calls < 8 * n, calls
    net.settle()
    assert net.alive(near)
    net.check_table()
