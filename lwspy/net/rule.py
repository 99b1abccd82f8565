"""Policy routing rules (``ip rule``): the wire decode and the one question lwspy asks.

Sans-I/O, like :mod:`lwspy.net.nlmsg`: the netlink role reads ``RTM_NEWRULE`` /
``RTM_DELRULE`` messages (a dump at start, then events of the IPv4 and IPv6 rule groups)
and feeds them to :class:`RuleSet`, which answers :meth:`RuleSet.default`: does this
family have exactly the kernel's default rules (IPv4: ``0: lookup local``,
``32766: lookup main``, ``32767: lookup default``; IPv6: the first two)? Then a lookup
in tables local and main is what the kernel does, and the role decides culls from its
own table. Any other rule set (wg-quick's ``suppress_prefixlength``, ``from`` rules,
fwmark, VRF) is not evaluated here: the role asks the kernel instead.

A rule's identity is its message body, which the kernel writes the same way in a dump,
a NEWRULE and the DELRULE that removes it (``fib_nl_fill_rule``).

>>> decode_rules(rule_dump_request(1))  # a request is no record
[]
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Final

from lwspy.net.nlmsg import (
    _HDR,
    _HDRLEN,
    _U32,
    AF_INET,
    AF_INET6,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RT_TABLE_DEFAULT,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    DoneMsg,
    ErrorMsg,
    _attributes,
    _done,
    _error,
    _Malformed,
)

__all__ = [
    "RTMGRP_RULES",
    "Rule",
    "RuleMsg",
    "RuleSet",
    "decode_rules",
    "rule_dump_request",
]

log = logging.getLogger("lwspy")

RTM_NEWRULE: Final = 32
RTM_DELRULE: Final = 33
RTM_GETRULE: Final = 34

# Rule attributes (linux/fib_rules.h); the ones a default rule may carry.
FRA_SUPPRESS_IFGROUP: Final = 13
FRA_SUPPRESS_PREFIXLEN: Final = 14
FRA_PRIORITY: Final = 6
FRA_TABLE: Final = 15
FRA_PROTOCOL: Final = 21
FR_ACT_TO_TBL: Final = 1
_UNSET: Final = 0xFFFFFFFF  # suppress_prefixlength / suppress_ifgroup not set

RTMGRP_IPV4_RULE: Final = 1 << (8 - 1)  # RTNLGRP_IPV4_RULE
RTMGRP_IPV6_RULE: Final = 1 << (19 - 1)  # RTNLGRP_IPV6_RULE
RTMGRP_RULES: Final = RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE
"""The groups to ``bind()`` with to hear every IPv4 and IPv6 rule change."""

DEFAULT_RULES: Final = {
    AF_INET: frozenset({(0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN), (32767, RT_TABLE_DEFAULT)}),
    AF_INET6: frozenset({(0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN)}),
}
"""The ``(priority, table)`` rules a namespace starts with, per family."""

# fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags
_FRH = struct.Struct("=BBBBBBBBI")
_FRH_END: Final = 28


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``family``, ``priority``, ``table`` (``FRA_TABLE`` when present),
    ``action`` (``FR_ACT_*``); ``plain`` says it selects every packet and does nothing
    but look up its table (the form of the default rules); ``key`` is its identity."""

    family: int
    priority: int
    table: int
    action: int
    plain: bool
    key: bytes


@dataclass(frozen=True, slots=True)
class RuleMsg:
    """An ``RTM_NEWRULE`` / ``RTM_DELRULE`` message."""

    type: int
    seq: int
    pid: int
    rule: Rule


RuleRecord = RuleMsg | DoneMsg | ErrorMsg


