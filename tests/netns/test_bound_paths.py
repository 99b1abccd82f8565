"""The path of a connect bound to a device (``iface=`` a device name): its CAOs must say
the interface the socket was bound to, so that the link going down forgets them.

A second link va2 -- vb2 (2001:db8:5::/64) also reaches 2001:db8:2::/64, at a worse
metric than va: the table's lookup for PEER6 says va, a socket bound to va2 goes by va2.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from lwspy import CaoResult, Context, Reason, WsiState
from lwspy.roles.netlink import RouteWatcher
from tests.conftest import Recorder, service_until
from tests.netns.conftest import Lab
from tests.netns.test_coldplug_caos import Early

pytestmark = pytest.mark.netns


def second_link(lab: Lab) -> socket.socket:
    """va2 -- vb2 and a worse route to 2001:db8:2::/64 over it; a listener on PEER6."""
    subprocess.run(
        ["ip", "link", "add", "va2", "netns", lab.ns["a"], "type", "veth",
         "peer", "name", "vb2", "netns", lab.ns["b"]],
        check=True,
    )  # fmt: skip
    lab.ip("a", "addr", "add", "2001:db8:5::1/64", "dev", "va2", "nodad")
    lab.ip("b", "addr", "add", "2001:db8:5::2/64", "dev", "vb2", "nodad")
    lab.ip("a", "link", "set", "va2", "up")
    lab.ip("b", "link", "set", "vb2", "up")
    lab.ip("a", "route", "add", "2001:db8:2::/64", "via", "2001:db8:5::2", "dev", "va2",
           "metric", "2000")  # fmt: skip
    with lab.inside("b"):
        return socket.create_server((Lab.PEER6, 0), family=socket.AF_INET6)


@pytest.fixture
def listener(lab: Lab) -> Iterator[socket.socket]:
    with second_link(lab) as s:
        yield s


def test_a_device_bound_connect_is_filed_under_its_device(
    lab: Lab, listener: socket.socket
) -> None:
    va2 = socket.if_nametoindex("va2")
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=True) as ctx:
        watcher = ctx._netlink
        assert isinstance(watcher, RouteWatcher)
        service_until(ctx, lambda: watcher.coldplug_done)
        w = ctx.connect(Lab.PEER6, listener.getsockname()[1], protocol="p", iface="va2")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(w))
        assert w.local is not None and w.local[0] == "2001:db8:5::1"  # it went by va2
        w.close()
        service_until(ctx, lambda: w.state is WsiState.CLOSED)
        assert w.caos[0].result is CaoResult.WON
        assert w.caos[0].ifindex == va2
        lab.ip("a", "link", "set", "va2", "down")
        service_until(ctx, lambda: ctx.cao_db.stats(host=Lab.PEER6).attempts == 0, passes=40)


@pytest.mark.parametrize("family", [socket.AF_INET6, socket.AF_INET])
def test_the_kernel_asked_in_the_cold_plug_says_the_bound_device(lab: Lab, family: int) -> None:
    e = Early(lab, hold=True)
    try:
        with second_link(lab):
            va2 = socket.if_nametoindex("va2")
            peer = Lab.PEER6 if family == socket.AF_INET6 else Lab.PEER
            if family == socket.AF_INET:  # over va2 too, worse than over va
                lab.ip("a", "addr", "add", "203.0.113.130/25", "dev", "va2")
                lab.ip("b", "addr", "add", "203.0.113.129/25", "dev", "vb2")
                lab.ip("a", "route", "add", "203.0.113.1/32", "via", "203.0.113.129",
                       "dev", "va2", "metric", "2000")  # fmt: skip
            w = e.a.connect(peer, e.port, iface="va2")
            e.until(lambda: Reason.RAW_CONNECTED in e.cli.reasons(w))
            assert w.local is not None and w.local[0] != Lab.A_ADDR6
            [head] = w.caos
            # Established before the table is known: the kernel's word, for a socket bound
            # to va2 (IPv6 asked with a source would answer va's route).
            assert head.result is CaoResult.WON and head.ifindex == va2
    finally:
        e.close()


def test_a_device_bound_connect_in_the_cold_plug_keeps_the_kernels_word(lab: Lab) -> None:
    e = Early(lab, hold=True)
    try:
        with second_link(lab) as lsock:
            va2 = socket.if_nametoindex("va2")
            w = e.a.connect(Lab.PEER6, lsock.getsockname()[1], iface="va2")
            e.until(lambda: Reason.RAW_CONNECTED in e.cli.reasons(w))
            assert w.caos[0].ifindex == va2  # the kernel's word (RTM_GETROUTE, bound to va2)
            w.close()
            e.release()
            e.until(lambda: e.watcher.coldplug_done)
            assert w.caos[0].ifindex == va2  # the table's route for PEER6 is va's
    finally:
        e.close()
