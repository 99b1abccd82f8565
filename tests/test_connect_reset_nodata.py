"""A connect that completed and was reset before the loop looked, with nothing sent: a
server (or a load balancer with no backend, a listener with ``tcp_abort_on_overflow``)
that accepts and resets every connection. There is no answer to deliver, so taking it as
the race's winner only hands the application a "peer reset" while the next address is
healthy, and teaches the CAO database a WON path that the next connect puts first again.
Such an attempt fails (as lws has it: any SO_ERROR fails the attempt) and the race goes on
at once; only a reset that left the peer's bytes to read is a win (tests/test_connect_reset.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwspy import Cao, CaoResult, Context, Reason, WsiState
from lwspy.net.cao import FAILURES
from tests.conftest import Recorder, service_until
from tests.test_connect_reset import answer_and_reset, attempt_socket, reraise


@pytest.fixture
def listeners() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A listener on 127.0.0.1 and one on ::1, on the same port."""
    for _ in range(20):
        v4 = socket.create_server(("127.0.0.1", 0))
        try:
            v6 = socket.create_server(("::1", v4.getsockname()[1]), family=socket.AF_INET6)
        except OSError:  # that port is taken on ::1: another
            v4.close()
            continue
        v4.settimeout(5)
        with v4, v6:
            yield v4, v6
        return
    pytest.skip("no port free on both 127.0.0.1 and ::1")


def test_a_reset_at_connect_with_nothing_to_read_fails_and_the_next_address_wins(
    listeners: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    v4, _v6 = listeners
    port = v4.getsockname()[1]
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 two.test\n::1 two.test\n")
    rec = Recorder("p")
    with Context(
        protocols=[rec.protocol], netlink=False, hosts_file=hosts, on_callback_error=reraise
    ) as ctx:
        # ::1 lost a race lately: 127.0.0.1 goes first (the first attempt is the resetter).
        lost = Cao("two.test", port, "::1", socket.AF_INET6, ctx.now(), result=CaoResult.REFUSED)
        ctx.cao_db.add(lost)
        wsi = ctx.connect("two.test", port, protocol="p")
        answer_and_reset(v4, attempt_socket(ctx), b"")
        service_until(
            ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi) or wsi.state is WsiState.CLOSED
        )
        assert wsi.peer is not None and wsi.peer[0] == "::1"
        reset = [c for c in wsi.caos if c.address == "127.0.0.1"]
        assert [c.result in FAILURES for c in reset] == [True]
        assert ctx.cao_db.stats(address="127.0.0.1").wins == 0
        wsi.close()
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert len(ctx.pt.fds) == 1