def decode_rules(buf: bytes | bytearray | memoryview) -> list[RuleRecord]:
    """Decode the rule messages, DONE and ERROR of one datagram, in order.

    Never raises: a truncated or malformed message is skipped (debug log), and one whose
    length cannot be trusted ends the walk. Other message types are ignored.
    """
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    out: list[RuleRecord] = []
    n = len(buf)
    off = 0
    while off + _HDRLEN <= n:
        length, mtype, _, seq, pid = _HDR.unpack_from(buf, off)
        end = off + length
        if length < _HDRLEN or end > n:
            break
        if mtype in (RTM_NEWRULE, RTM_DELRULE):
            rule = _rule(buf, off, end)
            if isinstance(rule, Rule):
                out.append(RuleMsg(mtype, seq, pid, rule))
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("netlink: skipped rule message at offset %d: %s", off, rule)
        elif mtype == NLMSG_DONE:
            out.append(_done(buf, off, length))
        elif mtype == NLMSG_ERROR and length >= _HDRLEN + 4:
            out.append(_error(buf, off))
        off += (length + 3) & ~3
    return out


def _rule(buf: bytes, off: int, end: int) -> Rule | str:
    """One rule message, or why it was skipped."""
    if end - off < _FRH_END:
        return "too short"
    family, dst_len, src_len, tos, table, _, _, action, flags = _FRH.unpack_from(buf, off + _HDRLEN)
    priority = 0
    plain = not (dst_len or src_len or tos or flags) and action == FR_ACT_TO_TBL
    try:
        for a, alen, atype in _attributes(buf, off + _FRH_END, end):
            if atype in (FRA_PRIORITY, FRA_TABLE, FRA_SUPPRESS_PREFIXLEN, FRA_SUPPRESS_IFGROUP):
                if alen != 8:
                    return f"attribute {atype} size {alen}"
                val = _U32.unpack_from(buf, a + 4)[0]
                if atype == FRA_PRIORITY:
                    priority = val
                elif atype == FRA_TABLE:
                    table = val
                elif val != _UNSET:
                    plain = False  # suppress_prefixlength / suppress_ifgroup: wg-quick's rule
            elif atype != FRA_PROTOCOL:
                plain = False  # a selector (from, to, iif, oif, fwmark, uid, ...) or a goto
    except _Malformed as bad:
        return str(bad)
    return Rule(family, priority, table, action, plain, buf[off + _HDRLEN : end])


def rule_dump_request(seq: int) -> bytes:
    """An ``RTM_GETRULE`` dump request for the rules of every family.

    >>> len(rule_dump_request(3))
    28
    """
    return _HDR.pack(_FRH_END, RTM_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + bytes(12)


class RuleSet:
    """The kernel's IPv4 and IPv6 rules, as far as lwspy needs them.

    >>> rules = RuleSet()
    >>> rules.default(AF_INET)  # nothing known yet: not the default case
    False
    """

    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: dict[int, dict[bytes, Rule]] | None = None  # None: not dumped yet

    @property
    def known(self) -> bool:
        """True once a dump has been loaded."""
        return self._rules is not None

    def load(self, rules: list[Rule]) -> None:
        """Take a complete dump's rules as the kernel's."""
        self._rules = {AF_INET: {}, AF_INET6: {}}
        for rule in rules:
            self._apply(RTM_NEWRULE, rule)

    def apply(self, msg: RuleMsg) -> bool:
        """Apply an event; True if it changed the rules of its family."""
        if self._rules is None:
            return False
        return self._apply(msg.type, msg.rule)

    def _apply(self, mtype: int, rule: Rule) -> bool:
        assert self._rules is not None
        family = self._rules.get(rule.family)
        if family is None:  # multicast routing rules (RTNL_FAMILY_IPMR, ...)
            return False
        if mtype == RTM_NEWRULE:
            if rule.key in family:
                return False
            family[rule.key] = rule
            return True
        return family.pop(rule.key, None) is not None

    def default(self, family: int) -> bool:
        """True when ``family`` has exactly the kernel's default rules (and they are
        known): then lookup in tables local and main is the kernel's whole decision."""
        if self._rules is None:
            return False
        rules = self._rules.get(family)
        if rules is None:
            return False
        want = DEFAULT_RULES[family]
        plain = {(r.priority, r.table) for r in rules.values() if r.plain}
        return len(rules) == len(want) and plain == want

    def __len__(self) -> int:
        return sum(map(len, self._rules.values())) if self._rules is not None else 0
