"""The connect machinery on loopback: the race, the CAO database's say, retries, CONMON.

Times are the context's fake clock: a test moves it and asserts when each attempt
started, never how long anything took in real time.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dns.message
import pytest

from lwspy import CaoResult, Context, Reason, RetryPolicy, Wsi, WsiState
from lwspy.core.client import forget_paths
from lwspy.net.cao import Cao, CaoDb
from tests.conftest import FakeClock, Recorder, service_until
from tests.dnsfake import FakeDns, Reply
from tests.helpers import open_fds

L4, L6 = "127.0.0.1", "::1"


def _outcomes(rec: Recorder, wsi: Wsi) -> list[Reason]:
    keep = (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR)
    return [r for r in rec.reasons(wsi) if r in keep]


@contextlib.contextmanager
def dual_port(v6: str, v4: str) -> Iterator[tuple[int, list[socket.socket]]]:
    """One port on ::1 and 127.0.0.1, each "listen", "refuse" or "hang" (a full backlog)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(20):
            for s in socks:
                s.close()
            socks.clear()
            try:
                s6 = socket.socket(socket.AF_INET6)
                socks.append(s6)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind((L6, 0))
                port = s6.getsockname()[1]
                s4 = socket.socket(socket.AF_INET)
                socks.append(s4)
                s4.bind((L4, port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        else:  # pragma: no cover
            raise AssertionError("no port free on both families")
        for sock, how, fam, host in ((s6, v6, socket.AF_INET6, L6), (s4, v4, socket.AF_INET, L4)):
            if how == "listen":
                sock.listen(16)
            elif how == "hang":
                sock.listen(0)
                _fill(sock, fam, host, port, socks)
        yield port, socks
    finally:
        for s in socks:
            s.close()


def _fill(lst: socket.socket, fam: int, host: str, port: int, socks: list[socket.socket]) -> None:
    """Connect until the listen queue is full: the next SYN is dropped and hangs."""
    for _ in range(16):
        c = socket.socket(fam)
        socks.append(c)
        c.setblocking(False)
        c.connect_ex((host, port))
        _, w, _ = select.select([], [c], [], 0.5)
        if not w:
            return
    raise AssertionError("the listen queue never filled")  # pragma: no cover


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(f"{L6} dual.test\n{L4} dual.test\n")
    return path


def _ctx(rec: Recorder, hosts: Path, clock: FakeClock, **kw: object) -> Context:
    return Context(protocols=[rec.protocol], hosts_file=hosts, clock=clock, netlink=False, **kw)  # type: ignore[arg-type]


def test_a_hanging_first_address_loses_one_delay_later_and_is_skipped_next_time(
    hosts: Path, clock: FakeClock
) -> None:
    rec = Recorder("p")
    with dual_port("hang", "listen") as (port, _), _ctx(rec, hosts, clock) as ctx:
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: len(wsi.caos) == 1)
        assert [c.address for c in wsi.caos] == [L6]  # RFC 6724: ::1 first
        for _ in range(3):  # real time passes; the fake clock does not
            ctx.service(20)
        assert len(wsi.caos) == 1 and wsi.state is WsiState.CONNECTING
        clock.advance(0.25)  # happy_eyeballs_delay
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))
        head, loser = wsi.caos
        assert (head.address, head.result) == (L4, CaoResult.WON)
        assert (loser.address, loser.result) == (L6, CaoResult.LOST_RACE)
        assert head.started - loser.started == 0.25
        assert wsi.peer == (L4, port) and head.local == wsi.local
        assert rec.reasons(wsi)[:3] == [Reason.WSI_CREATE, Reason.CONNECTING, Reason.RAW_CONNECTED]
        st = ctx.cao_db.stats(host="dual.test")
        assert (st.attempts, st.wins, st.lost, st.failures) == (2, 1, 1, 0)

        again = ctx.connect("dual.test", port)  # IPv6 lost: demoted; IPv4 won: first
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(again))
        assert [(c.address, c.result) for c in again.caos] == [(L4, CaoResult.WON)]
        assert ctx.cao_db.stats(host="dual.test", family=socket.AF_INET).wins == 2


