"""The sans-I/O resolver pieces: resolv.conf, the search list, the cache, the query machine."""

from __future__ import annotations

import itertools
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwspy.net import dns as d
from lwspy.net.dns import QEvent, QState

# -- resolv.conf -----------------------------------------------------------------------


def test_resolv_conf_parsing() -> None:
    conf = d.parse_resolv_conf(
        """
        # comment
        nameserver 198.51.100.1
        nameserver 2001:db8::53   ; trailing comment
        nameserver not-an-address
        nameserver [2001:db8::54]:5353
        nameserver 198.51.100.4
        domain old.test
        search lab.test Other.Test lab.test bad..name
        options ndots:3 timeout:2 attempts:9 rotate edns0 ndots:x timeout:nan
        sortlist 198.51.100.0/255.255.255.0
        nameserver
        """,
        source="/etc/resolv.conf",
    )
    assert conf.nameservers == [("198.51.100.1", 53), ("2001:db8::53", 53), ("2001:db8::54", 5353)]
    assert conf.search == [(b"lab", b"test"), (b"Other", b"Test")]
    assert (conf.ndots, conf.timeout, conf.attempts) == (3, 2.0, 5)
    assert conf.source == "/etc/resolv.conf"
    empty = d.parse_resolv_conf("")
    assert (empty.nameservers, empty.search, empty.ndots, empty.timeout, empty.attempts) == (
        [],
        [],
        1,
        5.0,
        2,
    )
    assert d.parse_resolv_conf("search a.test\ndomain b.test c.test").search == [(b"b", b"test")]
    capped = d.parse_resolv_conf("options ndots:99 timeout:0 attempts:0 timeout:1e9")
    assert (capped.ndots, capped.timeout, capped.attempts) == (15, 30.0, 1)
    # glibc's minimum: a try waits at least 1 s (res_send), not 0 or 1 ms
    assert d.parse_resolv_conf("options timeout:0").timeout == 1.0
    assert d.parse_resolv_conf("options timeout:-2").timeout == 1.0
    assert d.parse_resolv_conf("options timeout:0.25").timeout == 0.25


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("198.51.100.1", ("198.51.100.1", 53)),
        ("198.51.100.1:5353", ("198.51.100.1", 5353)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("2001:DB8::1", ("2001:db8::1", 53)),
        ("fe80::1%lo", ("fe80::1%lo", 53)),
    ],
)
def test_parse_nameserver(text: str, server: tuple[str, int]) -> None:
    assert d.parse_nameserver(text) == server


def test_search_names_follow_ndots() -> None:
    conf = d.ResolvConf(search=[(b"lab", b"test"), (b"test",)], ndots=1)
    texts = lambda name: [d.name_text(n) for n in d.search_names(name, conf)]  # noqa: E731
    assert texts("box") == ["box.lab.test", "box.test", "box"]
    assert texts("box.x") == ["box.x", "box.x.lab.test", "box.x.test"]
    assert texts("box.x.") == ["box.x"]
    conf.ndots = 2
    assert texts("box.x") == ["box.x.lab.test", "box.x.test", "box.x"]
    conf.search = [(b"a" * 63,) * 3]
    assert len(texts("x")) == 2  # x.aaa..., then x
    assert texts("b" * 63 + "." + "c" * 60) == ["b" * 63 + "." + "c" * 60]  # too long: skipped


# -- the cache -------------------------------------------------------------------------


def ans(disposition: str = "OK", *addresses: str) -> d.DnsAnswer:
    return d.DnsAnswer(socket.AF_INET, list(addresses), disposition, f"DNS {disposition}")


