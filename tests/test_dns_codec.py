"""The DNS message codec against dnspython: encode with dnspython, decode with lwspy, back."""

from __future__ import annotations

import ipaddress
import struct

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from lwspy.net import dns as d

# -- strategies: dnspython messages ----------------------------------------------------

labels_st = st.lists(st.binary(min_size=1, max_size=20), min_size=0, max_size=5)


@st.composite
def dns_names(draw: st.DrawFn) -> dns.name.Name:
    # A few fixed suffixes so that compression pointers are really used.
    suffix = draw(st.sampled_from([(), (b"test",), (b"example", b"test"), (b"Lab", b"TEST")]))
    labels = tuple(draw(labels_st)) + suffix
    return dns.name.Name((*labels, b""))


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ttls = st.integers(0, 2**32 - 1)


@st.composite
def rrsets(draw: st.DrawFn) -> dns.rrset.RRset:
    name = draw(dns_names())
    kind = draw(st.sampled_from(["A", "AAAA", "CNAME", "NS", "PTR", "MX", "SOA", "TXT"]))
    if kind == "A":
        texts = draw(st.lists(ipv4, min_size=1, max_size=4, unique=True))
    elif kind == "AAAA":
        texts = draw(st.lists(ipv6, min_size=1, max_size=4, unique=True))
    elif kind in ("CNAME", "NS", "PTR"):
        texts = [draw(dns_names()).to_text()]
    elif kind == "MX":
        texts = [f"{draw(st.integers(0, 65535))} {draw(dns_names()).to_text()}"]
    elif kind == "SOA":
        nums = " ".join(str(draw(st.integers(0, 2**32 - 1))) for _ in range(5))
        texts = [f"{draw(dns_names()).to_text()} {draw(dns_names()).to_text()} {nums}"]
    else:
        words = draw(st.lists(st.text("abc xyz", min_size=0, max_size=30), min_size=1, max_size=3))
        texts = [" ".join(f'"{w}"' for w in words)]
    return dns.rrset.from_text_list(name, draw(ttls), "IN", kind, texts)


@st.composite
def dns_messages(draw: st.DrawFn) -> dns.message.Message:
    m = dns.message.Message(id=draw(st.integers(0, 65535)))
    m.flags = draw(st.integers(0, 0xFFFF)) & 0x87F0  # QR, AA, TC, RD, RA, Z, AD, CD
    m.set_opcode(draw(st.sampled_from([0, 1, 2, 4])))
    m.set_rcode(draw(st.sampled_from([0, 1, 2, 3, 4, 5])))
    if draw(st.booleans()):
        qtype = draw(st.sampled_from([1, 28, 15, 6]))
        m.question.append(dns.rrset.RRset(draw(dns_names()), dns.rdataclass.IN, qtype))
    for section in (m.answer, m.authority, m.additional):
        for rrset in draw(st.lists(rrsets(), max_size=3)):
            if not any(r.name == rrset.name and r.rdtype == rrset.rdtype for r in section):
                section.append(rrset)
    if draw(st.booleans()):
        m.use_edns(0, draw(st.integers(0, 0xFFFF)) & 0x8000, draw(st.integers(512, 65535)))
    return m


def rr_list(section: list[dns.rrset.RRset]) -> list[tuple[object, ...]]:
    """dnspython's section as (labels, type, class, ttl, rdata wire) per record."""
    out = []
    for rrset in section:
        for rdata in rrset:
            wire = rdata.to_wire()  # uncompressed
            out.append((rrset.name.labels[:-1], rrset.rdtype, rrset.rdclass, rrset.ttl, wire))
    return out