def test_a_measured_path_sets_the_attempt_delay_from_its_connect_times(
    hosts: Path, clock: FakeClock
) -> None:
    # RFC 8305 §5 as issue 10 asks: once the database has connect times for the path, the
    # Connection Attempt Delay after starting it is twice their median (10 ms .. 2 s),
    # not happy_eyeballs_delay.
    rec = Recorder("p")
    with _ctx(rec, hosts, clock) as ctx:
        with dual_port("listen", "listen") as (port, _):
            wsi = ctx.connect("dual.test", port)
            service_until(ctx, lambda: len(wsi.caos) == 1)
            clock.advance(0.03)  # the handshake "took" 30 ms
            service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))
            assert [(c.address, c.connect_us) for c in wsi.caos] == [(L6, 30_000)]
        with dual_port("hang", "listen") as (port, _):
            again = ctx.connect("dual.test", port)
            service_until(ctx, lambda: len(again.caos) == 1)
            assert again.caos[0].address == L6  # it won last time: first again
            clock.advance(0.059)
            for _ in range(3):
                ctx.service(10)
            assert len(again.caos) == 1
            clock.advance(0.001)  # 2 x 30 ms after the IPv6 start, not 250 ms
            service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(again))
            head, loser = again.caos
            assert (head.address, loser.address, loser.result) == (L4, L6, CaoResult.LOST_RACE)
            assert head.started - loser.started == pytest.approx(0.06)
    # nothing measured yet in a fresh context: the configured delay
    with (
        _ctx(rec, hosts, clock, happy_eyeballs_delay=0.5) as ctx,
        dual_port("hang", "listen") as (port, _),
    ):
        w = ctx.connect("dual.test", port)
        service_until(ctx, lambda: len(w.caos) == 1)
        clock.advance(0.499)
        for _ in range(3):
            ctx.service(10)
        assert len(w.caos) == 1
        clock.advance(0.001)
        service_until(ctx, lambda: len(w.caos) == 2)
        assert w.caos[1].started - w.caos[0].started == pytest.approx(0.5)


def test_a_refused_first_address_starts_the_next_at_once(hosts: Path, clock: FakeClock) -> None:
    rec = Recorder("p")
    with dual_port("refuse", "listen") as (port, _), _ctx(rec, hosts, clock) as ctx:
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))  # clock still
        head, refused = wsi.caos
        assert (head.address, refused.address) == (L4, L6)
        assert refused.result is CaoResult.REFUSED and refused.errno == errno.ECONNREFUSED
        assert head.started == refused.started  # no delay: the failure started it
        assert ctx.cao_db.stats(address=L6).failures == 1
        conmon = wsi.conmon_take()
        assert conmon is not None and wsi.conmon is None
        assert conmon.dns_results == [L6, L4] and conmon.dns_disposition == "OK"
        d = conmon.as_dict()
        assert d["peer"] == L4 and d["dns"] == [L6, L4] and d["dns_disp"] == 1

        again = ctx.connect("dual.test", port)
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(again))
        assert [c.address for c in again.caos] == [L4]


def test_every_address_dead_gives_one_error_and_every_attempt_in_start_order(
    hosts: Path, clock: FakeClock
) -> None:
    rec = Recorder("p")
    with dual_port("refuse", "refuse") as (port, _), _ctx(rec, hosts, clock) as ctx:
        before = open_fds()
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        for _ in range(3):
            ctx.service(10)
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["connect refused"]
        assert [c.address for c in wsi.caos] == [L6, L4]
        assert all(c.result is CaoResult.REFUSED for c in wsi.caos)
        assert wsi.conmon is not None and wsi.conmon.peer is None
        assert wsi.conmon.dns_results == [L6, L4]
        assert open_fds() == before


def test_retries_are_silent_and_append_their_attempts(clock: FakeClock, tmp_path: Path) -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], clock=clock, netlink=False) as ctx:
        closed = socket.socket()
        closed.bind((L4, 0))
        port = closed.getsockname()[1]
        wsi = ctx.connect(L4, port, retry=RetryPolicy([1.0, 2.0]))
        service_until(ctx, lambda: len(wsi.caos) == 1 and wsi.caos[0].result is CaoResult.REFUSED)
        for _ in range(3):
            ctx.service(10)
        assert _outcomes(rec, wsi) == [] and wsi.state is WsiState.CONNECTING
        clock.advance(1.0)
        service_until(ctx, lambda: len(wsi.caos) == 2 and wsi.caos[1].result is CaoResult.REFUSED)
        assert wsi.caos[1].started - wsi.caos[0].started == 1.0
        closed.close()
        with socket.create_server((L4, port)):
            clock.advance(2.0)
            service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))
            assert [c.result for c in wsi.caos] == [
                CaoResult.WON,
                CaoResult.REFUSED,
                CaoResult.REFUSED,
            ]
            assert wsi.caos[0].started - wsi.caos[2].started == 2.0
            assert _outcomes(rec, wsi) == [Reason.RAW_CONNECTED]
            assert rec.reasons(wsi).count(Reason.CONNECTING) == 1