def test_cache_ttl_lru_and_caps() -> None:
    c = d.DnsCache(max_entries=2)
    c.put("A.test", d.TYPE_A, ans("OK", "198.51.100.1"), 10, now=0)
    assert c.get("a.test.", d.TYPE_A, 0) is None  # the caller decides what a dot means
    assert c.get("a.test", d.TYPE_A, 9.9) == (["198.51.100.1"], "OK", "DNS OK")
    assert c.get("a.test", d.TYPE_AAAA, 1) is None
    assert c.get("a.test", d.TYPE_A, 10) is None  # expired, and dropped
    assert len(c) == 0
    c.put("a.test", d.TYPE_A, ans(), 100, 0)
    c.put("b.test", d.TYPE_A, ans(), 100, 0)
    c.get("a.test", d.TYPE_A, 1)  # a is now the most recent
    c.put("c.test", d.TYPE_A, ans(), 100, 0)
    assert c.get("b.test", d.TYPE_A, 1) is None and c.get("a.test", d.TYPE_A, 1) is not None
    c.put("z.test", d.TYPE_A, ans(), 0, 0)  # TTL 0: not cached
    assert c.get("z.test", d.TYPE_A, 0) is None
    c.put("big.test", d.TYPE_A, ans(), 10**9, 0)
    assert c.get("big.test", d.TYPE_A, d.MAX_TTL - 1) is not None
    assert c.get("big.test", d.TYPE_A, d.MAX_TTL) is None
    c.put("neg.test", d.TYPE_A, ans("NXDOMAIN"), 10**9, 0)
    assert c.get("neg.test", d.TYPE_A, d.MAX_NEGATIVE_TTL) is None
    assert (c.hits, c.misses) == (4, 7)
    c.clear()
    assert len(c) == 0
    off = d.DnsCache(0)
    off.put("a.test", d.TYPE_A, ans(), 10, 0)
    assert len(off) == 0
    with pytest.raises(ValueError):
        d.DnsCache(-1)


# -- the query machine -----------------------------------------------------------------

NAME = (b"www", b"lab", b"test")


def machine(
    names: list[d.Labels] | None = None,
    servers: int = 2,
    attempts: int = 2,
    qtype: int = d.TYPE_A,
) -> d.QueryMachine:
    ids = itertools.count(100)
    return d.QueryMachine(
        names or [NAME],
        qtype,
        [(f"198.51.100.{i + 1}", 53) for i in range(servers)],
        timeout=1.0,
        attempts=attempts,
        rand16=lambda: next(ids),
        started=10.0,
    )


def reply(
    send: d.Send,
    answers: list[d.ResourceRecord] = (),  # type: ignore[assignment]
    rcode: int = 0,
    authority: list[d.ResourceRecord] = (),  # type: ignore[assignment]
    flags: int = 0x8180,
    question: d.Question | None = None,
) -> bytes:
    q = d.decode_message(send.payload)
    msg = d.Message(
        q.id,
        flags | rcode,
        [question or q.questions[0]],
        list(answers),
        list(authority),
        edns=d.Edns(),
    )
    return d.encode_message(msg)


def a(name: d.Labels, addr: str, ttl: int = 300) -> d.ResourceRecord:
    return d.ResourceRecord.make(name, d.TYPE_AAAA if ":" in addr else d.TYPE_A, ttl, addr)


def cname(name: d.Labels, target: d.Labels, ttl: int = 300) -> d.ResourceRecord:
    return d.ResourceRecord.make(name, d.TYPE_CNAME, ttl, target)


def soa(ttl: int = 600, minimum: int = 60) -> d.ResourceRecord:
    return d.ResourceRecord.make(
        (b"test",), d.TYPE_SOA, ttl, d.Soa((b"ns",), (b"h",), 1, 2, 3, 4, minimum)
    )


def start(m: d.QueryMachine, now: float = 10.0) -> d.Send:
    s = m.start(now)
    assert isinstance(s, d.Send)
    return s


def done(action: d.Send | d.Done | None) -> d.Done:
    assert isinstance(action, d.Done), action
    return action


def test_answer_in_order_without_duplicates() -> None:
    m = machine()
    s = start(m)
    assert (s.index, s.server, s.tcp, m.state, m.deadline) == (
        0,
        ("198.51.100.1", 53),
        False,
        QState.UDP,
        11.0,
    )
    q = d.decode_message(s.payload)
    assert q.id == 100 and q.edns is not None and q.edns.payload == 1232
    addrs = ["198.51.100.9", "198.51.100.7", "198.51.100.9", "198.51.100.8"]
    r = done(m.receive(reply(s, [a(NAME, x, 100 + i) for i, x in enumerate(addrs)]), 10.25))
    assert r.answer == d.DnsAnswer(
        socket.AF_INET, ["198.51.100.9", "198.51.100.7", "198.51.100.8"], "OK", "DNS OK", 0.25
    )
    assert r.ttl == 100
    assert m.state is QState.DONE and m.deadline is None
    assert m.receive(reply(s, [a(NAME, "198.51.100.1")]), 11) is None  # after DONE: nothing
    assert m.timer(100) is None and m.unreachable(100) is None


