"""The netlink role's policy side without a lab: the peer index, the kernel probe, the
rule dump's edge cases and the policy socket's failures (the host's network is only
read, never changed; tests/netns/test_policy.py has the real setups)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lwspy.roles.netlink as netlink_mod
from lwspy import Context, Reason, Wsi, WsiState
from lwspy.net.nlmsg import (
    AF_INET,
    AF_INET6,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    AddrMsg,
    DoneMsg,
    ErrorMsg,
    LinkMsg,
    Route,
    RouteMsg,
)
from lwspy.net.rule import RTM_NEWRULE, RuleMsg
from lwspy.roles.netlink import RouteWatcher, _Conn, _PeerIndex, probe
from tests.conftest import Recorder, service_until
from tests.test_rule import _defaults, _rule


def _conn(family: int, num: int) -> _Conn:
    peer: Any = ipaddress.ip_address(num if family == AF_INET else num + (1 << 100))
    return _Conn(peer, family, int(peer), "x", 0, False)


class _W:
    """Stands in for a wsi in the peer index (only hashed)."""


@given(
    st.lists(st.tuples(st.sampled_from((AF_INET, AF_INET6)), st.integers(0, 63)), max_size=40),
    st.lists(st.integers(0, 39), max_size=20),
    st.integers(0, 63),
    st.integers(26, 32),
)
def test_peer_index_finds_exactly_the_covered_connections(
    adds: list[tuple[int, int]], drops: list[int], dst: int, plen: int
) -> None:
    index = _PeerIndex()
    live: dict[_W, _Conn] = {}
    made = []
    for family, num in adds:
        w, c = _W(), _conn(family, num)
        index.add(c, w)  # type: ignore[arg-type]
        live[w] = c
        made.append(w)
    for i in drops:
        if i < len(made) and made[i] in live:
            index.discard(live.pop(made[i]), made[i])  # type: ignore[arg-type]
    for family in (AF_INET, AF_INET6):
        plen_f = plen if family == AF_INET else plen + 96
        base = dst if family == AF_INET else dst + (1 << 100)
        net = ipaddress.ip_network((base, plen_f), strict=False)
        want = {w for w, c in live.items() if c.family == family and c.peer in net}
        got = index.covered(family, int(net.network_address), plen_f)
        assert set(got) == want and len(got) == len(want)  # type: ignore[comparison-overlap]
    assert index.covered(7, 0, 0) == []
    index.discard(_conn(AF_INET, 99), _W())  # type: ignore[arg-type]  # never indexed


class _FakeSock:
    def __init__(self, family: int, local: tuple[Any, ...], peer: tuple[Any, ...], bound: int):
        self.family, self.local, self.peer, self.bound = family, local, peer, bound

    def getsockname(self) -> tuple[Any, ...]:
        return self.local

    def getpeername(self) -> tuple[Any, ...]:
        return self.peer

    def getsockopt(self, level: int, opt: int) -> int:
        return self.bound


class _FakeWsi:
    def __init__(self, sock: object) -> None:
        self.sock = sock


def _probe(family: int, local: tuple[Any, ...], peer: tuple[Any, ...], bound: int = 0) -> Any:
    return probe(_FakeWsi(_FakeSock(family, local, peer, bound)))  # type: ignore[arg-type]


def test_probe_answers_as_a_datagram_connect_does() -> None:
    assert probe(_FakeWsi(None)) is None  # type: ignore[arg-type]
    closed = socket.socket()
    closed.close()
    assert probe(_FakeWsi(closed)) is None  # type: ignore[arg-type]
    assert _probe(socket.AF_INET, ("127.0.0.1", 5), ("127.0.0.1", 9)) is None
    assert _probe(socket.AF_INET6, ("::1", 5, 0, 0), ("::1", 9, 0, 0)) is None
    # an address the host does not have: its source is gone
    gone = _probe(socket.AF_INET, ("203.0.113.254", 5), ("127.0.0.1", 9))
    assert gone == "source address gone"
    # bound to a device that is not there (deleted)
    assert _probe(socket.AF_INET, ("127.0.0.1", 5), ("127.0.0.1", 9), bound=999_999) == "route lost"
    # the kernel refuses the destination (broadcast without SO_BROADCAST: EACCES)
    assert _probe(socket.AF_INET, ("0.0.0.0", 0), ("255.255.255.255", 9)) == "route lost"
    # anything that is not the kernel's no keeps the connection
    assert _probe(socket.AF_INET, ("127.0.0.1", 5), ("::1", 9)) is None
    assert _probe(socket.AF_INET, ("not an address", 5), ("127.0.0.1", 9)) is None


def test_probe_keeps_the_connection_when_no_socket_can_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fds(*args: Any) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(netlink_mod.socket, "socket", no_fds)
    assert _probe(socket.AF_INET, ("127.0.0.1", 5), ("127.0.0.1", 9)) is None


@pytest.fixture
def watcher() -> Iterator[RouteWatcher]:
    with Context(netlink=True) as ctx:
        w = ctx._netlink
        assert isinstance(w, RouteWatcher)
        service_until(ctx, lambda: w.coldplug_done and w.rules.known)
        yield w


def test_rule_dump_edge_cases(watcher: RouteWatcher) -> None:
    sent: list[bytes] = []
    real = watcher.policy_sock
    assert real is not None

    class Sock:
        def send(self, data: bytes) -> int:
            sent.append(data)
            return len(data)

        def getsockname(self) -> tuple[int, int]:
            return real.getsockname()  # type: ignore[no-any-return]

        def setsockopt(self, *args: int) -> None:
            real.setsockopt(*args)

    watcher.policy_sock = Sock()  # type: ignore[assignment]
    watcher._send_rule_dump()
    seq, pid = watcher._rule_seq, watcher._policy_pid
    assert len(sent) == 1 and watcher._rule_dump == []
    watcher._rule_record(DoneMsg(seq, pid, 0x10, 0))  # interrupted: asked again
    assert len(sent) == 2 and watcher._rule_seq != seq
    seq = watcher._rule_seq
    watcher._rule_record(ErrorMsg(seq, pid, errno.EBUSY))  # refused: retried soon
    assert watcher._rule_retry.scheduled
    watcher._rule_retry.cancel()
    extra = _rule(100, 100, attrs=[("FRA_FWMARK", 1)])
    for rule in _defaults():
        watcher._rule_record(RuleMsg(RTM_NEWRULE, seq, pid, rule))
    watcher._rule_record(RuleMsg(RTM_NEWRULE, 0, 4242, extra))  # an event during the dump
    watcher._rule_record(DoneMsg(seq + 1000, pid, 0, 0))  # not ours
    assert watcher._rule_dump is not None
    watcher._rule_record(DoneMsg(seq, pid, 0, 0))
    assert watcher._rule_dump is None and watcher.rules.default(AF_INET6)
    assert not watcher.rules.default(AF_INET) and watcher._watching  # the event counted
    watcher._rule_record(RuleMsg(33, 0, 4242, extra))
    assert watcher.rules.default(AF_INET) and not watcher._watching
    watcher.policy_sock = real


def test_a_rule_dump_request_that_cannot_be_sent_is_retried(watcher: RouteWatcher) -> None:
    real = watcher.policy_sock

    class Full:
        def send(self, data: bytes) -> int:
            raise BlockingIOError(errno.EAGAIN, "full")

    watcher.policy_sock = Full()  # type: ignore[assignment]
    watcher._send_rule_dump()
    assert watcher._rule_retry.scheduled
    watcher.policy_sock = real


def test_policy_socket_read_errors(watcher: RouteWatcher, caplog: pytest.LogCaptureFixture) -> None:
    real = watcher.policy_sock
    errors = [OSError(errno.ENOBUFS, "No buffer space"), OSError(errno.EIO, "I/O error")]

    class Flaky:
        def recv(self, n: int) -> bytes:
            raise errors.pop(0)

        def send(self, data: bytes) -> int:
            return len(data)

    watcher.policy_sock = Flaky()  # type: ignore[assignment]
    before = watcher.stats["enobufs"]
    watcher.policy_readable()
    assert watcher.stats["enobufs"] == before + 1 and watcher._rule_dump == []
    assert any("policy recv failed" in r.getMessage() for r in caplog.records)
    watcher.policy_sock = real


def _route(table: int, dst: int, dst_len: int) -> Route:
    return Route(
        AF_INET,
        dst,
        dst_len,
        table,
        0,
        0,
        None,
        0,
        1,
        None,
        1,
        None,
        4,
        0,
        (),
        0,
        (),
        0,
        0,
        0,
        0.0,
        0,
    )


def test_watched_changes_queue_the_kernel_decided_connections(watcher: RouteWatcher) -> None:
    ctx = watcher.ctx
    fake: Any = Wsi(ctx, netlink_mod.NETLINK, None, netlink_mod.INTERNAL)
    conn = _conn(AF_INET, int(ipaddress.ip_address("198.51.100.7")))
    conn.probe = True
    watcher._keys[fake] = conn
    watcher._peers.add(conn, fake)
    try:
        peer = conn.num
        watcher._watched(RouteMsg(RTM_NEWROUTE, 0, 0, 0, (_route(254, peer, 32),)))
        assert not watcher._probes  # main comes through the batch
        watcher._watched(RouteMsg(RTM_NEWROUTE, 0, 0, 0, (_route(100, peer & ~0xFF, 24),)))
        assert fake in watcher._probes
        watcher._probes.clear()
        link = LinkMsg(RTM_NEWLINK, 0, 0, 0, 0, 5, 0, 0, 1, "x", True)
        watcher._watched(link)
        assert not watcher._probes  # a link coming up strands nobody
        link.up = False
        watcher._watched(link)
        assert fake in watcher._probes
        watcher._probes.clear()
        link.type, link.up = RTM_DELLINK, True
        watcher._watched(link)
        assert fake in watcher._probes
        watcher._probes.clear()
        addr = AddrMsg(
            RTM_DELADDR, 0, 0, 0, AF_INET6, 5, 64, 0, 0, "2001:db8::1", "2001:db8::1", None
        )
        watcher._watched(addr)
        assert not watcher._probes  # another family
        addr.family = AF_INET
        watcher._watched(addr)
        assert fake in watcher._probes
        watcher._probes.clear()
        watcher._recheck(fake)  # the kernel decides for it: asked, not looked up
        assert fake in watcher._probes
    finally:
        watcher._probes.clear()
        watcher._keys.pop(fake)
        watcher._peers.discard(conn, fake)


def test_without_a_policy_socket_the_kernel_decides_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = socket.socket
    made = []

    def second_fails(*args: Any, **kw: Any) -> socket.socket:
        if len(args) > 2 and args[2] == socket.NETLINK_ROUTE:
            made.append(args)
            if len(made) == 2:
                raise PermissionError(errno.EPERM, "Operation not permitted")
        return real(*args, **kw)

    monkeypatch.setattr(netlink_mod.socket, "socket", second_fails)
    srv, cli = Recorder("srv"), Recorder("cli")
    ctx = Context(protocols=[srv.protocol, cli.protocol], netlink=True)
    monkeypatch.undo()
    with ctx:
        w = ctx._netlink
        assert isinstance(w, RouteWatcher) and w.policy_sock is None and w.policy_wsi is None
        assert any("no policy socket" in r.getMessage() for r in caplog.records)
        w._send_rule_dump()  # nothing to send on
        w._update_watch()
        assert not w.rules.known and not w._watching
        service_until(ctx, lambda: w.coldplug_done)
        assert not w._is_fast(AF_INET)
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        assert vh.port is not None
        c = ctx.connect("127.0.0.1", vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(c))


def test_probes_are_bounded_per_pass(watcher: RouteWatcher) -> None:
    class Idle:
        state = WsiState.ESTABLISHED
        sock = None

    closing = Idle()
    closing.state = WsiState.CLOSING
    queued: list[Any] = [closing, *(Idle() for _ in range(netlink_mod.PROBES_PER_PASS + 5))]
    for w in queued:
        watcher._probes[w] = None
    before = watcher.stats["probed"]
    watcher._run_probes()
    assert watcher.stats["probed"] - before == netlink_mod.PROBES_PER_PASS - 1  # not closing
    assert len(watcher._probes) == 6 and watcher._probe_sul.scheduled
    service_until(watcher.ctx, lambda: not watcher._probes)
    assert watcher.stats["probed"] - before == netlink_mod.PROBES_PER_PASS + 5


def test_probe_keeps_one_socket_per_local_address_for_unbound_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept: dict[tuple[object, ...], socket.socket] = {}
    for port in (9, 10):
        assert probe(_FakeWsi(_FakeSock(2, ("127.0.0.1", 5), ("127.0.0.1", port), 0)), kept) is None  # type: ignore[arg-type]
    assert list(kept) == [(socket.AF_INET, "127.0.0.1")]
    udp = kept[(socket.AF_INET, "127.0.0.1")]
    # bound connections get a fresh socket, never a kept one
    bound = _FakeWsi(_FakeSock(2, ("127.0.0.1", 5), ("127.0.0.1", 9), 999_999))
    assert probe(bound, kept) == "route lost"  # type: ignore[arg-type]
    gone = _FakeWsi(_FakeSock(2, ("203.0.113.254", 5), ("127.0.0.1", 9), 0))
    assert probe(gone, kept) == "source address gone"  # type: ignore[arg-type]
    assert list(kept) == [(socket.AF_INET, "127.0.0.1")]
    monkeypatch.setattr(netlink_mod, "PROBE_SOCKETS", 1)
    assert probe(_FakeWsi(_FakeSock(10, ("::1", 5, 0, 0), ("::1", 9, 0, 0), 0)), kept) is None  # type: ignore[arg-type]
    assert list(kept) == [(socket.AF_INET6, "::1", 0)] and udp.fileno() == -1
    netlink_mod.forget_probe_sockets(kept)
    assert kept == {}