def test_retries_run_out_then_one_error(clock: FakeClock, tmp_path: Path) -> None:
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as no_dns:
        no_dns.bind((L4, 0))  # a nameserver that is not there: ICMP port unreachable
        ns = f"{L4}:{no_dns.getsockname()[1]}"
    with (
        Context(
            protocols=[rec.protocol], clock=clock, netlink=False, hosts_file=hosts, nameservers=[ns]
        ) as ctx,
        socket.socket() as closed,
    ):
        closed.bind((L4, 0))
        wsi = ctx.connect(L4, closed.getsockname()[1], retry=RetryPolicy([0.5], conceal=1))
        service_until(ctx, lambda: len(wsi.caos) == 1 and wsi.caos[0].ended is not None)
        clock.advance(0.5)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["connect refused"]
        assert len(wsi.caos) == 2

        named = ctx.connect("nowhere.test", 80, retry=RetryPolicy([0.5, 0.5]))
        service_until(ctx, lambda: named._client is not None and named._client.retries == 1)
        assert _outcomes(rec, named) == [] and Reason.CONNECTING not in rec.reasons(named)
        clock.advance(0.5)
        service_until(ctx, lambda: named._client is not None and named._client.retries == 2)
        clock.advance(0.5)
        service_until(ctx, lambda: named.state is WsiState.CLOSED)
        (reason,) = rec.data(Reason.CLIENT_CONNECTION_ERROR, named)
        assert reason.startswith("DNS SERVER_UNREACHABLE")
        assert named.conmon is not None
        assert named.conmon.dns_disposition == "SERVER_UNREACHABLE"
        assert named.caos == []


def test_a_connecting_callback_that_closes_stops_the_race(hosts: Path, clock: FakeClock) -> None:
    rec = Recorder("p", lambda w, r, d: 1 if r is Reason.CONNECTING else 0)
    with dual_port("hang", "listen") as (port, _), _ctx(rec, hosts, clock) as ctx:
        before = open_fds()
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        clock.advance(1)
        for _ in range(3):
            ctx.service(0)
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        assert [(c.address, c.result) for c in wsi.caos] == [(L6, CaoResult.ERROR)]
        assert len(ctx.cao_db) == 0  # abandoned, not the path's fault
        assert ctx.cao_db._flying == {} and ctx.cao_db._stale == {}  # nothing left marked
        assert open_fds() == before


def test_destroy_mid_race_closes_every_attempt(hosts: Path, clock: FakeClock) -> None:
    rec = Recorder("p")
    with dual_port("hang", "hang") as (port, _):
        before = open_fds()
        ctx = _ctx(rec, hosts, clock)
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: len(wsi.caos) == 1)
        clock.advance(0.25)
        service_until(ctx, lambda: len(wsi.caos) == 2)
        assert [c.result for c in wsi.caos] == [CaoResult.PENDING, CaoResult.PENDING]
        ctx.destroy()
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["context destroyed"]
        assert [c.result for c in wsi.caos] == [CaoResult.ERROR, CaoResult.ERROR]
        assert ctx.cao_db._flying == {}
        assert open_fds() == before


def test_the_connect_timeout_times_out_every_attempt_in_flight(
    hosts: Path, clock: FakeClock
) -> None:
    rec = Recorder("p")
    with (
        dual_port("hang", "hang") as (port, _),
        _ctx(rec, hosts, clock, connect_timeout_secs=2) as ctx,
    ):
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: len(wsi.caos) == 1)
        clock.advance(0.25)
        service_until(ctx, lambda: len(wsi.caos) == 2)
        clock.advance(1.75)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["timed out"]
        assert [c.result for c in wsi.caos] == [CaoResult.TIMED_OUT] * 2
        assert [c.connect_us for c in wsi.caos] == [2_000_000, 1_750_000]
        assert ctx.cao_db.stats(host="dual.test").failures == 2


