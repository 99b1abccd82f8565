"""The in-loop resolver driver on loopback, against the fake server of tests/dnsfake.py."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

import lwspy
from lwspy.core.resolver import Resolver
from lwspy.net.dns import DnsAnswer
from tests.dnsfake import FakeDns, Reply


@pytest.fixture
def srv() -> Iterator[FakeDns]:
    with FakeDns() as s:
        s.zone["a.test"] = [("A", "198.51.100.7"), ("AAAA", "2001:db8::7"), ("A", "198.51.100.8")]
        s.zone["v4.test"] = [("A", "198.51.100.9")]
        s.zone["c.test"] = [("CNAME", "a.test.")]
        yield s


def make_ctx(tmp_path: Path, conf: str | None = None, **kw: Any) -> lwspy.Context:
    hosts = tmp_path / "hosts"
    hosts.write_text("198.51.100.50 h.test h\n2001:db8::50 h.test\n198.51.100.51 v4only.test\n")
    if conf is not None:
        path = tmp_path / "resolv.conf"
        path.write_text(conf)
        kw["resolv_conf"] = path
    return lwspy.Context(hosts_file=hosts, netlink=False, **kw)


def run(
    ctx: lwspy.Context, servers: list[FakeDns], done: Callable[[], bool], passes: int = 400
) -> None:
    for _ in range(passes):
        if done():
            return
        ctx.service(5)
        for s in servers:
            s.pump()
    raise AssertionError("not done")


A_TEST = {socket.AF_INET: ["198.51.100.7", "198.51.100.8"], socket.AF_INET6: ["2001:db8::7"]}


def addrs(got: list[DnsAnswer]) -> dict[int, list[str]]:
    """Each family's addresses, sorted (dnspython's record sets have no order)."""
    assert len({a.family for a in got}) == len(got)
    return {a.family: sorted(a.addresses) for a in got}


def only_wake_fd(ctx: lwspy.Context) -> bool:
    return list(ctx.pt.fds) == [ctx.pt.wake_r]


def test_both_families_once_each_from_the_loop(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        handle = ctx.resolver.resolve("a.test", got.append)
        assert got == []  # never inside resolve()
        run(ctx, [srv], lambda: len(got) == 2)
        by = {a.family: a for a in got}
        assert sorted(by[socket.AF_INET].addresses) == ["198.51.100.7", "198.51.100.8"]
        assert by[socket.AF_INET6].addresses == ["2001:db8::7"]
        assert all(a.disposition == "OK" and a.elapsed >= 0 for a in got)
        assert handle.done and only_wake_fd(ctx)
        for _ in range(3):
            ctx.service(0)
            srv.pump()
        assert len(got) == 2
        # EDNS0 with 1232, recursion desired, one question each; the AAAA and A query of
        # a name share one fresh socket (port), each with its own id; the next name gets
        # another socket
        assert len(srv.queries) == 2
        assert all(q.payload == 1232 and q.edns == 0 for _, q, _ in srv.queries)
        assert srv.queries[0][2] == srv.queries[1][2]
        assert srv.queries[0][1].id != srv.queries[1][1].id
        ctx.resolver.resolve("v4.test", got.append)
        run(ctx, [srv], lambda: len(got) == 4)
        assert len(srv.queries) == 4 and srv.queries[2][2] == srv.queries[3][2]
        assert srv.queries[2][2][1] != srv.queries[0][2][1]


def test_cname_chain_and_cache(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("C.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got) == A_TEST
        asked = len(srv.queries)
        got.clear()
        ctx.resolver.resolve("c.test.", got.append)
        assert got == []
        ctx.service(0)
        assert len(got) == 2 and len(srv.queries) == asked  # from the cache, next pass
        assert ctx.resolver.cache.hits == 2


def test_negative_answers_cached_from_soa(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("nope.test", got.append)
        ctx.resolver.resolve("v4.test", got.append)
        run(ctx, [srv], lambda: len(got) == 4)
        detail = {(a.addresses and a.addresses[0]) or a.detail for a in got}
        assert detail == {"DNS NXDOMAIN", "DNS NO_RESULT (no AAAA record)", "198.51.100.9"}
        assert {a.disposition for a in got} == {"NXDOMAIN", "NO_RESULT", "OK"}
        asked = len(srv.queries)
        got.clear()
        ctx.resolver.resolve("nope.test", got.append)
        ctx.resolver.resolve("v4.test", got.append)
        ctx.service(0)
        assert len(got) == 4 and len(srv.queries) == asked


def test_hosts_file_first_and_literals(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("H.test", got.append)
        ctx.resolver.resolve("v4only.test", got.append)
        ctx.resolver.resolve("2001:db8::1", got.append)
        ctx.resolver.resolve("[2001:db8::2]", got.append)
        ctx.resolver.resolve("198.51.100.1", got.append)
        assert got == []
        ctx.service(0)
        assert [(a.family, a.addresses, a.disposition) for a in got] == [
            (socket.AF_INET6, ["2001:db8::50"], "OK"),
            (socket.AF_INET, ["198.51.100.50"], "OK"),
            (socket.AF_INET6, [], "NO_RESULT"),
            (socket.AF_INET, ["198.51.100.51"], "OK"),
            (socket.AF_INET6, ["2001:db8::1"], "OK"),
            (socket.AF_INET, [], "NO_RESULT"),
            (socket.AF_INET6, ["2001:db8::2"], "OK"),
            (socket.AF_INET, [], "NO_RESULT"),
            (socket.AF_INET6, [], "NO_RESULT"),
            (socket.AF_INET, ["198.51.100.1"], "OK"),
        ]
        assert srv.queries == []  # no DNS for any of them
        assert [a.detail for a in got[:4]] == [
            "hosts file",
            "hosts file",
            "DNS NO_RESULT (no IPv6 address in the hosts file)",
            "hosts file",
        ]
        assert got[5].detail == "DNS NO_RESULT (2001:db8::1 is an IP literal)"


@pytest.mark.parametrize(
    "bad", ["", "a..b", "-x.test", "a-.test", "a.-b", "a b", "x" * 64, "é.test", "a/b"]
)
def test_bad_names(tmp_path: Path, bad: str) -> None:
    with make_ctx(tmp_path, nameservers=["127.0.0.1"]) as ctx:
        with pytest.raises(ValueError, match="not a valid host name"):
            ctx.resolver.resolve(bad, print)
        with pytest.raises(TypeError):
            ctx.resolver.resolve(b"a.test", print)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ctx.resolver.resolve("a.test", None)  # type: ignore[arg-type]


def test_bad_nameservers_option() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        lwspy.Context(nameservers=["dns.test"], netlink=False)
    with pytest.raises(TypeError):
        lwspy.Context(nameservers="198.51.100.1", netlink=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lwspy.Context(nameservers=[53], netlink=False)  # type: ignore[list-item]
    for bad in ("[::1", "[::1]x", "[::1]:0", "1.2.3.4:x", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            lwspy.Context(nameservers=[bad], netlink=False)


def test_cancel_stops_callbacks_and_closes_sockets(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        h1 = ctx.resolver.resolve("a.test", got.append)
        h2 = ctx.resolver.resolve("v4.test", got.append)
        h1.cancel()  # before it started
        ctx.service(0)  # h2's queries are out, on one socket
        assert len(ctx.pt.fds) == 2
        h2.cancel()
        h2.cancel()
        assert only_wake_fd(ctx)
        for _ in range(5):
            srv.pump()
            ctx.service(5)
        assert got == [] and "pending" in repr(ctx.resolver) and "done" in repr(h2)


def test_cancel_from_the_first_callback(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        handles: list[Any] = []

        def first(a: DnsAnswer) -> None:
            got.append(a)
            handles[0].cancel()

        handles.append(ctx.resolver.resolve("a.test", first))
        run(ctx, [srv], lambda: len(got) == 1)
        for _ in range(5):
            ctx.service(5)
            srv.pump()
        assert len(got) == 1 and only_wake_fd(ctx)
        # the same from a cached pair
        got.clear()
        handles[0] = ctx.resolver.resolve("a.test", first)
        ctx.service(0)
        assert len(got) == 1
        got.clear()
        handles[0] = ctx.resolver.resolve("h.test", first)  # hosts file
        ctx.service(0)
        assert len(got) == 1


def test_destroy_mid_query_closes_everything_and_calls_nothing(
    tmp_path: Path, srv: FakeDns
) -> None:
    ctx = make_ctx(tmp_path, nameservers=[srv.address])
    got: list[DnsAnswer] = []
    ctx.resolver.resolve("a.test", got.append)
    ctx.service(0)
    socks = [w.sock for w in ctx.pt.fds.values() if w.sock is not None]
    assert len(socks) == 1  # both families' queries on it
    ctx.destroy()
    assert all(s.fileno() == -1 for s in socks)
    assert got == []
    with pytest.raises(RuntimeError):
        ctx.resolver.resolve("a.test", got.append)
    ctx2 = make_ctx(tmp_path)
    ctx2.destroy()
    with pytest.raises(RuntimeError):
        ctx2.resolver  # noqa: B018


def test_callback_exception_is_logged_not_raised(tmp_path: Path, srv: FakeDns) -> None:
    seen: list[BaseException] = []
    with make_ctx(
        tmp_path, nameservers=[srv.address], on_callback_error=lambda w, r, e: seen.append(e)
    ) as ctx:
        calls: list[DnsAnswer] = []

        def boom(a: DnsAnswer) -> None:
            calls.append(a)
            raise RuntimeError("app bug")

        ctx.resolver.resolve("a.test", boom)
        run(ctx, [srv], lambda: len(calls) == 2)
        assert len(seen) == 2 and all(isinstance(e, RuntimeError) for e in seen)


def test_resolv_conf_is_read_and_reread(tmp_path: Path, srv: FakeDns) -> None:
    conf = f"nameserver [{srv.host}]:{srv.port}\nsearch test\noptions ndots:2 timeout:0.2\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a", got.append)  # -> a.test via the search list
        run(ctx, [srv], lambda: len(got) == 2)
        assert {a.disposition for a in got} == {"OK"}
        assert [q.question[0].name.to_text() for _, q, _ in srv.queries] == ["a.test."] * 2
        path = tmp_path / "resolv.conf"
        path.write_text("# nothing here\n")
        os.utime(path, (1, 1))
        got.clear()
        ctx.resolver.resolve("v4.test", got.append)
        ctx.service(0)
        assert [a.disposition for a in got] == ["SERVER_UNREACHABLE"] * 2
        assert got[0].detail == f"DNS SERVER_UNREACHABLE (no nameserver in {path})"
        path.unlink()
        got.clear()
        ctx.resolver.resolve("v4.test", got.append)
        ctx.service(0)
        assert "No such file" in got[0].detail
        assert ctx.resolver.conf.nameservers == []


def test_default_resolver_uses_etc_resolv_conf() -> None:
    with lwspy.Context(netlink=False) as ctx:
        r = ctx.resolver
        assert isinstance(r, Resolver) and r.resolv_conf == "/etc/resolv.conf"
        assert ctx.resolver is r


# -- misbehaving servers on loopback ---------------------------------------------------


def with_id(query: dns.message.Message, body: bytes) -> bytes:
    return query.id.to_bytes(2, "big") + body


def spoof_then_real(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    real = srv.answer(q)
    fake = srv.answer(q)
    for rrset in fake.answer:
        rrset.clear()
        rrset.add(
            dns.rdata.from_text(
                "IN", rrset.rdtype, "203.0.113.66" if rrset.rdtype == 1 else "2001:db8::66"
            )
        )
    wrong_id = fake.to_wire()
    wrong_id = bytes([wrong_id[0] ^ 0x55]) + wrong_id[1:]
    other_q = dns.message.make_query("evil.test", q.question[0].rdtype)
    other_q.id = q.id
    wrong_question = dns.message.make_response(other_q).to_wire()
    return [wrong_id, ("other", fake.to_wire()), wrong_question, b"\x00", real.to_wire()]


def test_spoofs_before_the_real_answer_are_ignored(tmp_path: Path, srv: FakeDns) -> None:
    srv.behaviour = spoof_then_real
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got) == A_TEST


def silent(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    return []


def only_spoofs(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    return spoof_then_real(srv, q, wire, tcp)[:-1]


def test_silence_times_out_to_the_next_server(tmp_path: Path, srv: FakeDns) -> None:
    with FakeDns() as quiet:
        quiet.behaviour = silent
        conf = f"nameserver [{quiet.host}]:{quiet.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(tmp_path, conf=conf + "options timeout:0.05 attempts:1\n") as ctx:
            got: list[DnsAnswer] = []
            ctx.resolver.resolve("a.test", got.append)
            run(ctx, [quiet, srv], lambda: len(got) == 2)
            assert {a.disposition for a in got} == {"OK"}
            assert len(quiet.queries) == 2 and len(srv.queries) == 2


def test_only_spoofs_and_silence_give_up_saying_why(tmp_path: Path, srv: FakeDns) -> None:
    srv.behaviour = only_spoofs
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:0.05 attempts:2\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert {a.disposition for a in got} == {"SERVER_UNREACHABLE"}
        # The two families share a socket per try: each sees both queries' spoofs with a
        # wrong id (2 x 2 per try), and only the wrong question carrying its own id.
        assert (
            got[0].detail
            == got[1].detail
            == (
                "DNS SERVER_UNREACHABLE (no answer from 1 server;"
                " ignored 8 answers with a wrong id; ignored 2 answers with the wrong question)"
            )
        )
        assert len(srv.queries) == 4  # two rounds, two families
        assert only_wake_fd(ctx)


def test_refused_first_server_moves_on_at_once(tmp_path: Path, srv: FakeDns) -> None:
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: ICMP port unreachable
    conf = f"nameserver [127.0.0.1]:{port}\nnameserver [{srv.host}]:{srv.port}\n"
    with make_ctx(tmp_path, conf=conf + "options timeout:30\n") as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)  # long before any 30 s timeout
        assert {a.disposition for a in got} == {"OK"}
    with make_ctx(tmp_path, conf=f"nameserver [127.0.0.1]:{port}\noptions attempts:1\n") as ctx:
        got.clear()
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [], lambda: len(got) == 2)
        assert (
            got[0].detail == "DNS SERVER_UNREACHABLE (no answer from 1 server; connection refused)"
        )


def test_unroutable_server_family_moves_on(tmp_path: Path, srv: FakeDns) -> None:
    # An IPv6 server where this host may have no IPv6 route: connect() fails at once or
    # the datagram goes nowhere; either way the IPv4 server answers.
    conf = (
        f"nameserver 2001:db8:ffff::1\nnameserver [{srv.host}]:{srv.port}\noptions timeout:0.05\n"
    )
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert {a.disposition for a in got} == {"OK"}


def truncating(srv: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
    resp = srv.answer(q)
    if tcp:
        return [resp.to_wire()]
    resp.answer.clear()
    resp.flags |= dns.flags.TC
    return [resp.to_wire()]


def test_truncated_answer_is_asked_again_over_tcp(tmp_path: Path, srv: FakeDns) -> None:
    srv.behaviour = truncating
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got) == A_TEST
        assert [tcp for tcp, _, _ in srv.queries].count(True) == 2
        assert only_wake_fd(ctx)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
            "compression pointer loop",
        ),
        (b"\x81\x80\x00\x01", "shorter than a DNS header"),
        (b"\x81\x80" + os.urandom(40), ""),
    ],
)
def test_garbage_with_the_right_id_is_a_malformed_answer(
    tmp_path: Path, srv: FakeDns, body: bytes, detail: str
) -> None:
    srv.behaviour = lambda s, q, w, t: [with_id(q, body)]
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert {a.disposition for a in got} == {"NO_RESULT"}
        assert all(a.detail.startswith("DNS malformed answer (") for a in got), got
        assert all(detail in a.detail for a in got)
        assert len(srv.queries) == 4  # attempts: 2, and each malformed answer moves on at once


def test_cname_loop(tmp_path: Path, srv: FakeDns) -> None:
    srv.zone["l1.test"] = [("CNAME", "l2.test.")]
    srv.zone["l2.test"] = [("CNAME", "L1.test.")]
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("l1.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert [(a.disposition, a.detail) for a in got] == [("NO_RESULT", "DNS CNAME loop")] * 2
        assert only_wake_fd(ctx)


@pytest.mark.parametrize("how", ["refused", "close", "reset", "slow", "silent", "spoofed"])
def test_tcp_fallback_failures(tmp_path: Path, srv: FakeDns, how: str) -> None:
    def behaviour(s: FakeDns, q: dns.message.Message, w: bytes, tcp: bool) -> list[Reply]:
        if not tcp:
            return truncating(s, q, w, tcp)
        if how in ("close", "reset"):
            return [(how, b"")]
        if how == "silent":
            return []
        if how == "spoofed":  # a wrong id, then the answer, on the same connection
            wrong = bytearray(s.answer(q).to_wire())
            wrong[0] ^= 0xFF
            return [bytes(wrong), s.answer(q).to_wire()]
        return [("slow", s.answer(q).to_wire())]

    srv.behaviour = behaviour
    if how == "refused":
        srv.tcp.close()
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:0.1 attempts:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        if how in ("slow", "spoofed"):
            assert addrs(got) == A_TEST
        else:
            assert [(a.disposition, a.detail) for a in got] == [
                ("NO_RESULT", "DNS truncated answer, and no answer over TCP")
            ] * 2
        assert only_wake_fd(ctx)


def test_a_server_that_timed_out_is_tried_last_for_a_while(tmp_path: Path, srv: FakeDns) -> None:
    with FakeDns() as quiet:
        quiet.behaviour = silent
        conf = f"nameserver [{quiet.host}]:{quiet.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(tmp_path, conf=conf + "options timeout:0.05 attempts:1\n") as ctx:
            got: list[DnsAnswer] = []
            ctx.resolver.resolve("a.test", got.append)
            run(ctx, [quiet, srv], lambda: len(got) == 2)
            assert len(quiet.queries) == 2
            got.clear()
            ctx.resolver.resolve("v4.test", got.append)
            run(ctx, [quiet, srv], lambda: len(got) == 2)
            assert len(quiet.queries) == 2  # not asked first this time
            assert sorted(a.disposition for a in got) == ["NO_RESULT", "OK"]
            # it answers again: back in front
            quiet.behaviour = FakeDns.normal
            quiet.zone = srv.zone
            ctx.resolver._down = dict.fromkeys(ctx.resolver._down, ctx.now())  # time is up
            got.clear()
            ctx.resolver.resolve("c.test", got.append)
            run(ctx, [quiet, srv], lambda: len(got) == 2)
            assert len(quiet.queries) == 4 and not ctx.resolver._down


def test_absolute_names_and_the_search_list_are_separate_cache_keys(
    tmp_path: Path, srv: FakeDns
) -> None:
    srv.zone["a.lab.test"] = [("A", "198.51.100.70"), ("AAAA", "2001:db8::70")]
    conf = f"nameserver [{srv.host}]:{srv.port}\nsearch lab.test\noptions ndots:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)  # 1 dot: as given first
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got) == A_TEST
        got.clear()
        ctx.resolver.resolve("a", got.append)  # no dot: a.lab.test first
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got)[socket.AF_INET] == ["198.51.100.70"]
        got.clear()
        ctx.resolver.resolve("a.", got.append)  # absolute: only "a", which is not there
        run(ctx, [srv], lambda: len(got) == 2)
        assert {x.disposition for x in got} == {"NXDOMAIN"}
        assert len(ctx.resolver.cache) == 6
        (tmp_path / "resolv.conf").write_text(conf + "# changed\n")
        got.clear()
        ctx.resolver.resolve("a", got.append)  # the file changed: the cache is emptied
        assert len(ctx.resolver.cache) == 6
        run(ctx, [srv], lambda: len(got) == 2)
        assert len(ctx.resolver.cache) == 2


def test_both_families_walk_the_search_list_together(tmp_path: Path, srv: FakeDns) -> None:
    # glibc getaddrinfo: the first name at which either family has records answers both,
    # so one connect never gets the addresses of two names.
    srv.zone["www.lab"] = [("A", "198.51.100.1")]
    srv.zone["www.lab.corp.test"] = [("AAAA", "2001:db8::1")]  # another host
    srv.zone["six.lab"] = [("AAAA", "2001:db8::2")]
    srv.zone["six.lab.corp.test"] = [("A", "198.51.100.2")]
    srv.zone["far.lab.corp.test"] = [("A", "198.51.100.4")]
    srv.zone["box"] = [("A", "198.51.100.3"), ("AAAA", "2001:db8::3")]
    conf = f"nameserver [{srv.host}]:{srv.port}\nsearch corp.test\noptions ndots:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        for name, want in (
            ("www.lab", {socket.AF_INET: ["198.51.100.1"], socket.AF_INET6: []}),
            ("six.lab", {socket.AF_INET: [], socket.AF_INET6: ["2001:db8::2"]}),
            ("far.lab", {socket.AF_INET: ["198.51.100.4"], socket.AF_INET6: []}),
            ("box", {socket.AF_INET: ["198.51.100.3"], socket.AF_INET6: ["2001:db8::3"]}),
        ):
            for _ in range(2):  # asked, then from the cache: the same
                got: list[DnsAnswer] = []
                ctx.resolver.resolve(name, got.append)
                run(ctx, [srv], lambda: len(got) == 2)  # noqa: B023
                assert addrs(got) == want, name
        asked = [(str(q.question[0].name), q.question[0].rdtype) for _, q, _ in srv.queries]
        # "www.lab" (1 dot: as given first) had an A: neither family asked further
        assert ("www.lab.corp.test.", dns.rdatatype.AAAA) not in asked
        # "box" (no dot): box.corp.test first, nothing there for either; then "box" for both
        assert asked[-4:] == [
            ("box.corp.test.", dns.rdatatype.AAAA),
            ("box.corp.test.", dns.rdatatype.A),
            ("box.", dns.rdatatype.AAAA),
            ("box.", dns.rdatatype.A),
        ]
        assert only_wake_fd(ctx)


def test_resolves_of_one_name_at_once_share_the_queries(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[list[DnsAnswer]] = [[], [], []]
        handles = [
            ctx.resolver.resolve(n, g.append)
            for n, g in zip(["a.test", "A.test", "a.test."], got, strict=True)
        ]
        ctx.service(0)
        assert len(ctx.pt.fds) == 2  # the wake fd and one socket for both families, not three
        handles[1].cancel()  # the others still get theirs
        run(ctx, [srv], lambda: len(got[0]) == 2 and len(got[2]) == 2)
        assert addrs(got[0]) == addrs(got[2]) == A_TEST and got[1] == []
        assert got[0][0] is not got[2][0]  # each its own copy
        assert len(srv.queries) == 2 and all(h.done for h in handles)
        # all of them cancelled: the shared sockets close
        more = [ctx.resolver.resolve("v4.test", print) for _ in range(2)]
        ctx.service(0)
        assert len(ctx.pt.fds) == 2
        more[0].cancel()
        assert len(ctx.pt.fds) == 2
        more[1].cancel()
        assert only_wake_fd(ctx) and not ctx.resolver._asking
        # a resolve made while the same name is out (after its start) joins the queries
        got2: list[DnsAnswer] = []
        ctx.resolver.resolve("c.test", got2.append)
        ctx.service(0)
        ctx.resolver.resolve("c.test", got2.append)
        run(ctx, [srv], lambda: len(got2) == 4)
        assert len({id(a) for a in got2}) == 4


def test_a_closed_resolver_refuses_new_resolves(tmp_path: Path) -> None:
    with make_ctx(tmp_path, nameservers=["127.0.0.1"]) as ctx:
        ctx.resolver.close()
        with pytest.raises(RuntimeError, match="resolver is closed"):
            ctx.resolver.resolve("a.test", print)


# -- the socket a name's two queries share ---------------------------------------------


def test_an_error_on_the_shared_socket_moves_both_families_on_together(
    tmp_path: Path, srv: FakeDns
) -> None:
    with FakeDns() as first:
        first.behaviour = silent
        conf = f"nameserver [{first.host}]:{first.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(tmp_path, conf=conf + "options timeout:30\n") as ctx:
            got: list[DnsAnswer] = []
            ctx.resolver.resolve("a.test", got.append)
            ctx.service(0)
            first.pump()
            (wsi,) = [w for w in ctx.pt.fds.values() if w.sock is not None]
            # what the role reports when a read says ECONNREFUSED (an ICMP error that
            # came in after both sends)
            wsi.user.failed(wsi, errno.ECONNREFUSED)
            assert wsi.sock is not None and wsi.sock.fileno() == -1
            assert len([w for w in ctx.pt.fds.values() if w.sock is not None]) == 1  # anew
            run(ctx, [first, srv], lambda: len(got) == 2)  # long before any 30 s timeout
            assert addrs(got) == A_TEST
            assert len(first.queries) == 2 and len(srv.queries) == 2
            assert srv.queries[0][2] == srv.queries[1][2]  # on one socket again
            assert only_wake_fd(ctx)


def test_families_that_part_keep_their_own_deadlines(tmp_path: Path, srv: FakeDns) -> None:
    """AAAA fails at once and moves on; A, still on the shared socket, times out on its
    own deadline (the shared timer fires for it, not for AAAA), then moves on too."""

    def servfail_aaaa(s: FakeDns, q: dns.message.Message, w: bytes, tcp: bool) -> list[Reply]:
        if q.question[0].rdtype == dns.rdatatype.AAAA:
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return [r.to_wire()]
        return []  # A: silence

    with FakeDns() as first:
        first.behaviour = servfail_aaaa
        conf = f"nameserver [{first.host}]:{first.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(tmp_path, conf=conf + "options timeout:0.1 attempts:1\n") as ctx:
            got: list[DnsAnswer] = []
            ctx.resolver.resolve("a.test", got.append)
            run(ctx, [first, srv], lambda: len(got) == 2)
            assert addrs(got) == A_TEST
            assert got[0].family == socket.AF_INET6  # answered first: it never waited
            assert got[1].elapsed >= 0.1  # A waited for its timeout
            assert [q.question[0].rdtype for _, q, _ in srv.queries] == [28, 1]
            assert srv.queries[0][2] != srv.queries[1][2]  # apart: each its own socket
            assert only_wake_fd(ctx)


def test_cancel_in_the_first_of_two_answers_given_together(tmp_path: Path, srv: FakeDns) -> None:
    srv.behaviour = silent
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:0.05 attempts:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        handles: list[Any] = []

        def first(a: DnsAnswer) -> None:
            got.append(a)
            handles[0].cancel()

        handles.append(ctx.resolver.resolve("a.test", first))
        run(ctx, [srv], lambda: len(got) == 1)  # both give up on one timer
        for _ in range(5):
            ctx.service(5)
        assert len(got) == 1 and got[0].disposition == "SERVER_UNREACHABLE"
        assert only_wake_fd(ctx) and not ctx.resolver._asking


def test_two_queries_with_the_same_id_never_share_a_socket(
    tmp_path: Path, srv: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lwspy.core.resolver as resolver_module

    monkeypatch.setattr(resolver_module, "_rand16", lambda: 0x4242)
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        ctx.service(0)
        assert len(ctx.pt.fds) == 3  # the wake fd and a socket each: ids could not tell them apart
        run(ctx, [srv], lambda: len(got) == 2)
        assert addrs(got) == A_TEST
        assert {q.id for _, q, _ in srv.queries} == {0x4242}
        assert srv.queries[0][2] != srv.queries[1][2]


# -- sockets shared by lookups made together -------------------------------------------


def udp_sockets(ctx: lwspy.Context) -> list[Any]:
    return [w for w in ctx.pt.fds.values() if w.sock is not None]


def test_lookups_made_together_share_a_few_sockets(tmp_path: Path, srv: FakeDns) -> None:
    for i in range(5):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{20 + i}"), ("AAAA", f"2001:db8::{20 + i}")]
    with make_ctx(tmp_path, nameservers=[srv.address], dns_queries_per_socket=4) as ctx:
        got: list[DnsAnswer] = []
        for i in range(5):
            ctx.resolver.resolve(f"n{i}.test", got.append)
        ctx.service(0)
        # ten queries, at most four a socket: three sockets, so three source ports
        assert sorted(len(w.user.by_id) for w in udp_sockets(ctx)) == [2, 4, 4]
        run(ctx, [srv], lambda: len(got) == 10)
        assert len({src for _, _, src in srv.queries}) == 3
        assert sorted(a for g in got for a in g.addresses) == sorted(
            [f"198.51.100.{20 + i}" for i in range(5)] + [f"2001:db8::{20 + i}" for i in range(5)]
        )
        assert len({q.id for _, q, _ in srv.queries}) == 10  # distinct ids on each socket
        assert only_wake_fd(ctx)  # each closed once no query waited on it


def test_a_lookup_made_alone_has_a_socket_of_its_own(tmp_path: Path, srv: FakeDns) -> None:
    with make_ctx(tmp_path, nameservers=[srv.address]) as ctx:
        got: list[DnsAnswer] = []
        for n, name in enumerate(("a.test", "v4.test"), 1):
            ctx.resolver.resolve(name, got.append)
            ctx.service(0)
            (wsi,) = udp_sockets(ctx)  # its AAAA and A query, and nobody else's
            assert len(wsi.user.by_id) == 2
            run(ctx, [srv], lambda n=n: len(got) == 2 * n)
            assert only_wake_fd(ctx)  # closed with its last answer: the next is a new one
        assert [q.question[0].name.to_text() for _, q, _ in srv.queries] == [
            "a.test.",
            "a.test.",
            "v4.test.",
            "v4.test.",
        ]


def test_a_socket_that_took_its_fill_takes_no_more(tmp_path: Path, srv: FakeDns) -> None:
    srv.zone["b.test"] = [("A", "198.51.100.30")]
    with make_ctx(tmp_path, nameservers=[srv.address], dns_queries_per_socket=2) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        ctx.service(0)
        (first,) = udp_sockets(ctx)
        ctx.resolver.resolve("b.test", got.append)  # while a.test is still out
        ctx.service(0)
        assert len(udp_sockets(ctx)) == 2 and first.user.uses == 2
        run(ctx, [srv], lambda: len(got) == 4)
        assert len({src for _, _, src in srv.queries}) == 2
        assert only_wake_fd(ctx)


def test_an_error_on_a_shared_socket_moves_every_lookup_on_it(tmp_path: Path, srv: FakeDns) -> None:
    for i in range(3):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{40 + i}")]
    with FakeDns() as first:
        first.behaviour = silent
        conf = f"nameserver [{first.host}]:{first.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(tmp_path, conf=conf + "options timeout:30\n") as ctx:
            got: list[DnsAnswer] = []
            for i in range(3):
                ctx.resolver.resolve(f"n{i}.test", got.append)
            ctx.service(0)
            first.pump()
            (wsi,) = udp_sockets(ctx)
            assert len(wsi.user.by_id) == 6
            wsi.user.failed(wsi, errno.ECONNREFUSED)  # as the role reports an ICMP error
            run(ctx, [first, srv], lambda: len(got) == 6)  # long before any 30 s timeout
            assert len(first.queries) == 6 and len(srv.queries) == 6
            assert sorted(a for g in got for a in g.addresses) == [
                f"198.51.100.{40 + i}" for i in range(3)
            ]
            assert only_wake_fd(ctx)


def test_a_wrong_id_on_a_shared_socket_is_counted_by_every_query_there(
    tmp_path: Path, srv: FakeDns
) -> None:
    def wrong_id(s: FakeDns, q: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
        r = dns.message.make_response(q)
        r.id = (q.id + 1) & 0xFFFF
        return [r.to_wire()]

    srv.behaviour = wrong_id
    srv.zone["b.test"] = [("A", "198.51.100.30")]
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:0.05 attempts:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        ctx.resolver.resolve("b.test", got.append)
        ctx.service(0)
        (wsi,) = udp_sockets(ctx)
        ids = set(wsi.user.by_id)
        run(ctx, [srv], lambda: len(got) == 4)
        assert {a.disposition for a in got} == {"SERVER_UNREACHABLE"}
        # four replies, none with an id sent here (unless one is another query's id:
        # then that query, not every one, reads it, and it is the wrong question)
        spoofs = sum((q.id + 1) & 0xFFFF not in ids for _, q, _ in srv.queries)
        for a in got:
            assert f"ignored {spoofs} answers with a wrong id" in a.detail
        assert only_wake_fd(ctx)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "16"])
def test_dns_queries_per_socket_is_checked(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="dns_queries_per_socket"):
        lwspy.Context(netlink=False, dns_queries_per_socket=bad)
    with lwspy.Context(netlink=False) as ctx, pytest.raises(ValueError, match="queries_per_socket"):
        Resolver(ctx, ["127.0.0.1"], queries_per_socket=bad)


# -- destroy() from inside an answer callback ------------------------------------------


@pytest.mark.parametrize("how", ["hosts", "cached", "joined"])
def test_destroy_from_an_answer_callback_silences_every_other_answer(
    tmp_path: Path, srv: FakeDns, how: str
) -> None:
    """Answers given in the same step as the one whose callback destroys the context
    (the other family of a hosts-file or cached name, the other resolves of a name being
    asked) are never delivered: no callback after destroy()."""
    ctx = make_ctx(tmp_path, nameservers=[srv.address])
    name = "h.test" if how == "hosts" else "a.test"
    if how == "cached":
        ctx.resolver.resolve(name, print)
        run(ctx, [srv], lambda: len(ctx.resolver.cache) == 2)
    late: list[DnsAnswer] = []
    mine: list[DnsAnswer] = []

    def first(a: DnsAnswer) -> None:
        mine.append(a)
        if how != "joined" or len(mine) == 2:  # joined: at the name's last answer
            ctx.destroy()

    def other(a: DnsAnswer) -> None:
        if ctx.destroying:
            late.append(a)

    ctx.resolver.resolve(name, first)
    if how == "joined":  # the same name at once: both wait for one pair of queries
        ctx.resolver.resolve(name, other)
    for _ in range(20):
        if ctx.destroyed:
            break
        ctx.service(5)
        srv.pump()
    assert ctx.destroyed and late == [] and len(mine) == (2 if how == "joined" else 1)


# -- answers that came in before an error on a shared socket ---------------------------


def test_answers_queued_before_an_icmp_error_are_read_not_lost(
    tmp_path: Path, srv: FakeDns
) -> None:
    """Linux reports a connected UDP socket's ICMP error on the next read, before the
    datagrams already queued: the answers that came before it are still read, and only
    the queries left without one move on."""

    def spoof_answer_twice(s: FakeDns, q: dns.message.Message, w: bytes, t: bool) -> list[Reply]:
        real = s.answer(q).to_wire()
        return [bytes([real[0] ^ 0x55]) + real[1:], real, real]

    srv.behaviour = spoof_answer_twice
    srv.zone["b.test"] = [("A", "198.51.100.30")]
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:30 attempts:1\n"
    with make_ctx(tmp_path, conf=conf) as ctx:
        got: list[DnsAnswer] = []
        ctx.resolver.resolve("a.test", got.append)
        ctx.resolver.resolve("b.test", got.append)
        ctx.service(0)
        (wsi,) = udp_sockets(ctx)
        srv.pump()  # four answers (each after a spoof, and again) wait in the socket
        srv.udp.close()  # then the server goes away, and a datagram sent on the socket
        wsi.sock.send(b"\0" * 12)  # (as a retry landing there would be) is refused
        run(ctx, [], lambda: len(got) == 4)
        assert sorted(a for g in got for a in g.addresses) == [
            "198.51.100.30",
            "198.51.100.7",
            "198.51.100.8",
            "2001:db8::7",
        ]
        assert only_wake_fd(ctx)


def test_answers_queued_before_a_refused_send_are_read_not_lost(
    tmp_path: Path, srv: FakeDns
) -> None:
    """The same when the error comes back on a send (a lookup joining the socket after
    the server went away): what was queued before it is read first."""
    from lwspy.roles.udp import READS_PER_EVENT

    n = READS_PER_EVENT // 2 + 1  # names whose answers overflow one readable event
    for i in range(n):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{60 + i}"), ("AAAA", f"2001:db8::{60 + i}")]
    conf = f"nameserver [{srv.host}]:{srv.port}\noptions timeout:30 attempts:1\n"
    with make_ctx(tmp_path, conf=conf, dns_queries_per_socket=64) as ctx:
        got: list[DnsAnswer] = []
        for i in range(n):
            ctx.resolver.resolve(f"n{i}.test", got.append)
        ctx.service(0)
        assert len(udp_sockets(ctx)) == 1
        srv.pump()
        srv.udp.close()
        late: list[DnsAnswer] = []
        ctx.resolver.resolve("c.test", late.append)  # joins the socket, refused
        run(ctx, [], lambda: len(got) == 2 * n and len(late) == 2)
        assert sorted(a.disposition for a in got) == ["OK"] * (2 * n)
        assert {a.disposition for a in late} == {"SERVER_UNREACHABLE"}
        assert only_wake_fd(ctx)


# -- a server's error is every socket's to it ------------------------------------------


def test_a_refusal_on_one_socket_moves_the_queries_of_every_socket_to_that_server(
    tmp_path: Path, srv: FakeDns
) -> None:
    for i in range(3):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{40 + i}")]
    with FakeDns() as first:
        first.behaviour = silent
        conf = f"nameserver [{first.host}]:{first.port}\nnameserver [{srv.host}]:{srv.port}\n"
        with make_ctx(
            tmp_path, conf=conf + "options timeout:30\n", dns_queries_per_socket=2
        ) as ctx:
            got: list[DnsAnswer] = []
            for i in range(3):
                ctx.resolver.resolve(f"n{i}.test", got.append)
            ctx.service(0)
            first.pump()
            socks = udp_sockets(ctx)
            assert len(socks) == 3  # a socket per name
            # an error that is not the server's (here EIO) moves only that socket's queries
            socks[0].user.failed(socks[0], errno.EIO)
            run(ctx, [first, srv], lambda: len(got) == 2)
            assert len(udp_sockets(ctx)) == 2
            # a refusal is the server's word: the other sockets to it are done too
            socks[1].user.failed(socks[1], errno.ECONNREFUSED)
            run(ctx, [first, srv], lambda: len(got) == 6)  # long before any 30 s timeout
            assert sorted(a for g in got for a in g.addresses) == [
                f"198.51.100.{40 + i}" for i in range(3)
            ]
            assert len(first.queries) == 6 and only_wake_fd(ctx)


def test_a_server_that_refused_a_moment_ago_is_not_asked_again_at_once(
    tmp_path: Path, srv: FakeDns
) -> None:
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: ICMP port unreachable, at once on loopback
    for i in range(3):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{40 + i}")]
    conf = f"nameserver [127.0.0.1]:{port}\nnameserver [{srv.host}]:{srv.port}\n"
    with make_ctx(tmp_path, conf=conf + "options timeout:30\n") as ctx:
        got: list[DnsAnswer] = []
        for i in range(3):
            ctx.resolver.resolve(f"n{i}.test", got.append)
        run(ctx, [srv], lambda: len(got) == 6)
        # the first datagram was sent and refused; the second send said so; the other
        # four queries of that pass went to the next server unsent
        assert ctx.resolver.sent == 1 + 6
        assert len(srv.queries) == 6 and only_wake_fd(ctx)
        # a while later it is asked again (last: it is down)
        ctx.resolver._refused = dict.fromkeys(ctx.resolver._refused, (0.0, "refused"))
        ctx.resolver._down.clear()
        got.clear()
        ctx.resolver.resolve("v4.test", got.append)
        run(ctx, [srv], lambda: len(got) == 2)
        assert ctx.resolver.sent == 7 + 1 + 2  # refused again, then the next server
        assert all(when > 0 for when, _ in ctx.resolver._refused.values())


def test_out_of_file_descriptors_rides_an_open_socket_and_blames_no_server(
    tmp_path: Path, srv: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lwspy.core.resolver as resolver_module

    real = resolver_module.open_udp
    opened: list[object] = []

    def open_udp(ctx: Any, server: Any, sink: Any) -> Any:
        if opened:  # one socket, then the process is out of file descriptors
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        opened.append(sink)
        return real(ctx, server, sink)

    monkeypatch.setattr(resolver_module, "open_udp", open_udp)
    for i in range(6):
        srv.zone[f"n{i}.test"] = [("A", f"198.51.100.{60 + i}")]
    with make_ctx(tmp_path, nameservers=[srv.address], dns_queries_per_socket=2) as ctx:
        got: list[DnsAnswer] = []
        for i in range(6):
            ctx.resolver.resolve(f"n{i}.test", got.append)
        ctx.service(0)
        (wsi,) = udp_sockets(ctx)
        assert len(wsi.user.by_id) == 12  # over its share of 2: there was no other way
        run(ctx, [srv], lambda: len(got) == 12)
        assert sorted(a for g in got for a in g.addresses) == [
            f"198.51.100.{60 + i}" for i in range(6)
        ]
        assert not ctx.resolver._down and only_wake_fd(ctx)


def test_out_of_file_descriptors_with_no_socket_open_fails_but_marks_no_server_down(
    tmp_path: Path, srv: FakeDns, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lwspy.core.resolver as resolver_module

    def open_udp(ctx: Any, server: Any, sink: Any) -> Any:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(resolver_module, "open_udp", open_udp)
    with FakeDns() as second:
        second.zone.update(srv.zone)
        with make_ctx(tmp_path, nameservers=[srv.address, second.address]) as ctx:
            got: list[DnsAnswer] = []
            ctx.resolver.resolve("a.test", got.append)
            run(ctx, [srv, second], lambda: len(got) == 2)
            assert {a.disposition for a in got} == {"SERVER_UNREACHABLE"}
            assert all("too many open files" in a.detail for a in got)
            assert not ctx.resolver._down  # the servers did nothing wrong
            assert not srv.queries and not second.queries
            assert only_wake_fd(ctx)
