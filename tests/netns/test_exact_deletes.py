"""A delete removes only the route the kernel means, IPv6 routes over different nexthop
objects stay apart, and a nexthop object's going re-asks the kernel about the
connections it decides for (the review of issue 7: D1, D2, D3).

Each test compares ``ctx.routes`` with ``ip -j route show table all`` as a multiset with
every attribute that tells two routes apart (source prefix, TOS, preferred source,
protocol, scope, metric, mtu, onlink, nexthop object, paths), and checks which
connections close and why against the kernel's own decision for their flow.
"""

from __future__ import annotations

import socket
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from lwspy import WsiState
from tests.netns.conftest import Lab
from tests.netns.test_kernel_rules import A2_ADDR, B2_ADDR, B2_ADDR6, RTAX_MTU, second_link
from tests.netns.test_policy import FLOWS, WG_TABLE, connect, kernel_routes
from tests.netns.test_routing import Net

pytestmark = pytest.mark.netns

Item = tuple[object, ...]
RTNH_F_ONLINK = 4


def kernel_items(lab: Lab) -> Counter[Item]:
    """Tables main and local of ns "a", one item per route (duplicates kept)."""
    index = {name: idx for idx, name in socket.if_nameindex()}
    out: Counter[Item] = Counter()
    for fam, dst, table, r in lab.kernel_json("a", numeric=True):
        src = r.get("from")
        if src and "/" not in src:
            src = f"{src}/{32 if fam == socket.AF_INET else 128}"
        mtu = next((m["mtu"] for m in r.get("metrics", ()) if "mtu" in m), None)
        hops = tuple(
            sorted(
                (h.get("gateway"), index.get(h["dev"]), h.get("weight", 1))
                for h in r.get("nexthops", ())
            )
        )
        gateway, dev, nhid = r.get("gateway"), index.get(r.get("dev", "")), r.get("nhid", 0)
        if hops or nhid:
            gateway = dev = None
        if nhid:
            hops = ()
        out[
            (
                int(fam),
                dst,
                src,
                table,
                int(r.get("type", 1)),
                gateway,
                dev,
                r.get("metric", 0),
                int(str(r.get("tos", 0) or 0), 0),
                r.get("prefsrc"),
                int(r.get("protocol", 3)),
                int(r.get("scope", 0)),
                mtu,
                "onlink" in r.get("flags", ()),
                nhid,
                hops,
            )
        ] += 1
    return out


def table_items(table: Iterable[Any]) -> Counter[Item]:
    """lwspy's table in the form of :func:`kernel_items`."""
    out: Counter[Item] = Counter()
    for r in table:
        hops = tuple(sorted(h[:3] for h in r.nexthops))
        gateway, dev = r.gateway, r.oif
        if hops or r.nhid:
            gateway = dev = None
        if r.nhid:
            hops = ()
        out[
            (
                r.family,
                f"{r.dst}/{r.dst_len}",
                f"{r.src}/{r.src_len}" if r.src_len else None,
                r.table,
                r.type,
                gateway,
                dev,
                r.priority,
                r.tos,
                r.prefsrc,
                r.protocol,
                r.scope,
                dict(r.metrics).get(RTAX_MTU),
                bool(r.nh_flags & RTNH_F_ONLINK),
                r.nhid,
                hops,
            )
        ] += 1
    return out


def same_as_kernel(net: Net) -> None:
    """ctx.routes equals the kernel's tables main and local, once late events are in."""
    table = net.a.routes
    assert table is not None
    for _ in range(100):
        if table_items(table) == kernel_items(net.lab):
            return
        for _ in range(4):
            net.service()
    mine, kernel = table_items(table), kernel_items(net.lab)
    assert mine == kernel, ("kernel only", kernel - mine, "lwspy only", mine - kernel)


def agree(net: Net, *conns: Any) -> None:
    """Each connection is open exactly when the kernel routes its flow; a closed one
    says the route was lost."""
    for _ in range(20):
        net.service()
    for w in conns:
        assert (w.state is WsiState.ESTABLISHED) == kernel_routes(net, w), (w, w.close_reason)
        if w.state is WsiState.CLOSED:
            assert w.close_reason == "route lost"


@pytest.fixture
def net(lab: Lab) -> Iterator[Net]:
    second_link(lab)
    n = Net(lab)
    try:
        yield n
    finally:
        n.close()
        FLOWS.clear()


# -- D1: a delete takes the route it names, not another of its key --------------------