def test_an_attempt_whose_path_was_forgotten_in_flight_stays_out_of_the_database(
    hosts: Path, clock: FakeClock
) -> None:
    rec = Recorder("p")
    with (
        dual_port("hang", "hang") as (port, _),
        _ctx(rec, hosts, clock, connect_timeout_secs=2) as ctx,
    ):
        wsi = ctx.connect("dual.test", port)
        service_until(ctx, lambda: len(wsi.caos) == 1)
        # What the netlink role does when the route of the SYN in flight is deleted (here
        # by host: without netlink the attempts carry no route id)
        assert ctx.cao_db.forget(host="dual.test") == 0
        clock.advance(0.25)
        service_until(ctx, lambda: len(wsi.caos) == 2)  # started after the forget: recorded
        clock.advance(1.75)
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert [c.result for c in wsi.caos] == [CaoResult.TIMED_OUT] * 2
        assert ctx.cao_db.query(host="dual.test") == [wsi.caos[1]]
        assert ctx.cao_db._flying == {} and ctx.cao_db._stale == {}


def test_an_invalid_host_name_is_one_connect_error_from_the_loop(tmp_path: Path) -> None:
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    long = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters: the longest name
    with Context(
        protocols=[rec.protocol], hosts_file=hosts, nameservers=["127.0.0.1:9"], netlink=False
    ) as ctx:
        bad = ["bad host!", "a..b", "x" * 64 + ".test", "", "-x.test", "a-.test", "a.-b.test"]
        bad += [long + "b", long + "b."]
        wsis = [ctx.connect(name, 80) for name in bad]  # nothing raised
        assert all(w.state is WsiState.PENDING for w in wsis)
        service_until(ctx, lambda: all(w.state is WsiState.CLOSED for w in wsis))
        for name, wsi in zip(bad, wsis, strict=True):
            assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
            [why] = rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi)
            assert why.startswith("invalid host name '"), why
            assert name[:20] in why and len(why) < 100 and wsi.caos == []
            assert wsi.conmon is not None and wsi.conmon.dns_disposition == "NO_RESULT"
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsis[0]) == [
            "invalid host name 'bad host!'"
        ]
        # 253 characters and the root's dot: valid for connect() as for resolve()
        for name in (long, long + "."):
            ctx.resolver.resolve(name, lambda a: None).cancel()
            wsi = ctx.connect(name, 80)
            ctx.service(0)
            assert wsi.state is WsiState.PENDING  # asking DNS
            wsi.close()
        with pytest.raises(ValueError, match="not a valid host name"):
            ctx.resolver.resolve(long + "b.", lambda a: None)


def test_the_connect_timeout_bounds_a_resolve_that_never_answers(
    tmp_path: Path, clock: FakeClock
) -> None:
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with (
        FakeDns(behaviour=lambda srv, q, wire, tcp: []) as srv,  # hears, never answers
        _ctx(rec, hosts, clock, nameservers=[srv.address], connect_timeout_secs=2) as ctx,
    ):
        before = open_fds()
        wsi = ctx.connect("silent.test", 80)
        for _ in range(3):
            ctx.service(0)
            srv.pump()
        assert srv.queries and wsi.state is WsiState.PENDING
        clock.advance(1.999)
        ctx.service(0)
        assert wsi.state is WsiState.PENDING
        clock.advance(0.001)  # the resolver would wait its 5 s per server: the bound is 2 s
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["timed out"]
        assert wsi.caos == [] and open_fds() == before  # the resolver's socket went too
        cm = wsi.conmon
        assert cm is not None and (cm.dns_disposition, cm.dns_us) == ("SERVER_UNREACHABLE", 2e6)


def test_a_source_address_binds_only_its_family(hosts: Path, clock: FakeClock) -> None:
    rec = Recorder("p")
    with dual_port("listen", "listen") as (port, _), _ctx(rec, hosts, clock) as ctx:
        wsi = ctx.connect("dual.test", port, iface=L4)
        service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons(wsi))
        assert [c.address for c in wsi.caos] == [L4]
        assert wsi.conmon is not None and wsi.conmon.dns_results == [L6, L4]  # all it had