def lw_list(section: list[d.ResourceRecord]) -> list[tuple[object, ...]]:
    return [(rr.name, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in section]


def wire_of(m: dns.message.Message) -> bytes:
    try:
        return m.to_wire()
    except dns.exception.DNSException:
        assume(False)
        raise  # pragma: no cover


@given(dns_messages())
def test_decode_matches_dnspython(original: dns.message.Message) -> None:
    wire = wire_of(original)
    # Compared with what dnspython reads back: its compression matches names ignoring
    # case, so the wire's spelling of a compressed suffix may differ from the original.
    m = dns.message.from_wire(wire)
    msg = d.decode_message(wire)
    assert msg.id == m.id
    assert msg.flags == struct.unpack_from("!H", wire, 2)[0]
    assert msg.opcode == m.opcode()
    assert msg.rcode == m.rcode()
    assert msg.qr == bool(m.flags & dns.flags.QR)
    assert msg.tc == bool(m.flags & dns.flags.TC)
    assert [(q.name, q.qtype, q.qclass) for q in msg.questions] == [
        (r.name.labels[:-1], r.rdtype, r.rdclass) for r in m.question
    ]
    assert lw_list(msg.answers) == rr_list(m.answer)
    assert lw_list(msg.authority) == rr_list(m.authority)
    assert lw_list(msg.additional) == rr_list(m.additional)
    if m.edns < 0:
        assert msg.edns is None
    else:
        assert msg.edns is not None
        assert (msg.edns.payload, msg.edns.version, msg.edns.flags) == (
            m.payload,
            m.edns,
            m.ednsflags & 0xFFFF,
        )
    # Decoded values mean what dnspython says they mean.
    for rr, rrset_rdata in zip(msg.answers, [(s, r) for s in m.answer for r in s], strict=True):
        rrset, rdata = rrset_rdata
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            assert ipaddress.ip_address(rr.value) == ipaddress.ip_address(rdata.address)
        elif rrset.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.PTR):
            assert rr.value == rdata.target.labels[:-1]
        elif rrset.rdtype == dns.rdatatype.MX:
            assert rr.value == (rdata.preference, rdata.exchange.labels[:-1])
        elif rrset.rdtype == dns.rdatatype.SOA:
            assert isinstance(rr.value, d.Soa)
            assert (rr.value.mname, rr.value.serial, rr.value.minimum) == (
                rdata.mname.labels[:-1],
                rdata.serial,
                rdata.minimum,
            )
        else:
            assert rr.value is None


@given(dns_messages())
def test_encode_back_to_dnspython(m: dns.message.Message) -> None:
    wire = wire_of(m)
    again = d.encode_message(d.decode_message(wire))
    back = dns.message.from_wire(again)
    assert back == m
    assert rr_list(back.answer) == rr_list(dns.message.from_wire(wire).answer)  # TTLs too
    assert back.id == m.id and back.flags == m.flags
    assert d.decode_message(again) == d.decode_message(wire)


@given(st.integers(0, 65535), dns_names(), st.sampled_from([d.TYPE_A, d.TYPE_AAAA]))
def test_query_is_what_dnspython_reads(qid: int, name: dns.name.Name, qtype: int) -> None:
    labels = name.labels[:-1]
    assume(labels)
    q = dns.message.from_wire(d.make_query(qid, labels, qtype))
    assert q.id == qid
    assert q.flags & dns.flags.RD and not q.flags & dns.flags.QR
    assert q.question[0].name == name and q.question[0].rdtype == qtype
    assert q.edns == 0 and q.payload == d.EDNS_PAYLOAD == 1232


# -- malformed input -------------------------------------------------------------------


@given(st.binary(max_size=600))
@example(b"")
@example(b"\x00" * 11)
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        msg = d.decode_message(data)
    except d.DnsFormatError:
        return
    # What decodes re-encodes to something that decodes the same.
    msg.truncated_sections = False
    assert d.decode_message(d.encode_message(msg)) == msg


@given(dns_messages(), st.data())
def test_damaged_messages_never_raise_anything_else(
    m: dns.message.Message, data: st.DataObject
) -> None:
    wire = bytearray(wire_of(m))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    for blob in (bytes(wire), bytes(wire[:cut])):
        try:
            msg = d.decode_message(blob)
        except d.DnsFormatError:
            continue
        msg.truncated_sections = False  # re-encoded, it holds only what was decoded
        assert d.decode_message(d.encode_message(msg)) == msg


def header(qd: int = 1, an: int = 0, flags: int = 0x8180) -> bytes:
    return struct.pack("!HHHHHH", 1, flags, qd, an, 0, 0)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (header() + b"\xc0\x0c\x00\x01\x00\x01", "compression pointer loop"),  # points at itself
        (header() + b"\x01a\xc0\x0c\x00\x01\x00\x01", "compression pointer loop"),  # a -> a
        (header() + b"\xc0\x20\x00\x01\x00\x01", "compression pointer loop"),  # forwards
        (header() + b"\x01a\xc0", "past the end"),
        (header() + b"\x41" + b"a" * 65, "unknown label type"),
        (header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "longer than 255"),
        (header() + b"\x00\x00\x01", "past the end"),
        (header(qd=0, an=1) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x05abcde", "address"),
        (header(qd=0, an=1) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x05abc", "runs past"),
        (header(qd=0, an=1) + b"\x00\x00\x29\x02\x00\x00\x00\x00\x00\x00\x00", "OPT record"),
        (header(qd=0) + b"\x00", "after the last record"),
        (b"\x00" * 11, "shorter than a DNS header"),
    ],
)
def test_malformed_examples(wire: bytes, why: str) -> None:
    with pytest.raises(d.DnsFormatError, match=why):
        d.decode_message(wire)