def test_case_insensitive_question_and_owner() -> None:
    m = machine(qtype=d.TYPE_AAAA)
    s = start(m)
    upper = tuple(label.upper() for label in NAME)
    r = done(
        m.receive(reply(s, [a(upper, "2001:db8::1")], question=d.Question(upper, d.TYPE_AAAA)), 10)
    )
    assert r.answer.family == socket.AF_INET6 and r.answer.addresses == ["2001:db8::1"]


def test_ignored_inputs_and_their_count_in_the_final_detail() -> None:
    m = machine(servers=1, attempts=1)
    s = start(m)
    good = reply(s, [a(NAME, "198.51.100.7")])
    assert m.receive(b"", 10) is None
    assert m.receive(bytes([good[0] ^ 1]) + good[1:], 10) is None  # wrong id
    assert m.receive(reply(s, question=d.Question((b"evil", b"test"), d.TYPE_A)), 10) is None
    assert m.receive(reply(s, question=d.Question(NAME, d.TYPE_AAAA)), 10) is None
    assert m.receive(reply(s, question=d.Question(NAME, d.TYPE_A, 3)), 10) is None  # CHAOS
    assert m.receive(reply(s, flags=0x0100), 10) is None  # a query, not a response
    assert m.receive(reply(s, flags=0x8180 | 1 << 11), 10) is None  # opcode 1
    assert m.timer(10.99) is None  # not due yet
    r = done(m.timer(11.0))
    assert r.answer.disposition == "SERVER_UNREACHABLE"
    assert r.answer.detail == (
        "DNS SERVER_UNREACHABLE (no answer from 1 server; ignored 2 answers with a wrong id;"
        " ignored 3 answers with the wrong question; ignored 2 answers with no response flag)"
    )
    assert r.ttl is None


def test_timeouts_walk_servers_and_rounds_at_exact_times() -> None:
    m = machine(servers=2, attempts=2)
    sends = [start(m)]
    now = 10.0
    while True:
        assert m.deadline == now + 1.0
        now = m.deadline
        action = m.timer(now)
        if isinstance(action, d.Done):
            break
        assert isinstance(action, d.Send)
        sends.append(action)
    assert [s.server[0] for s in sends] == ["198.51.100.1", "198.51.100.2"] * 2
    assert len({d.decode_message(s.payload).id for s in sends}) == 4  # a new id per try
    assert action.answer.detail == "DNS SERVER_UNREACHABLE (no answer from 2 servers)"
    assert action.answer.elapsed == 4.0


def test_unreachable_moves_on_at_once() -> None:
    m = machine(servers=2, attempts=1)
    start(m)
    s2 = m.unreachable(10.001)
    assert isinstance(s2, d.Send) and s2.index == 1 and m.deadline == 11.001
    r = done(m.unreachable(10.002))
    assert r.answer.disposition == "SERVER_UNREACHABLE"


@pytest.mark.parametrize(
    ("rcode", "name"), [(2, "SERVFAIL"), (5, "REFUSED"), (4, "NOTIMP"), (9, "rcode 9")]
)
def test_server_failures_try_the_next_server_then_say_which(rcode: int, name: str) -> None:
    m = machine(servers=2, attempts=1)
    s = start(m)
    s2 = m.receive(reply(s, rcode=rcode), 10.1)
    assert isinstance(s2, d.Send) and s2.index == 1
    r = done(m.timer(11.1))
    assert (r.answer.disposition, r.answer.detail) == ("NO_RESULT", f"DNS {name}")