def test_a_bind_failure_ends_that_attempt_only(hosts: Path, clock: FakeClock) -> None:
    rec = Recorder("p")
    with dual_port("listen", "listen") as (port, _), _ctx(rec, hosts, clock) as ctx:
        wsi = ctx.connect(L6, port, iface="198.51.100.1")  # an IPv4 source for IPv6: refused
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        (reason,) = rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi)
        assert reason.startswith(("DNS NO_RESULT", "bind to"))
        wsi = ctx.connect(L4, port, iface="198.51.100.1")  # not an address of this host
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        (reason,) = rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi)
        assert reason.startswith("bind to 198.51.100.1")
        assert [c.result for c in wsi.caos] == [CaoResult.ERROR]
        assert len(ctx.cao_db) == 0  # the path did nothing wrong


def test_connect_and_context_reject_bad_race_arguments() -> None:
    rec = Recorder("p")
    with (
        Context(protocols=[rec.protocol], netlink=False) as ctx,
        pytest.raises(TypeError, match="RetryPolicy"),
    ):
        ctx.connect(L4, 80, retry=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="happy_eyeballs_delay"):
        Context(happy_eyeballs_delay=-1)
    with pytest.raises(TypeError, match="cao_history"):
        Context(cao_history="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cao_history"):
        Context(cao_history=-1)
    with pytest.raises(ValueError, match="cao_history_ttl"):
        Context(cao_history_ttl=0)
    with Context(cao_history=5, cao_history_ttl=9, netlink=False) as ctx:
        assert (ctx.cao_db.history, ctx.cao_db.ttl) == (5, 9.0)


def test_forget_paths_drops_routes_gateways_and_links() -> None:
    db = CaoDb(history=100, ttl=60, clock=FakeClock())

    def add(address: str, ifindex: int, gateway: str | None, route_id: int) -> None:
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        db.add(
            Cao(
                "h",
                80,
                address,
                int(fam),
                0.0,
                ifindex=ifindex,
                gateway=gateway,
                route_id=route_id,
                result=CaoResult.WON,
            )
        )

    add("2001:db8::1", 2, None, 10)
    add("203.0.113.1", 2, "198.51.100.2", 11)
    add("203.0.113.9", 3, "198.51.100.2", 12)  # same gateway, another route
    add("198.51.100.7", 3, None, 13)
    forget_paths(db, [SimpleNamespace(id=10, gateway=None, oif=2)], [])  # type: ignore[list-item]
    assert db.stats(family=socket.AF_INET6).attempts == 0 and len(db) == 3
    gone = SimpleNamespace(id=11, gateway="198.51.100.2", oif=2)
    forget_paths(db, [gone], [])  # type: ignore[list-item]
    assert [c.address for c in db] == ["198.51.100.7"]
    forget_paths(db, [], [3])
    assert len(db) == 0
    # A link-local gateway means something only with its link: fe80::1 on link 2 is not
    # fe80::1 on link 3 (nor is 169.254.0.1), so only the removed route's link forgets it.
    add("2001:db8:a::9", 2, "fe80::1", 20)
    add("2001:db8:b::9", 3, "fe80::1", 21)
    add("203.0.113.5", 2, "169.254.0.1", 22)
    add("203.0.113.6", 3, "169.254.0.1", 23)
    removed = [
        SimpleNamespace(id=30, gateway="fe80::1", oif=2),
        SimpleNamespace(id=31, gateway="169.254.0.1", oif=3),
    ]
    forget_paths(db, removed, [])  # type: ignore[arg-type]
    assert [c.address for c in db] == ["2001:db8:b::9", "203.0.113.5"]


def test_a_name_from_dns_races_both_families_and_conmon_has_the_answers(tmp_path: Path) -> None:
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with (
        dual_port("refuse", "listen") as (port, _),
        FakeDns() as srv,
        Context(
            protocols=[rec.protocol], hosts_file=hosts, nameservers=[srv.address], netlink=False
        ) as ctx,
    ):
        srv.zone["dns.test"] = [("AAAA", L6), ("A", L4)]
        wsi = ctx.connect("dns.test", port)
        for _ in range(400):
            if Reason.RAW_CONNECTED in rec.reasons(wsi):
                break
            ctx.service(5)
            srv.pump()
        assert [(c.address, c.result) for c in wsi.caos] == [
            (L4, CaoResult.WON),
            (L6, CaoResult.REFUSED),
        ]
        cm = wsi.conmon
        assert cm is not None and sorted(cm.dns_results) == sorted([L6, L4])
        assert cm.dns_disposition == "OK" and cm.dns_us > 0
        assert cm.as_dict()["peer"] == L4


