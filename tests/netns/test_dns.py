"""The resolver against a real dnsmasq and against misbehaving servers, in the namespace lab.

lwspy runs in namespace "a"; the servers live in "b" (tests/netns/conftest.py):
dnsmasq on 198.51.100.2 and 2001:db8:1::2 port 53, serving a hosts file; the
hand-written servers of tests/dnsfake.py on 198.51.100.3 (and a spoofer's socket on
198.51.100.4) only where a server must misbehave. 198.51.100.5 is held by "b" with
nothing listening (ICMP port unreachable); 2001:db8:ffff::1 has no route from "a".
"""

from __future__ import annotations

import errno
import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdata
import pytest

import lwspy
from lwspy.net.dns import DnsAnswer
from tests.dnsfake import FakeDns, Reply
from tests.netns.conftest import Dnsmasq, Lab, require_dnsmasq

pytestmark = pytest.mark.netns

FAKE = "198.51.100.3"
SPOOFER = "198.51.100.4"
DEAD = "198.51.100.5"
BIG = 120  # addresses of big.test: more than 1232 bytes, so dnsmasq truncates


@pytest.fixture
def dnsmasq(lab: Lab, tmp_path: Path) -> Iterator[Dnsmasq]:
    require_dnsmasq()
    for addr in (FAKE, SPOOFER, DEAD):
        lab.ip("b", "addr", "add", f"{addr}/24", "dev", "vb")
    lines = [
        "198.51.100.7 a.test",
        "2001:db8::7 a.test",
        "198.51.100.9 v4.test",
        *(f"198.51.100.{i} big.test" for i in range(10, 10 + BIG)),
    ]
    server = Dnsmasq(
        lab, tmp_path, "\n".join(lines) + "\n", "a.test", listen=[lab.B_ADDR, lab.B_ADDR6]
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(lab: Lab, dnsmasq: Dnsmasq) -> Iterator[FakeDns]:
    with lab.inside("b"):
        srv = FakeDns(FAKE, 53, other_host=SPOOFER)
    srv.zone["a.test"] = [("A", "198.51.100.7"), ("AAAA", "2001:db8::7")]
    try:
        yield srv
    finally:
        srv.close()


def context(tmp_path: Path, conf: str) -> lwspy.Context:
    path = tmp_path / "resolv.conf"
    path.write_text(conf)
    return lwspy.Context(hosts_file="/dev/null", resolv_conf=path, netlink=False)


def resolve(
    ctx: lwspy.Context, name: str, servers: tuple[FakeDns, ...] = (), passes: int = 400
) -> dict[int, DnsAnswer]:
    """Resolve ``name`` in the loop (pumping the fake servers); the answer per family."""
    got: list[DnsAnswer] = []
    ctx.resolver.resolve(name, got.append)
    for _ in range(passes):
        if len(got) == 2:
            break
        ctx.service(5)
        for s in servers:
            s.pump()
    assert len(got) == 2, f"no answer for {name}: {got}"
    assert list(ctx.pt.fds) == [ctx.pt.wake_r]  # every resolver socket is closed again
    return {a.family: a for a in got}


V6, V4 = socket.AF_INET6, socket.AF_INET


def test_dnsmasq_answers_names_both_families_and_the_cache(
    lab: Lab, dnsmasq: Dnsmasq, tmp_path: Path
) -> None:
    with context(tmp_path, f"nameserver {lab.B_ADDR}\nsearch test\n") as ctx:
        r = resolve(ctx, "a.test")
        assert (r[V6].addresses, r[V4].addresses) == (["2001:db8::7"], ["198.51.100.7"])
        assert r[V6].disposition == r[V4].disposition == "OK"
        r = resolve(ctx, "v4")  # through the search list
        assert (r[V6].disposition, r[V4].addresses) == ("NO_RESULT", ["198.51.100.9"])
        r = resolve(ctx, "nx.test")
        assert (r[V6].disposition, r[V4].detail) == ("NXDOMAIN", "DNS NXDOMAIN")
        sent = ctx.resolver.sent
        r = resolve(ctx, "A.TEST")  # cached (dnsmasq gives TTL 300): no query
        assert r[V4].addresses == ["198.51.100.7"] and ctx.resolver.sent == sent
        r = resolve(ctx, "elsewhere.example")  # not dnsmasq's: REFUSED
        assert r[V4].disposition == "NO_RESULT" and r[V4].detail == "DNS REFUSED"


def test_dnsmasq_over_ipv6(lab: Lab, dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    with context(tmp_path, f"nameserver {lab.B_ADDR6}\n") as ctx:
        r = resolve(ctx, "a.test")
        assert (r[V6].addresses, r[V4].addresses) == (["2001:db8::7"], ["198.51.100.7"])


def test_truncated_answer_is_asked_again_over_tcp(
    lab: Lab, dnsmasq: Dnsmasq, tmp_path: Path
) -> None:
    with context(tmp_path, f"nameserver {lab.B_ADDR}\n") as ctx:
        r = resolve(ctx, "big.test")
        want = [f"198.51.100.{i}" for i in range(10, 10 + BIG)]
        assert sorted(r[V4].addresses) == sorted(want) and len(r[V4].addresses) == BIG
        assert ctx.resolver.sent == 3  # AAAA over UDP; A over UDP (TC), then TCP


def test_dead_first_nameserver_moves_on_at_once(lab: Lab, dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    # timeout:30: an answer within the pass bound (about 2 s) means nobody waited for it.
    conf = f"nameserver {DEAD}\nnameserver {lab.B_ADDR}\noptions timeout:30\n"
    with context(tmp_path, conf) as ctx:
        r = resolve(ctx, "a.test")
        assert r[V4].addresses == ["198.51.100.7"]
    conf = f"nameserver 2001:db8:ffff::1\nnameserver {lab.B_ADDR}\noptions timeout:30\n"
    with context(tmp_path, conf) as ctx:  # no route to the first: connect() fails
        r = resolve(ctx, "a.test")
        assert r[V6].addresses == ["2001:db8::7"]
    with context(tmp_path, "nameserver 2001:db8:ffff::1\n") as ctx:
        r = resolve(ctx, "a.test")
        assert (
            r[V6].detail
            == "DNS SERVER_UNREACHABLE (no answer from 1 server; network is unreachable)"
        )
    with context(tmp_path, f"nameserver {DEAD}\noptions attempts:1\n") as ctx:
        r = resolve(ctx, "a.test")
        assert (
            r[V4].detail == "DNS SERVER_UNREACHABLE (no answer from 1 server; connection refused)"
        )


def silent(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    return []


def test_silent_first_nameserver_times_out_to_the_next(
    lab: Lab, fake: FakeDns, tmp_path: Path
) -> None:
    fake.behaviour = silent
    conf = f"nameserver {FAKE}\nnameserver {lab.B_ADDR}\noptions timeout:0.2 attempts:1\n"
    with context(tmp_path, conf) as ctx:
        r = resolve(ctx, "a.test", (fake,))
        assert r[V4].addresses == ["198.51.100.7"]
        assert len(fake.queries) == 2  # both families asked it first


def spoofs_then_real(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    real = srv.answer(q)
    fake = srv.answer(q)
    for rrset in fake.answer:
        rrset.clear()
        addr = "203.0.113.66" if rrset.rdtype == 1 else "2001:db8::66"
        rrset.add(dns.rdata.from_text("IN", rrset.rdtype, addr))
    wrong_id = bytearray(fake.to_wire())
    wrong_id[0] ^= 0x5A
    other = dns.message.make_query("evil.test", q.question[0].rdtype)
    other.id = q.id
    wrong_question = dns.message.make_response(other)
    return [
        bytes(wrong_id),  # a spoof that guessed the port, not the id
        ("other", fake.to_wire()),  # the right id from another address: the kernel drops it
        wrong_question.to_wire(),
        real.to_wire(),
    ]


def test_spoofed_answers_before_the_real_one_are_ignored(
    lab: Lab, fake: FakeDns, tmp_path: Path
) -> None:
    fake.behaviour = spoofs_then_real
    with context(tmp_path, f"nameserver {FAKE}\n") as ctx:
        r = resolve(ctx, "a.test", (fake,))
        assert (r[V6].addresses, r[V4].addresses) == (["2001:db8::7"], ["198.51.100.7"])


def test_only_spoofs_is_no_answer_and_says_what_was_ignored(
    lab: Lab, fake: FakeDns, tmp_path: Path
) -> None:
    fake.behaviour = lambda s, q, w, t: spoofs_then_real(s, q, w, t)[:-1]
    with context(tmp_path, f"nameserver {FAKE}\noptions timeout:0.2 attempts:1\n") as ctx:
        r = resolve(ctx, "a.test", (fake,))
        assert r[V4].disposition == r[V6].disposition == "SERVER_UNREACHABLE"
        # both families' queries share the socket: each ignores both spoofs with a wrong
        # id, and the wrong question that carries its own id
        assert (
            r[V4].detail
            == r[V6].detail
            == (
                "DNS SERVER_UNREACHABLE (no answer from 1 server;"
                " ignored 2 answers with a wrong id; ignored 1 answer with the wrong question)"
            )
        )


def test_nxdomain_with_soa_is_cached(lab: Lab, fake: FakeDns, tmp_path: Path) -> None:
    with context(tmp_path, f"nameserver {FAKE}\n") as ctx:
        r = resolve(ctx, "missing.test", (fake,))
        assert r[V6].disposition == r[V4].disposition == "NXDOMAIN"
        asked = len(fake.queries)
        r = resolve(ctx, "missing.test", (fake,))
        assert r[V4].detail == "DNS NXDOMAIN" and len(fake.queries) == asked


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (lambda q: q.id.to_bytes(2, "big") + b"\x81\x80garbage!", "DNS malformed answer ("),
        (
            lambda q: (
                q.id.to_bytes(2, "big")
                + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
            ),
            "DNS malformed answer (compression pointer loop)",
        ),
    ],
)
def test_garbage_and_pointer_loops(
    lab: Lab, fake: FakeDns, tmp_path: Path, reply: Callable[[Any], bytes], detail: str
) -> None:
    fake.behaviour = lambda s, q, w, t: [reply(q)]
    with context(tmp_path, f"nameserver {FAKE}\n") as ctx:
        r = resolve(ctx, "a.test", (fake,))
        assert r[V4].disposition == "NO_RESULT" and r[V4].detail.startswith(detail)


def test_cname_loop(lab: Lab, fake: FakeDns, tmp_path: Path) -> None:
    fake.zone["loop.test"] = [("CNAME", "pool.test.")]
    fake.zone["pool.test"] = [("CNAME", "loop.test.")]
    with context(tmp_path, f"nameserver {FAKE}\n") as ctx:
        r = resolve(ctx, "loop.test", (fake,))
        assert r[V6].detail == r[V4].detail == "DNS CNAME loop"


def test_empty_resolv_conf(lab: Lab, tmp_path: Path) -> None:
    with context(tmp_path, "# no nameserver\n") as ctx:
        r = resolve(ctx, "a.test")
        assert r[V4].disposition == "SERVER_UNREACHABLE"
        assert r[V4].detail.startswith("DNS SERVER_UNREACHABLE (no nameserver in ")


def test_destroy_mid_query(lab: Lab, fake: FakeDns, tmp_path: Path) -> None:
    fake.behaviour = silent
    ctx = context(tmp_path, f"nameserver {FAKE}\n")
    got: list[DnsAnswer] = []
    ctx.resolver.resolve("a.test", got.append)
    ctx.service(0)
    socks = [w.sock for w in ctx.pt.fds.values() if w.sock is not None]
    assert len(socks) == 1  # the AAAA and A query of the name share it
    ctx.destroy()
    assert all(s.fileno() == -1 for s in socks) and got == []


def test_random_source_ports_and_ids(lab: Lab, fake: FakeDns, tmp_path: Path) -> None:
    with context(tmp_path, f"nameserver {FAKE}\n") as ctx:
        for i in range(16):
            fake.zone[f"n{i}.test"] = [("A", f"198.51.100.{100 + i}")]
            resolve(ctx, f"n{i}.test", (fake,))
    by_name: dict[str, set[int]] = {}
    for _, q, src in fake.queries:
        by_name.setdefault(str(q.question[0].name), set()).add(src[1])
    assert len(by_name) == 16 and all(len(p) == 1 for p in by_name.values())
    ports = [p for (p,) in by_name.values()]  # a fresh socket per name, in resolve order
    # the kernel draws each port at random: two of 16 may meet (about 0.4 % a run)
    assert len(set(ports)) >= 15
    gaps = {b - a for a, b in itertools.pairwise(ports)}
    assert len(gaps) > 8  # random ports, not handed out in sequence
    ids = [q.id for _, q, _ in fake.queries]
    assert len(set(ids)) > 28  # 32 random 16-bit ids: a repeat or two at most
    for i in range(0, 32, 2):  # the two queries that share a socket never share an id
        assert ids[i] != ids[i + 1]


def test_tcp_socket_to_an_unroutable_server_fails_at_once(lab: Lab, tmp_path: Path) -> None:
    from lwspy.roles.udp import open_tcp, open_udp

    class Sink:
        def datagram(self, wsi: object, data: bytes) -> None:
            raise AssertionError("no datagram expected")

        def failed(self, wsi: object, err: int) -> None:
            raise AssertionError("no failure callback expected")

    with lwspy.Context(hosts_file="/dev/null", netlink=False) as ctx:
        with pytest.raises(OSError) as e:
            open_tcp(ctx, ("2001:db8:ffff::1", 53), b"query", Sink())
        assert e.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as e:
            open_udp(ctx, ("2001:db8:ffff::1", 53), Sink())
        assert e.value.errno == errno.ENETUNREACH
        assert list(ctx.pt.fds) == [ctx.pt.wake_r]


def test_a_burst_moves_off_a_dead_first_nameserver_at_once(
    lab: Lab, dnsmasq: Dnsmasq, tmp_path: Path
) -> None:
    # 100 lookups at once share 13 sockets to the dead server. The kernel of "b" rate-
    # limits its ICMP errors (a burst of 6, then one a second), so only a few of those
    # sockets are told "refused"; one refusal is the server's word for every socket to
    # it. timeout:30: answers within the pass bound mean nobody waited for a timeout.
    conf = f"nameserver {DEAD}\nnameserver {lab.B_ADDR}\noptions timeout:30 attempts:1\n"
    with context(tmp_path, conf) as ctx:
        got: list[DnsAnswer] = []
        for i in range(99):
            ctx.resolver.resolve(f"n{i}.test", got.append)
        ctx.resolver.resolve("a.test", got.append)
        for _ in range(400):
            if len(got) == 200:
                break
            ctx.service(5)
        assert len(got) == 200, f"{200 - len(got)} answers still waiting"
        assert sorted({a.disposition for a in got}) == ["NXDOMAIN", "OK"]
        assert list(ctx.pt.fds) == [ctx.pt.wake_r]
