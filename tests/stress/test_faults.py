"""Faults: fd exhaustion (accept, connect, DNS), peers that reset mid-write, a peer that
never reads, the DNS server disappearing mid-query."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lwspy
from lwspy import Protocol, Reason, Wsi, WsiState
from tests.conftest import Recorder, service_until
from tests.dnsfake import FakeDns
from tests.stress.conftest import ROOT, EchoServer, record, roomy, size


def lowest_free_fd() -> int:
    fd = os.dup(0)  # dup(2) takes the lowest free number
    os.close(fd)
    return fd


@contextlib.contextmanager
def fd_limit(free: int) -> Iterator[None]:
    """RLIMIT_NOFILE's soft limit lowered to leave at most ``free`` fds (a new fd takes
    the lowest free number, and the limit bounds the numbers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free_fd() + free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_fd_exhaustion_during_accept_pauses_then_every_connection_is_served(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conns = size(2_000, 300)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.stress.peer", str(echo_server.vh.port), str(conns), "512"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    paused = 0
    try:
        with fd_limit(20):
            for _ in range(4000):  # until the listener has paused a few times
                echo_server.ctx.service(5)
                paused += not echo_server.vh.accepting
                if paused >= 20 and echo_server.open <= 20:
                    break
        while child.poll() is None:
            echo_server.ctx.service(20)
        report = json.loads(child.communicate(timeout=60)[0])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    service_until(echo_server.ctx, lambda: echo_server.open == 0)
    assert paused >= 20 and "accept failed" in caplog.text
    assert report["complete"] == report["crc_equal"] == conns and report["mismatches"] == 0
    assert echo_server.adopted == conns and set(echo_server.closed.values()) == {1}
    record("accept_emfile", conns=conns, paused_passes=paused)


def _outcomes(rec: Recorder, wsis: list[Wsi]) -> list[object]:
    out: list[object] = []
    for w in wsis:
        got = [(r, d) for ww, r, d in rec.events if ww is w and r in _ENDS]
        out.append(got[0][1] if got and got[0][0] is Reason.CLIENT_CONNECTION_ERROR else "ok")
    return out


_ENDS = (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR)


def test_fd_exhaustion_during_connect_and_dns_is_an_error_for_that_connect_only(
    tmp_path: Path,
) -> None:
    rec = Recorder("cli")
    with FakeDns() as dns_srv:
        dns_srv.zone["n.test"] = [("A", "127.0.0.1")]
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1 h.test\n")
        with lwspy.Context(
            protocols=[rec.protocol, Protocol("echo", lambda *a: 0)],
            netlink=False,
            hosts_file=hosts,
            nameservers=[dns_srv.address],
        ) as ctx:
            port = ctx.create_vhost("default", port=0, iface="127.0.0.1").listen_port
            names = ["127.0.0.1", "h.test", "n.test"]
            with fd_limit(0):
                starved = [ctx.connect(name, port, protocol="cli") for name in names]
                for _ in range(50):  # (no pump: the server cannot accept(2) either)
                    ctx.service(5)
                    if all(any(r in _ENDS for r in rec.reasons(w)) for w in starved):
                        break
                outcome = _outcomes(rec, starved)
            assert all(isinstance(o, str) and "open files" in o for o in outcome), outcome
            assert all(w.state is WsiState.CLOSED for w in starved)
            # With fds again, the same connects succeed: nothing was left broken.
            fresh = [ctx.connect(name, port, protocol="cli") for name in names]
            for _ in range(200):
                ctx.service(5)
                dns_srv.pump()
                if all(Reason.RAW_CONNECTED in rec.reasons(w) for w in fresh):
                    break
            assert _outcomes(rec, fresh) == ["ok"] * 3
    record("connect_emfile", outcomes=outcome)


def test_peers_that_reset_mid_write_close_each_wsi_once(echo_server: EchoServer) -> None:
    conns = size(1_000, 200)
    # Each peer sends 1 MiB and resets after 256 KiB, while the server is echoing it.
    report = echo_server.serve_peer(str(conns), str(1 << 20), "--reset-after", str(256 << 10))
    assert report["resets"] == conns
    assert echo_server.adopted == conns and echo_server.open == 0
    assert set(echo_server.closed.values()) == {1} and len(echo_server.closed) == conns
    reasons = {w.close_reason for w in echo_server.closed}
    assert reasons <= {"peer reset", "peer closed"}, reasons
    ctx = echo_server.ctx
    assert list(ctx.pt.fds) == [ctx.pt.wake_r, echo_server.vh.listener.fd]  # type: ignore[union-attr]
    record("peer_reset_mid_write", conns=conns, reasons=sorted(reasons))


def test_a_peer_that_never_reads_buffers_only_what_the_application_allows() -> None:
    total = size(256 << 20, 32 << 20)
    limit = 1 << 20  # the application's bound on tx_pending
    chunk = 64 << 10
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()
    state = {"written": 0, "peak": 0}

    def writer(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if wsi is None or reason not in (Reason.RAW_CONNECTED, Reason.RAW_WRITEABLE):
            return 0
        while state["written"] < total and wsi.tx_pending < limit:
            at = state["written"] % len(block)
            piece = block[at : at + chunk]
            assert wsi.write(piece) == len(piece)
            sent.update(piece)
            state["written"] += len(piece)
            state["peak"] = max(state["peak"], wsi.tx_pending)
        if state["written"] < total:
            wsi.callback_on_writable()
        return 0

    lst = socket.create_server(("127.0.0.1", 0))
    with lwspy.Context(protocols=[Protocol("w", writer)], netlink=False) as ctx:
        w = ctx.connect("127.0.0.1", lst.getsockname()[1], protocol="w")
        service_until(ctx, lambda: w.state is WsiState.ESTABLISHED)
        peer, _ = lst.accept()
        peer.setblocking(False)
        for _ in range(400):  # the peer reads nothing: the socket buffers fill, then ours
            ctx.service(1)
        stalled_at = state["written"]
        assert stalled_at < total and w.tx_pending >= limit - chunk
        got = hashlib.sha256()
        n = 0
        while n < total:  # now it drains
            ctx.service(0)
            try:
                data = peer.recv(1 << 20)
            except BlockingIOError:
                continue
            got.update(data)
            n += len(data)
        assert n == total and got.digest() == sent.digest() and w.tx_pending == 0
        assert state["peak"] < limit + chunk
        peer.close()
    lst.close()
    record("never_reading_peer", total=total, stalled_at=stalled_at, peak_tx_pending=state["peak"])


def test_the_dns_server_disappearing_mid_query_fails_each_connect_once(tmp_path: Path) -> None:
    n = size(500, 100)
    rec = Recorder("cli")
    gone = FakeDns()
    kept = roomy(FakeDns())
    for i in range(n):
        kept.zone[f"n{i}.test"] = [("A", "127.0.0.1")]
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver [127.0.0.1]:{gone.port}\noptions timeout:1 attempts:2\n")
    with (
        kept,
        lwspy.Context(
            protocols=[rec.protocol, Protocol("echo", lambda *a: 0)],
            netlink=False,
            hosts_file=tmp_path / "none",
            resolv_conf=conf,
        ) as ctx,
    ):
        port = ctx.create_vhost("default", port=0, iface="127.0.0.1").listen_port
        wsis = [ctx.connect(f"n{i}.test", port, protocol="cli") for i in range(n)]
        ctx.service(5)
        ctx.service(5)
        gone.close()  # the queries are out; the server is not there to answer them
        service_until(
            ctx, lambda: all(Reason.CLIENT_CONNECTION_ERROR in rec.reasons(w) for w in wsis)
        )
        texts = {str(d) for d in rec.data(Reason.CLIENT_CONNECTION_ERROR)}
        assert all(t.startswith("DNS SERVER_UNREACHABLE") for t in texts), texts
        assert [rec.reasons(w).count(Reason.CLIENT_CONNECTION_ERROR) for w in wsis] == [1] * n
        assert not any(Reason.RAW_CONNECTED in rec.reasons(w) for w in wsis)
        assert len(ctx.pt.fds) == 2 and ctx.pt.wake_r in ctx.pt.fds  # and the listener
        # Another server, configured now, answers the same names: nothing was left stuck.
        conf.write_text(f"nameserver [127.0.0.1]:{kept.port}\n")
        again = [ctx.connect(f"n{i}.test", port, protocol="cli") for i in range(n)]
        for _ in range(400):
            if all(Reason.RAW_CONNECTED in rec.reasons(w) for w in again):
                break
            ctx.service(5)
            kept.pump()
        assert all(Reason.RAW_CONNECTED in rec.reasons(w) for w in again)
    record("dns_server_gone", names=n, texts=sorted(texts)[:3])