def test_formerr_without_question_is_a_server_failure() -> None:
    m = machine(servers=1, attempts=1)
    s = start(m)
    qid = d.decode_message(s.payload).id
    r = done(m.receive(struct.pack("!HHHHHH", qid, 0x8181, 0, 0, 0, 0), 10))
    assert r.answer.detail == "DNS FORMERR"


def test_truncated_goes_tcp_to_the_same_server_with_the_same_question() -> None:
    m = machine()
    s = start(m)
    t = m.receive(reply(s, flags=0x8380), 10.1)
    assert isinstance(t, d.Send) and t.tcp and t.index == 0 and t.payload == s.payload
    assert m.state is QState.TCP and m.deadline == 11.1
    r = done(m.receive(reply(t, [a(NAME, "198.51.100.7")]), 10.2))
    assert r.answer.addresses == ["198.51.100.7"]


def test_truncated_over_tcp_is_broken_next_server() -> None:
    m = machine(servers=2, attempts=1)
    s = start(m)
    t = m.receive(reply(s, flags=0x8380), 10.1)
    assert isinstance(t, d.Send)
    u = m.receive(reply(t, flags=0x8380), 10.2)
    assert isinstance(u, d.Send) and not u.tcp and u.index == 1
    v = m.receive(reply(u, flags=0x8380), 10.3)
    assert isinstance(v, d.Send) and v.tcp
    r = done(m.unreachable(10.4, "unreachable"))  # the TCP connect failed
    assert r.answer.detail == "DNS truncated answer, and no answer over TCP"
    assert m._failures == ["truncated answer over TCP", r.answer.detail[4:]]


def test_nxdomain_and_nodata_walk_the_search_list() -> None:
    names = [(b"www", b"a", b"test"), (b"www", b"b", b"test"), (b"www",)]
    m = machine(names)
    s = start(m)
    s = m.receive(reply(s, rcode=3, authority=[soa(600, 60)]), 10)  # type: ignore[assignment]
    assert isinstance(s, d.Send) and d.decode_message(s.payload).questions[0].name == names[1]
    s = m.receive(reply(s, authority=[soa(30, 120)]), 10)  # type: ignore[assignment]  # NODATA
    assert isinstance(s, d.Send) and d.decode_message(s.payload).questions[0].name == names[2]
    r = done(m.receive(reply(s, rcode=3, authority=[soa(100, 100)]), 10))
    assert (r.answer.disposition, r.answer.detail, r.ttl) == (
        "NO_RESULT",
        "DNS NO_RESULT (no A record)",
        30,
    )
    m = machine(names[:2])
    s = start(m)
    s = m.receive(reply(s, rcode=3, authority=[soa(600, 60)]), 10)  # type: ignore[assignment]
    r = done(m.receive(reply(s, rcode=3), 10))  # no SOA: not cacheable
    assert (r.answer.disposition, r.ttl) == ("NXDOMAIN", None)


def test_search_list_candidate_found_later() -> None:
    names = [(b"www", b"a", b"test"), (b"www",)]
    m = machine(names, servers=2)
    s = start(m)
    s = m.timer(11.0)  # type: ignore[assignment]  # first server silent for candidate 1
    assert isinstance(s, d.Send) and s.index == 1
    s = m.receive(reply(s, rcode=3), 11.5)  # type: ignore[assignment]
    assert isinstance(s, d.Send) and s.index == 0  # a new candidate starts at server 0
    r = done(m.receive(reply(s, [a((b"www",), "198.51.100.5")]), 11.6))
    assert r.answer.addresses == ["198.51.100.5"]


def test_cname_chain_in_one_answer_and_across_queries() -> None:
    b = (b"b", b"test")
    c = (b"c", b"test")
    m = machine()
    s = start(m)
    r = done(
        m.receive(reply(s, [cname(NAME, b, 50), cname(b, c, 500), a(c, "198.51.100.3", 400)]), 10)
    )
    assert (r.answer.addresses, r.ttl) == (["198.51.100.3"], 50)
    m = machine()
    s = start(m)
    s2 = m.receive(reply(s, [cname(NAME, b, 70)]), 10)  # the chain stops: ask for b
    assert isinstance(s2, d.Send) and d.decode_message(s2.payload).questions[0].name == b
    r = done(m.receive(reply(s2, [a(b, "198.51.100.4", 900)]), 10))
    assert (r.answer.addresses, r.ttl) == (["198.51.100.4"], 70)
    m = machine()
    s = start(m)
    r = done(m.receive(reply(s, [cname(NAME, b)], authority=[soa()]), 10))  # NODATA at the end
    assert r.answer.disposition == "NO_RESULT" and r.ttl == 60


