"""lwspy.net.rule against pyroute2 as the reference encoder and decoder of rule messages.

Only documentation addresses: 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.fibmsg import fibmsg

from lwspy.net.nlmsg import AF_INET, AF_INET6, NLM_F_DUMP_INTR, DoneMsg, ErrorMsg
from lwspy.net.rule import (
    RTM_DELRULE,
    RTM_GETRULE,
    RTM_NEWRULE,
    RTMGRP_RULES,
    Rule,
    RuleMsg,
    RuleSet,
    decode_rules,
    rule_dump_request,
)

_PLAIN_ATTRS = {"FRA_PRIORITY", "FRA_TABLE", "FRA_PROTOCOL"}
_UNSET = 0xFFFFFFFF


def enc_rule(
    attrs: list[tuple[str, Any]],
    *,
    mtype: int = RTM_NEWRULE,
    seq: int = 0,
    pid: int = 0,
    family: int = AF_INET,
    table: int = 254,
    action: int = 1,
    **fields: int,
) -> bytes:
    """One RTM_*RULE message, encoded by pyroute2."""
    msg = fibmsg()
    msg["header"]["type"] = mtype
    msg["header"]["flags"] = 0
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    for key, value in {"family": family, "table": table, "action": action, **fields}.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def ref(data: bytes) -> dict[str, Any]:
    """What pyroute2 reads in a rule message, in lwspy's terms."""
    msg = fibmsg(data)
    msg.decode()
    attrs = dict(msg["attrs"])
    plain = (
        msg["action"] == 1
        and not (msg["dst_len"] or msg["src_len"] or msg["tos"] or msg["flags"])
        and all(
            name in _PLAIN_ATTRS
            or (name in ("FRA_SUPPRESS_PREFIXLEN", "FRA_SUPPRESS_IFGROUP") and value == _UNSET)
            for name, value in msg["attrs"]
        )
    )
    return {
        "family": msg["family"],
        "priority": attrs.get("FRA_PRIORITY", 0),
        "table": attrs.get("FRA_TABLE", msg["table"]),
        "action": msg["action"],
        "plain": plain,
    }


def ours(rule: Rule) -> dict[str, Any]:
    return {
        "family": rule.family,
        "priority": rule.priority,
        "table": rule.table,
        "action": rule.action,
        "plain": rule.plain,
    }


@st.composite
def rule_message(draw: st.DrawFn) -> bytes:
    family = draw(st.sampled_from((AF_INET, AF_INET6)))
    attrs: list[tuple[str, Any]] = []
    fields: dict[str, int] = {}
    if draw(st.booleans()):
        attrs.append(("FRA_PRIORITY", draw(st.integers(0, 0xFFFFFFFF))))
    if draw(st.booleans()):
        attrs.append(("FRA_TABLE", draw(st.integers(0, 0xFFFFFFFF))))
    if draw(st.booleans()):
        attrs.append(("FRA_PROTOCOL", draw(st.integers(0, 255))))
    for name in ("FRA_SUPPRESS_PREFIXLEN", "FRA_SUPPRESS_IFGROUP"):
        if draw(st.booleans()):
            attrs.append((name, draw(st.sampled_from((_UNSET, 0, 1, 64)))))
    if draw(st.integers(0, 3)) == 0:
        src = "198.51.100.0" if family == AF_INET else "2001:db8::"
        attrs.append(("FRA_SRC", src))
        fields["src_len"] = 24 if family == AF_INET else 32
    if draw(st.integers(0, 3)) == 0:
        attrs.append(("FRA_FWMARK", draw(st.integers(0, 0xFFFFFFFF))))
    if draw(st.integers(0, 5)) == 0:
        attrs.append(("FRA_IIFNAME", "va"))
    if draw(st.integers(0, 5)) == 0:
        fields["tos"] = 0x10
    if draw(st.integers(0, 5)) == 0:
        fields["flags"] = 2  # FIB_RULE_INVERT ("not")
    action = draw(st.sampled_from((1, 1, 1, 2, 6, 7, 8)))
    attrs = draw(st.permutations(attrs))
    mtype = draw(st.sampled_from((RTM_NEWRULE, RTM_DELRULE)))
    return enc_rule(attrs, mtype=mtype, family=family, action=action, table=254, **fields)


@given(rule_message())
def test_rule_fields_agree_with_pyroute2(data: bytes) -> None:
    records = decode_rules(data)
    assert len(records) == 1
    rec = records[0]
    assert isinstance(rec, RuleMsg)
    assert ours(rec.rule) == ref(data)
    assert rec.rule.key == data[16:]  # the body is the identity


@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    for rec in decode_rules(data):
        assert isinstance(rec, (RuleMsg, DoneMsg, ErrorMsg))


@given(rule_message(), st.data())
def test_a_truncated_or_damaged_message_is_skipped_not_raised(
    data: bytes, d: st.DataObject
) -> None:
    cut = d.draw(st.integers(16, len(data) - 1))
    broken = struct.pack("=I", cut) + data[4:cut]  # a shorter message, its attributes cut
    for rec in decode_rules(broken):
        assert isinstance(rec, RuleMsg)
    if len(data) > 28:
        bad = bytearray(data)
        struct.pack_into("=H", bad, 28, 2)  # the first attribute's length below its header
        assert decode_rules(bytes(bad)) == []