def test_destroy_mid_query_reports_context_destroyed_and_closes_every_socket(
    tmp_path: Path,
) -> None:
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with FakeDns(behaviour=lambda srv, q, wire, tcp: []) as srv:  # hears, never answers
        before = open_fds()
        ctx = Context(
            protocols=[rec.protocol], hosts_file=hosts, nameservers=[srv.address], netlink=False
        )
        wsi = ctx.connect("silent.test", 80)
        for _ in range(20):
            ctx.service(5)
            srv.pump()
        assert srv.queries and wsi.state is WsiState.PENDING and wsi.caos == []
        ctx.destroy()
        assert rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi) == ["context destroyed"]
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        assert open_fds() == before


def _garbage(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    return [q.id.to_bytes(2, "big") + b"\x81\x80garbage!"]


def _pointer_loop(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    # one question whose name is a compression pointer to itself
    return [
        q.id.to_bytes(2, "big")
        + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
    ]


def _other_question(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    other = dns.message.make_query("evil.test", q.question[0].rdtype)
    other.id = q.id  # the right id, for a question nobody asked
    return [dns.message.make_response(other).to_wire()]


def _loop_zone(srv: FakeDns) -> None:
    srv.zone["loop.test"] = [("CNAME", "pool.test.")]
    srv.zone["pool.test"] = [("CNAME", "loop.test.")]


@pytest.mark.parametrize(
    ("case", "name", "reason"),
    [
        ("empty resolv.conf", "a.test", "DNS SERVER_UNREACHABLE (no nameserver in "),
        (
            "no nameserver reachable",
            "a.test",
            "DNS SERVER_UNREACHABLE (no answer from 1 server; connection refused)",
        ),
        ("garbage", "a.test", "DNS malformed answer (name runs past the end of the message)"),
        ("pointer loop", "a.test", "DNS malformed answer (compression pointer loop)"),
        ("CNAME loop", "loop.test", "DNS CNAME loop"),
        (
            "another question",
            "a.test",
            "DNS SERVER_UNREACHABLE (no answer from 1 server;"
            " ignored 2 answers with the wrong question)",
        ),
    ],
)
def test_a_dns_fault_is_one_connect_error_that_says_which(
    tmp_path: Path, clock: FakeClock, case: str, name: str, reason: str
) -> None:
    # Issue 10, "Bad input and faults": through ctx.connect(), not only the resolver: one
    # CLIENT_CONNECTION_ERROR naming the fault, nothing raised out of the loop, no socket
    # left open, CONMON saying it was DNS.
    rec = Recorder("p")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    behaviours = {"garbage": _garbage, "pointer loop": _pointer_loop}
    behaviours["another question"] = _other_question
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(FakeDns(behaviour=behaviours.get(case)))
        kw: dict[str, object] = {"nameservers": [srv.address]}
        if case == "CNAME loop":
            _loop_zone(srv)
        elif case == "empty resolv.conf":
            conf = tmp_path / "resolv.conf"
            conf.write_text("# no nameserver\nsearch test\n")
            kw = {"resolv_conf": conf}
        elif case == "no nameserver reachable":
            port = srv.port
            srv.close()  # nobody on that port any more: ICMP port unreachable
            kw = {"nameservers": [f"{L4}:{port}"]}
        before = open_fds()
        ctx = _ctx(rec, hosts, clock, **kw)
        stack.callback(ctx.destroy)
        wsi = ctx.connect(name, 80)
        for _ in range(400):  # the resolver's timeouts (5 s a try) on the fake clock
            if wsi.state is WsiState.CLOSED:
                break
            ctx.service(5)
            if srv.udp.fileno() >= 0:
                srv.pump()
            clock.advance(0.5)
        assert _outcomes(rec, wsi) == [Reason.CLIENT_CONNECTION_ERROR]
        (why,) = rec.data(Reason.CLIENT_CONNECTION_ERROR, wsi)
        assert why.startswith(reason), why
        assert wsi.caos == [] and list(ctx.pt.fds) == [ctx.pt.wake_r]
        cm = wsi.conmon
        assert cm is not None and cm.peer is None and cm.dns_results == []
        assert cm.dns_disposition in ("SERVER_UNREACHABLE", "NO_RESULT")
        ctx.destroy()
        assert open_fds() == before