def test_ethernet_and_wifi_on_one_lan_lose_only_the_deleted_addresss_routes(net: Net) -> None:
    lab = net.lab
    subprocess.run(
        [
            *("ip", "link", "add", "va3", "netns", lab.ns["a"]),
            *("type", "veth", "peer", "name", "vb3", "netns", lab.ns["b"]),
        ],
        check=True,
    )
    lab.ip("b", "link", "set", "vb3", "up")
    lab.ip("a", "addr", "add", "198.51.100.50/24", "dev", "va3")
    lab.ip("a", "link", "set", "va3", "up")
    net.settle()
    same_as_kernel(net)
    near = connect(net, Lab.B_ADDR)
    far = connect(net, Lab.PEER)
    # va3's address goes (its last IPv4 one): the kernel flushes its routes, then
    # announces the deletion of its prefix and broadcast routes, the same keys as va's.
    lab.ip("a", "addr", "del", "198.51.100.50/24", "dev", "va3")
    same_as_kernel(net)
    agree(net, near, far)
    assert net.alive(near) and net.alive(far)
    assert net.a.routes is not None
    route = net.a.routes.lookup(Lab.B_ADDR)
    assert route is not None and route.oif == socket.if_nametoindex("va")


def test_one_address_on_two_links_loses_only_the_deleted_copys_routes(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "addr", "add", f"{A2_ADDR}/32", "dev", "va")  # A2 on va too
    net.settle()
    same_as_kernel(net)
    lab.ip("a", "addr", "del", f"{A2_ADDR}/26", "dev", "va2")
    same_as_kernel(net)  # va's local route for A2 stays
    near = connect(net, Lab.B_ADDR)
    agree(net, near)
    assert net.alive(near)


def test_an_alias_on_another_link_survives_and_its_connection_too(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "route", "del", "203.0.113.0/24")
    lab.ip("b", "addr", "add", "203.0.113.200/32", "dev", "lo")
    lab.ip("a", "addr", "del", f"{A2_ADDR}/26", "dev", "va2")
    lab.ip("a", "route", "append", "203.0.113.192/26", "dev", "va", "src", Lab.A_ADDR)
    lab.ip("a", "addr", "add", f"{A2_ADDR}/26", "dev", "va2")
    net.settle()
    same_as_kernel(net)  # two aliases of 203.0.113.192/26: va's, then va2's
    w = connect(net, "203.0.113.200")
    lab.ip("a", "addr", "del", f"{A2_ADDR}/26", "dev", "va2")
    same_as_kernel(net)
    agree(net, w)
    assert net.alive(w)  # the kernel routes it over va's alias: no false "route lost"


def test_ip_route_del_without_details_takes_the_alias_the_kernel_took(net: Net) -> None:
    lab = net.lab
    lab.ip("a", "route", "add", "198.18.1.0/24", "dev", "va")
    lab.ip("a", "route", "append", "198.18.1.0/24", "dev", "va2")
    lab.ip("a", "route", "append", "198.18.1.0/24", "via", Lab.B_ADDR, "dev", "va")
    net.settle()
    same_as_kernel(net)
    for _ in range(3):
        lab.ip("a", "route", "del", "198.18.1.0/24")  # the first of the key, each time
        same_as_kernel(net)


# -- D2: IPv6 routes over different nexthop objects are different routes --------------


@pytest.mark.parametrize("compat", ["1", "0"])
def test_ipv6_routes_over_different_nexthop_objects_stay_apart(net: Net, compat: str) -> None:
    lab = net.lab
    lab.sysctl("a", "net.ipv4.nexthop_compat_mode", compat)
    lab.ip("b", "addr", "add", "2001:db8:9::1/128", "dev", "lo")
    lab.ip("a", "nexthop", "add", "id", "6", "via", Lab.B_ADDR6, "dev", "va")
    lab.ip("a", "nexthop", "add", "id", "7", "via", B2_ADDR6, "dev", "va2")
    lab.ip("a", "nexthop", "add", "id", "8", "via", Lab.B_ADDR6, "dev", "va")  # 6's path
    lab.ip("a", "-6", "route", "add", "2001:db8:9::/64", "nhid", "6")
    lab.ip("a", "-6", "route", "append", "2001:db8:9::/64", "nhid", "7")
    lab.ip("a", "-6", "route", "append", "2001:db8:9::/64", "nhid", "8")
    net.settle()
    same_as_kernel(net)  # three routes of one prefix and metric
    w = connect(net, "2001:db8:9::1")
    lab.ip("a", "nexthop", "del", "id", "6")
    same_as_kernel(net)  # 8's route, with 6's path, stays
    agree(net, w)
    lab.ip("a", "nexthop", "del", "id", "8")
    same_as_kernel(net)
    agree(net, w)
    assert net.alive(w)  # 7's route carries it
    lab.ip("a", "nexthop", "del", "id", "7")
    net.service_until(lambda: w.state is WsiState.CLOSED)
    same_as_kernel(net)
    agree(net, w)