def test_malformed_messages_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = enc_rule([("FRA_PRIORITY", 5)])
    short = struct.pack("=IHHII", 20, RTM_NEWRULE, 0, 0, 0) + bytes(4)
    wrong_size = enc_rule([("FRA_FWMARK", 1)])
    wrong_size = wrong_size[:28] + struct.pack("=HH", 6, 6) + wrong_size[32:]  # FRA_PRIORITY
    header_cut = struct.pack("=IHHII", 30, RTM_NEWRULE, 0, 0, 0) + bytes(14)
    with caplog.at_level(logging.DEBUG, logger="lwspy"):
        records = decode_rules(short + good + wrong_size + header_cut)
    assert [ours(r.rule) for r in records if isinstance(r, RuleMsg)] == [ref(good)]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "too short" in said and "size 6" in said and "truncated" in said
    # a header whose length cannot be trusted ends the walk
    assert decode_rules(struct.pack("=IH", 8, RTM_NEWRULE) + bytes(10) + good) == []
    assert decode_rules(bytearray(good))[0] == decode_rules(memoryview(good))[0]


def test_done_error_and_other_types() -> None:
    done = struct.pack("=IHHIIi", 20, 3, NLM_F_DUMP_INTR, 7, 9, 0)
    old_done = struct.pack("=IHHII", 16, 3, 0, 8, 9)
    error = struct.pack("=IHHIIi", 36, 2, 0, 7, 9, -1) + bytes(16)
    link = struct.pack("=IHHII", 32, 16, 0, 0, 0) + bytes(16)
    records = decode_rules(link + done + old_done + error)
    assert records[0] == DoneMsg(7, 9, NLM_F_DUMP_INTR, 0) and records[0].interrupted
    assert records[1] == DoneMsg(8, 9, 0, 0)
    assert records[2] == ErrorMsg(7, 9, 1)


def test_the_dump_request() -> None:
    req = rule_dump_request(11)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", req)
    assert (length, mtype, seq, pid) == (len(req), RTM_GETRULE, 11, 0)
    assert flags == 0x301  # REQUEST | DUMP
    msg = fibmsg(req)
    msg.decode()
    assert msg["family"] == 0


def test_the_hosts_own_rules_decode_as_pyroute2_reads_them() -> None:
    """Read-only: one rule dump of this host's namespace, every rule compared."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.settimeout(5)
    seen = 0
    try:
        sock.bind((0, 0))
        sock.send(rule_dump_request(1))
        done = False
        while not done:
            data = sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, off)
                one = data[off : off + length]
                if mtype == RTM_NEWRULE:
                    (rec,) = decode_rules(one)
                    assert isinstance(rec, RuleMsg) and ours(rec.rule) == ref(one)
                    seen += 1
                done = done or mtype == 3
                off += (length + 3) & ~3
    finally:
        sock.close()
    assert seen >= 2


def _rule(prio: int, table: int, family: int = AF_INET, **kw: Any) -> Rule:
    attrs: list[tuple[str, Any]] = [("FRA_TABLE", table), ("FRA_SUPPRESS_PREFIXLEN", _UNSET)]
    if prio:
        attrs.append(("FRA_PRIORITY", prio))
    attrs.extend(kw.pop("attrs", []))
    rec = decode_rules(enc_rule(attrs, family=family, **kw))[0]
    assert isinstance(rec, RuleMsg)
    return rec.rule


def _defaults() -> list[Rule]:
    return [
        _rule(0, 255),
        _rule(32766, 254),
        _rule(32767, 253),
        _rule(0, 255, AF_INET6),
        _rule(32766, 254, AF_INET6),
        _rule(32767, 253, 128),  # RTNL_FAMILY_IPMR: not the unicast rules
    ]


def test_ruleset_says_default_only_for_exactly_the_kernels_defaults() -> None:
    rules = RuleSet()
    assert not rules.known and len(rules) == 0
    assert not rules.default(AF_INET) and not rules.default(AF_INET6)
    assert not rules.apply(RuleMsg(RTM_NEWRULE, 0, 0, _rule(5, 100)))  # nothing loaded yet
    rules.load(_defaults())
    assert rules.known and len(rules) == 5
    assert rules.default(AF_INET) and rules.default(AF_INET6) and not rules.default(7)
    wg = _rule(32764, 254, attrs=[("FRA_SUPPRESS_PREFIXLEN", 0)])
    assert wg.table == 254 and not wg.plain
    assert rules.apply(RuleMsg(RTM_NEWRULE, 0, 0, wg))
    assert not rules.apply(RuleMsg(RTM_NEWRULE, 0, 0, wg))  # already there
    assert not rules.default(AF_INET) and rules.default(AF_INET6)
    assert rules.apply(RuleMsg(RTM_DELRULE, 0, 0, wg))
    assert not rules.apply(RuleMsg(RTM_DELRULE, 0, 0, wg))
    assert rules.default(AF_INET)
    # a default rule deleted: main is no longer looked up, not the default case
    main6 = _rule(32766, 254, AF_INET6)
    assert rules.apply(RuleMsg(RTM_DELRULE, 0, 0, main6))
    assert not rules.default(AF_INET6)
    # the same (priority, table) but with a selector is no default rule
    rules.apply(RuleMsg(RTM_NEWRULE, 0, 0, _rule(32766, 254, AF_INET6, attrs=[("FRA_FWMARK", 1)])))
    assert not rules.default(AF_INET6)
    assert not rules.apply(RuleMsg(RTM_NEWRULE, 0, 0, _rule(1, 1, 129)))  # IP6MR: ignored
    assert RTMGRP_RULES == 0x80 | 0x40000