def test_cname_loops_and_long_chains_are_fatal() -> None:
    b = (b"b", b"test")
    m = machine()
    s = start(m)
    r = done(m.receive(reply(s, [cname(NAME, b), cname(b, tuple(x.upper() for x in NAME))]), 10))
    assert (r.answer.disposition, r.answer.detail) == ("NO_RESULT", "DNS CNAME loop")
    m = machine()
    s = start(m)
    s2 = m.receive(reply(s, [cname(NAME, b)]), 10)
    assert isinstance(s2, d.Send)
    r = done(m.receive(reply(s2, [cname(b, NAME)]), 10))  # a loop across two queries
    assert r.answer.detail == "DNS CNAME loop"
    chain = [(f"n{i}".encode(), b"test") for i in range(20)]
    m = machine()
    s = start(m)
    records = [cname(NAME, chain[0])] + [cname(x, y) for x, y in itertools.pairwise(chain)]
    r = done(m.receive(reply(s, records), 10))
    assert r.answer.detail == f"DNS CNAME chain longer than {d.MAX_CNAME_CHAIN}"


def test_malformed_answer_moves_on_and_is_the_detail() -> None:
    m = machine(servers=1, attempts=1)
    s = start(m)
    qid = d.decode_message(s.payload).id
    r = done(m.receive(struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1", 10))
    assert (r.answer.disposition, r.answer.detail) == (
        "NO_RESULT",
        "DNS malformed answer (compression pointer loop)",
    )


def test_transition_table_is_complete_for_live_states() -> None:
    driver_only = (QEvent.START, QEvent.NEXT, QEvent.STOP)  # what the driver says, not a server
    for state in (QState.UDP, QState.TCP):
        for event in QEvent:
            if event not in driver_only:
                assert (state, event) in d.TRANSITIONS
    assert {e for s, e in d.TRANSITIONS if s is QState.PAUSED} == {QEvent.NEXT, QEvent.STOP}
    assert d.TRANSITIONS[(QState.IDLE, QEvent.START)] == "send_udp"
    assert not any(
        s in (QState.IDLE, QState.DONE) for s, e in d.TRANSITIONS if e is not QEvent.START
    )
    with pytest.raises(ValueError):
        d.QueryMachine(
            [], d.TYPE_A, [("198.51.100.1", 53)], timeout=1, attempts=1, rand16=int, started=0
        )


def test_lockstep_pauses_between_names_until_the_driver_says() -> None:
    other = (b"www", b"corp", b"test")
    m = machine([NAME, other])
    m.lockstep = True
    assert m.resume(10.0) is None and m.stop(10.0) is None  # only when PAUSED
    s = start(m)
    assert m.receive(reply(s, rcode=3, authority=[soa()]), 10.1) is None  # NXDOMAIN here
    assert m.state is QState.PAUSED and m.deadline is None
    assert m.timer(99.0) is None and m.receive(b"junk", 10.2) is None
    nxt = m.resume(10.2)  # neither family had a record: the next name
    assert isinstance(nxt, d.Send) and m.state is QState.UDP
    assert d.decode_message(nxt.payload).questions[0].name == other
    stopped = machine([NAME, other])
    stopped.lockstep = True
    s = start(stopped)
    assert stopped.receive(reply(s, authority=[soa()]), 10.1) is None  # NODATA here
    end = done(stopped.stop(10.3))  # the other family had records at this name
    assert (end.answer.disposition, end.answer.addresses, end.ttl) == ("NO_RESULT", [], 60.0)
    assert stopped.resume(10.4) is None and stopped.stop(10.4) is None


def test_machine_repr_free_records() -> None:
    s = d.Send(0, ("198.51.100.1", 53), False, b"x")
    assert "Send(index=0" in repr(s)


@given(st.lists(st.binary(max_size=80), max_size=8), st.booleans())
def test_random_datagrams_never_raise(blobs: list[bytes], keep_id: bool) -> None:
    m = machine()
    s = start(m)
    qid = s.payload[:2]
    now = 10.0
    for blob in blobs:
        if m.state is QState.DONE:
            break
        data = (qid + blob[2:]) if keep_id else blob
        action = m.receive(data, now)
        if isinstance(action, d.Send):
            qid = action.payload[:2]
        now += 0.01


@given(st.binary(min_size=0, max_size=300), st.integers(0, 300))
def test_damaged_real_answers_never_raise(noise: bytes, pos: int) -> None:
    m = machine()
    s = start(m)
    good = bytearray(
        reply(s, [cname(NAME, (b"b",)), a((b"b",), "198.51.100.7")], authority=[soa()])
    )
    good[2 + pos % (len(good) - 2) :] = noise[: len(good)]
    m.receive(bytes(good), 10)


# -- the in-place reading of a plain answer against the whole decode -------------------


def _answer_to(
    m: d.QueryMachine,
    addresses: list[int],
    ttls: list[int],
    *,
    flags: int,
    edns: bool,
    pointer: bool,
    case: bool,
) -> bytes:
    """An answer to ``m``'s query as a server would build it (names by pointer or not)."""
    size = 4 if m.qtype == d.TYPE_A else 16
    qname = d.encode_name(tuple(x.upper() if case else x for x in m._name))
    out = struct.pack("!HHHHHH", m.query_id, flags, 1, len(addresses), 0, int(edns))
    out += qname + struct.pack("!HH", m.qtype, d.CLASS_IN)
    for a, ttl in zip(addresses, ttls, strict=False):
        name = b"\xc0\x0c" if pointer else d.encode_name(m._name)
        out += name + struct.pack("!HHIH", m.qtype, d.CLASS_IN, ttl, size)
        out += a.to_bytes(size, "big")
    if edns:
        out += b"\0" + struct.pack("!HHIH", d.TYPE_OPT, 1232, 0, 0)
    return out


@given(
    st.sampled_from([d.TYPE_A, d.TYPE_AAAA]),
    st.lists(st.integers(0, 3), min_size=0, max_size=4),  # few values: duplicates too
    st.lists(st.sampled_from([0, 1, 300, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]), max_size=4),
    st.sampled_from([0x8180, 0x8580, 0x8183, 0x8380, 0x0180, 0x8980, 0x8182]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_the_plain_answer_path_agrees_with_the_whole_decode(
    qtype: int,
    addresses: list[int],
    ttls: list[int],
    flags: int,
    edns: bool,
    pointer: bool,
    case: bool,
    data: st.DataObject,
) -> None:
    """Whatever ``_plain_answer`` reads in place, the whole decode reads the same; the
    plain path is taken for the plain shape (so this test checks it at all); a mutated
    message goes to the whole decode or agrees with it."""
    m = d.QueryMachine(
        [(b"n1", b"bench", b"test")], qtype, [("198.51.100.53", 53)], timeout=5, attempts=2,
        rand16=lambda: 0x1234, started=0.0,
    )  # fmt: skip
    m.start(0.0)
    ttls = (ttls + [300] * 4)[: len(addresses)]
    wire = _answer_to(m, addresses, ttls, flags=flags, edns=edns, pointer=pointer, case=case)
    whole = m._classify_message(wire)
    fast = m._plain_answer(wire)
    if fast is not None:
        assert fast == whole
    plain = flags in (0x8180, 0x8580) and addresses and pointer and not case
    assert (fast is not None) == bool(plain)
    if plain:
        assert fast is not None and fast[0] is QEvent.ANSWER
    # every single-byte change or cut of it: the same verdict, or left to the whole decode
    pos = data.draw(st.integers(0, len(wire)))
    byte = data.draw(st.integers(0, 255))
    for bad in (wire[:pos] + bytes([byte]) + wire[pos + 1 :], wire[:pos]):
        fast = m._plain_answer(bad)
        if fast is not None:
            assert fast == m._classify_message(bad)