# -- D3: a nexthop object's going re-asks the kernel -------------------------------------


def _wg_over_nexthop(net: Net, family: int) -> tuple[Any, Any]:
    """wg-quick's rules, table 51820's default route over nexthop object 5 (on va2), the
    far peer only routed by it: the far connection, and a near one main routes."""
    lab = net.lab
    v = "-4" if family == socket.AF_INET else "-6"
    gateway = B2_ADDR if family == socket.AF_INET else B2_ADDR6
    lab.ip("a", v, "nexthop", "add", "id", "5", "via", gateway, "dev", "va2")
    lab.ip("a", v, "route", "add", "default", "nhid", "5", "table", WG_TABLE)
    lab.ip("a", v, "rule", "add", "not", "fwmark", "0xca6c", "table", WG_TABLE)
    lab.ip("a", v, "rule", "add", "table", "main", "suppress_prefixlength", "0")
    if family == socket.AF_INET:
        lab.ip("a", "route", "del", "203.0.113.0/24")
        far, near = connect(net, Lab.PEER), connect(net, Lab.B_ADDR)
    else:
        lab.ip("a", "-6", "route", "del", "2001:db8:2::/64")
        far, near = connect(net, Lab.PEER6), connect(net, Lab.B_ADDR6)
    agree(net, far, near)
    assert net.alive(far) and net.alive(near)
    watcher = net.a._netlink
    assert watcher is not None and watcher._keys[far].probe  # the kernel decides
    return far, near


@pytest.mark.parametrize(
    ("family", "compat"),
    [(socket.AF_INET, "1"), (socket.AF_INET6, "1"), (socket.AF_INET6, "0")],
)
def test_deleting_a_nexthop_object_culls_what_the_kernel_routed_over_it(
    net: Net, family: int, compat: str
) -> None:
    net.lab.sysctl("a", "net.ipv4.nexthop_compat_mode", compat)
    far, near = _wg_over_nexthop(net, family)
    net.lab.ip("a", "nexthop", "del", "id", "5")  # table 51820's route goes silently
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agree(net, far, near)
    assert net.alive(near)
    same_as_kernel(net)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_a_carrier_loss_that_flushes_a_nexthop_object_culls_too(net: Net, family: int) -> None:
    far, near = _wg_over_nexthop(net, family)
    net.lab.ip("b", "link", "set", "vb2", "down")  # va2 stays up, without carrier
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agree(net, far, near)
    assert net.alive(near)
    same_as_kernel(net)


def test_a_nexthop_object_lost_with_an_overflow_is_found_by_the_re_dump(net: Net) -> None:
    far, near = _wg_over_nexthop(net, socket.AF_INET)
    watcher = net.a._netlink
    assert watcher is not None
    net.lab.ip("a", "nexthop", "del", "id", "5")
    watcher._overflow()  # as at ENOBUFS: the pending events (the delete) are dropped
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agree(net, far, near)
    assert net.alive(near) and watcher.stats["resyncs"] == 1
    same_as_kernel(net)


def test_a_connection_table_default_routes_over_a_nexthop_object_is_culled_with_it(
    net: Net,
) -> None:
    lab = net.lab
    lab.ip("a", "nexthop", "add", "id", "5", "via", B2_ADDR, "dev", "va2")
    lab.ip("a", "route", "add", "203.0.113.0/24", "nhid", "5", "table", "default")
    far, near = connect(net, Lab.PEER), connect(net, Lab.B_ADDR)
    lab.ip("a", "route", "del", "203.0.113.0/24")  # only table default routes the peer now
    agree(net, far, near)
    watcher = net.a._netlink
    assert watcher is not None and far in watcher._orphans and net.alive(far)
    lab.ip("a", "nexthop", "del", "id", "5")  # table default's route goes silently
    net.service_until(lambda: far.state is WsiState.CLOSED)
    agree(net, far, near)
    assert net.alive(near)
    same_as_kernel(net)