def test_pointer_chains_backwards_are_fine() -> None:
    # name at 12 "a.test", at 24 "b" + ptr 12, at 32 "c" + ptr 24: c.b.a.test
    body = b"\x01a\x04test\x00" + b"\x00\x01\x00\x01"
    body2 = b"\x01b\xc0\x0c\x00\x01\x00\x01"
    body3 = b"\x01c\xc0\x18\x00\x01\x00\x01"
    msg = d.decode_message(header(qd=3) + body + body2 + body3)
    assert [q.name for q in msg.questions] == [
        (b"a", b"test"),
        (b"b", b"a", b"test"),
        (b"c", b"b", b"a", b"test"),
    ]


def test_truncated_answer_keeps_its_question() -> None:
    q = d.make_query(9, (b"big", b"test"), d.TYPE_A)
    resp = bytearray(q[:-11])  # drop the OPT record
    resp[2:4] = struct.pack("!H", 0x8380)  # QR RD RA TC
    resp[6:8] = struct.pack("!H", 5)  # claims 5 answers, has none
    msg = d.decode_message(bytes(resp))
    assert msg.tc and msg.truncated_sections and msg.questions[0].name == (b"big", b"test")
    resp[2:4] = struct.pack("!H", 0x8180)  # the same without TC is malformed
    with pytest.raises(d.DnsFormatError):
        d.decode_message(bytes(resp))


def test_two_opt_records_and_non_root_opt() -> None:
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    wire = struct.pack("!HHHHHH", 1, 0x8180, 0, 0, 0, 2) + opt + opt
    with pytest.raises(d.DnsFormatError, match="more than one OPT"):
        d.decode_message(wire)
    wire = struct.pack("!HHHHHH", 1, 0x8180, 0, 0, 0, 1) + b"\x01a\x00" + opt[1:]
    with pytest.raises(d.DnsFormatError, match="non-root"):
        d.decode_message(wire)


# -- names -----------------------------------------------------------------------------


def test_names() -> None:
    assert d.name_labels("a.B.test.") == (b"a", b"B", b"test")
    assert d.name_text((b"a.b", b" x", b"\\")) == "a\\.b.\\032x.\\\\"
    assert d.name_text(()) == "."
    for bad in ("", ".", "a..b", "é.test", "a" * 64, ".".join(["a" * 60] * 5)):
        with pytest.raises(ValueError):
            d.name_labels(bad)
    assert d.decode_name(d.encode_name((b"x", b"y")), 0) == ((b"x", b"y"), 5)


@given(dns_names())
def test_name_text_matches_dnspython(name: dns.name.Name) -> None:
    assert d.name_text(name.labels[:-1]) == (name.to_text(omit_final_dot=True) or ".")


def test_record_make_and_bad_value() -> None:
    rr = d.ResourceRecord.make((b"a",), d.TYPE_MX, 5, (10, (b"mx", b"test")))
    assert rr.rdata == b"\x00\x0a\x02mx\x04test\x00"
    with pytest.raises(ValueError):
        d.ResourceRecord.make((b"a",), d.TYPE_A, 5, None)
    with pytest.raises(ValueError, match="65535"):
        d.encode_message(d.Message(answers=[d.ResourceRecord((b"a",), 99, 1, 0, b"x" * 70000)]))


def test_a_name_follows_at_most_max_pointers_compression_pointers() -> None:
    # A chain of pointers, each strictly backwards: legal one by one, but a 64 KiB message
    # of such names made every name walk thousands of them (a fuzzer found 2 s per message).
    def chain(hops: int) -> bytes:
        body = bytearray(b"\x03lab\x00")  # offset 12: the name "lab"
        target = 12
        for _ in range(hops):  # each pointer points at the one before it (the first: "lab")
            body += bytes((0xC0 | (target >> 8), target & 0xFF))
            target = 12 + len(body) - 2
        header = bytes(12)
        return header + bytes(body)

    ok = chain(d.MAX_POINTERS)
    labels, _ = d.decode_name(ok, len(ok) - 2)
    assert labels == (b"lab",)
    bad = chain(d.MAX_POINTERS + 1)
    with pytest.raises(d.DnsFormatError, match="too many compression pointers"):
        d.decode_name(bad, len(bad) - 2)
