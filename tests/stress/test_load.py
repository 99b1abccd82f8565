"""Load: many connections, much data, many timers, many resolver connects."""

from __future__ import annotations

import random
import time

import lwspy
from lwspy import Protocol, Reason, Wsi
from tests.conftest import FakeClock
from tests.dnsfake import FakeDns
from tests.stress.conftest import EchoServer, record, roomy, size


def test_concurrent_loopback_connections_echo_byte_exact(echo_server: EchoServer) -> None:
    conns = size(10_000, 1_000)
    report = echo_server.serve_peer(str(conns), "2048", "--hold")
    assert report["complete"] == conns and report["crc_equal"] == conns
    assert report["mismatches"] == report["errors"] == 0 and not report["timed_out"]
    assert echo_server.peak == conns  # all open together
    assert echo_server.adopted == conns and echo_server.open == 0
    assert set(echo_server.closed.values()) == {1} and len(echo_server.closed) == conns
    assert echo_server.errors == []
    assert list(echo_server.ctx.pt.fds) == [echo_server.ctx.pt.wake_r, echo_server.vh.listener.fd]
    record("concurrent_echo", conns=conns, peak_open=echo_server.peak, seconds=report["seconds"])


def test_bulk_through_100_connections_byte_exact(echo_server: EchoServer) -> None:
    total = size(1 << 30, 64 << 20)
    each = -(-total // 100)  # at least the total in all
    report = echo_server.serve_peer("100", str(each))
    assert report["bytes_echoed"] == each * 100 >= total
    assert report["complete"] == report["crc_equal"] == 100
    assert report["mismatches"] == report["errors"] == 0
    assert echo_server.adopted == 100 and echo_server.open == 0
    assert set(echo_server.closed.values()) == {1}
    record("bulk_100", bytes_each_way=report["bytes_echoed"], seconds=report["seconds"])


def test_timers_half_cancelled_the_rest_fire_in_order() -> None:
    n = size(100_000, 20_000)
    clock = FakeClock()
    rng = random.Random(13)
    fired: list[int] = []
    with lwspy.Context(netlink=False, clock=clock) as ctx:
        due = [rng.uniform(0, 10) for _ in range(n)]
        suls = [ctx.call_later(d, fired.append, i) for i, d in enumerate(due)]
        cancelled = set(rng.sample(range(n), n // 2))
        for i in cancelled:
            suls[i].cancel()
        for i in rng.sample(sorted(set(range(n)) - cancelled), n // 10):
            due[i] += 0.5  # and some re-scheduled: the move counts, not the first time
            suls[i].schedule(due[i] - (clock.now - 1000.0))
        while len(fired) < n - len(cancelled) and clock.now < 1020:
            clock.advance(0.05)
            ctx.service(0)
    assert len(fired) == n - len(cancelled) and not cancelled & set(fired)
    assert fired == sorted(fired, key=lambda i: due[i])
    record("timers", scheduled=n, cancelled=len(cancelled), fired=len(fired))


def test_concurrent_connects_to_names_through_the_resolver(nofile: int) -> None:
    n = size(1_000, 200)
    connected: list[Wsi] = []
    failed: list[str] = []

    def cb(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_CONNECTED and wsi is not None:
            connected.append(wsi)
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            failed.append(str(data))
        return 0

    with roomy(FakeDns()) as dns_srv:
        for i in range(n):
            dns_srv.zone[f"n{i}.test"] = [("A", "127.0.0.1")]
        srv = EchoServer(Protocol("client", cb), nameservers=[dns_srv.address])
        try:
            start = time.monotonic()
            port = srv.vh.listen_port
            wsis = [srv.ctx.connect(f"n{i}.test", port, protocol="client") for i in range(n)]
            for _ in range(20_000):
                if len(connected) + len(failed) == n and srv.open == n:
                    break
                srv.ctx.service(1)
                dns_srv.pump()
            took = time.monotonic() - start
            assert failed == [] and set(connected) == set(wsis)
            assert srv.peak == n  # every accepted side open together
            assert {w.conmon.dns_disposition for w in wsis if w.conmon} == {"OK"}
            assert len(srv.ctx.cao_db) == min(n, 1024)
        finally:
            srv.close()
    assert len(dns_srv.queries) == 2 * n  # AAAA and A, each asked once
    record("connects_to_names", connects=n, seconds=round(took, 3))
