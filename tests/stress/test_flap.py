"""An interface flapping while connections come and go (network namespaces, netlink on).

Each round opens connections over the link (to the peer behind the gateway and to the
on-link neighbour), takes the link down (the kernel drops the routes over it, lwspy
culls the connections and forgets the link's CAO history), brings it up and puts the
gateway route back, while the connections of the round before that survived are closed
by the application. At the end: every connect ended once, every RAW_CLOSE came exactly
once after its RAW_CONNECTED, no wsi is left half-closed, the CAO database's indexes
agree with its records and hold nothing of the link from before its last down.
"""

from __future__ import annotations

import socket

import pytest

from lwspy import Reason, Wsi, WsiState
from tests.netns.conftest import Lab
from tests.netns.test_routing import Net
from tests.stress.conftest import record, size

pytestmark = pytest.mark.netns

ENDS = (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR)


def test_an_interface_flapping_while_connections_come_and_go(lab: Lab) -> None:
    flaps = size(100, 15)
    net = Net(lab)
    try:
        va = socket.if_nametoindex("va")
        db = net.a.cao_db
        every: list[Wsi] = []
        survivors: list[Wsi] = []
        culled = 0
        for _ in range(flaps):
            port = net.b_port
            assert port is not None
            fresh = [net.a.connect(h, port, protocol="cli") for h in (Lab.PEER, Lab.B_ADDR) * 2]
            every += fresh
            net.service_until(
                lambda fresh=fresh: all(any(r in ENDS for r in net.cli.reasons(w)) for w in fresh)
            )
            for w in survivors:  # the application closes last round's loopback ones
                w.close("done")
            lab.ip("a", "link", "set", "va", "down")
            up = [w for w in fresh if w.state is WsiState.ESTABLISHED]
            net.service_until(lambda up=up: all(w.state is WsiState.CLOSED for w in up))
            assert {w.close_reason for w in up} <= {"route lost", "source address gone"}
            culled += len(up)
            net.service_until(lambda: not db.query(ifindex=va))  # the link's history forgotten
            lab.ip("a", "link", "set", "va", "up")
            lab.ip("a", "route", "replace", "203.0.113.0/24", "via", Lab.B_ADDR)
            net.service_until(lambda: net.a.routes is not None and net.a.routes.routable(Lab.PEER))
            survivors = [net.loopback()]
            every += survivors
        for w in survivors:
            w.close("done")
        net.service_until(lambda: all(w.state is WsiState.CLOSED for w in every))
        for w in every:
            reasons = net.cli.reasons(w)
            assert sum(r in ENDS for r in reasons) == 1
            assert reasons.count(Reason.RAW_CLOSE) == reasons.count(Reason.RAW_CONNECTED)
            if Reason.RAW_CLOSE in reasons:
                assert reasons.index(Reason.RAW_CONNECTED) < reasons.index(Reason.RAW_CLOSE)
        # The accepted ends of the loopback connections see their EOF: none is left open.
        net.service_until(lambda: all(w.state is WsiState.LISTENING for w in net.a._wsis))
        records = list(db)
        for key, index in db._index.items():  # the indexes hold exactly the records
            held = {id(c) for bucket in index.values() for c in bucket.values()}
            assert held == {id(c) for c in records if getattr(c, key) is not None}, key
        net.check_table()
    finally:
        net.close()
    assert culled >= flaps  # the flaps did cut connections each round
    record("flap", flaps=flaps, connects=len(every), culled=culled, cao_records=len(records))
