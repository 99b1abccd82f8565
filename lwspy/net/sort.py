"""Ordering the candidate addresses of a connect (sans-I/O).

Three steps, each a pure function, so a test can feed the RFC's own examples:

1. :func:`sort_destinations`: RFC 6724 §6, the destination rules, with lws's policy table
   (:data:`POLICY`, the RFC's default table). Each destination comes with the source
   address the host would use for it (:func:`select_source`, RFC 6724 §5, over the host's
   addresses: the netlink role's list, or without netlink the one the kernel picks), or
   None when it cannot be reached at all (no route).
2. :func:`interleave`: RFC 8305 §4, families alternate, starting with the family of the
   best destination.
3. :func:`rerank`: the CAO database's say. A stable sort by a rank per address
   (:data:`RANK_WON` a path that recently won, :data:`RANK_UNKNOWN`, :data:`RANK_DEMOTED`
   one that recently failed or lost, :data:`RANK_NO_ROUTE` no route): nothing is dropped.

lws drops a candidate with no route, and (measured on lws 5.0.99) inverts the RFC 6724
comparator and never scores IPv4, so IPv4 always goes first. Here an IPv6 destination with
a global source beats IPv4 by precedence, as the RFC says.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from functools import cmp_to_key

from lwspy._record import Record

__all__ = [
    "POLICY",
    "RANK_DEMOTED",
    "RANK_NO_ROUTE",
    "RANK_UNKNOWN",
    "RANK_WON",
    "Source",
    "interleave",
    "label",
    "order",
    "precedence",
    "rerank",
    "scope",
    "select_source",
    "sort_destinations",
]

RANK_WON = 0
RANK_UNKNOWN = 1
RANK_DEMOTED = 2
RANK_NO_ROUTE = 3

POLICY: tuple[tuple[str, int, int], ...] = (
    ("::1/128", 50, 0),
    ("::/0", 40, 1),
    ("::ffff:0:0/96", 35, 4),
    ("2002::/16", 30, 2),
    ("2001::/32", 5, 5),
    ("fc00::/7", 3, 13),
    ("::/96", 1, 3),
    ("fec0::/10", 1, 11),
    ("3ffe::/16", 1, 12),
)
"""lws's policy table (prefix, precedence, label): RFC 6724 §2.1's default."""

_MAPPED = 0xFFFF << 32
_ALL = (1 << 128) - 1


def _policy_rows() -> list[tuple[int, int, int, int]]:
    rows = []
    for prefix, prec, lab in POLICY:
        net = ipaddress.IPv6Network(prefix)
        rows.append((net.prefixlen, int(net.network_address), prec, lab))
    rows.sort(key=lambda r: -r[0])  # longest prefix first
    return [(_ALL ^ ((1 << (128 - plen)) - 1), base, prec, lab) for plen, base, prec, lab in rows]


_ROWS: list[tuple[int, int, int, int]] = []  # (mask, prefix, precedence, label), on first use


def _as6(addr: str) -> int:
    """The address as a 128-bit int, IPv4 as IPv4-mapped IPv6 (RFC 6724 §2)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if ip.version == 4:
        return _MAPPED | int(ip)
    return int(ip)


def _policy(a: int) -> tuple[int, int]:
    if not _ROWS:  # parsed on first use: importing lwspy stays cheap
        _ROWS.extend(_policy_rows())
    for mask, base, prec, lab in _ROWS:
        if a & mask == base:
            return prec, lab
    raise AssertionError("::/0 matches everything")  # pragma: no cover


def precedence(addr: str) -> int:
    """Precedence(addr) from :data:`POLICY`."""
    return _policy(_as6(addr))[0]


def label(addr: str) -> int:
    """Label(addr) from :data:`POLICY`."""
    return _policy(_as6(addr))[1]


def _scope(a: int) -> int:
    if a >> 32 == 0xFFFF:  # IPv4 (RFC 6724 §3.2): loopback and link-local are link scope
        v4 = a & 0xFFFFFFFF
        return 2 if v4 >> 24 == 127 or v4 >> 16 == 0xA9FE else 14
    if a >> 120 == 0xFF:  # multicast: its scope field
        return (a >> 112) & 0xF
    if a == 1 or a >> 118 == 0x3FA:  # ::1, fe80::/10
        return 2
    if a >> 118 == 0x3FB:  # fec0::/10 (deprecated site-local)
        return 5
    return 14


def scope(addr: str) -> int:
    """The RFC 4007 scope of ``addr`` (2 link-local, 5 site-local, 14 global, ...)."""
    return _scope(_as6(addr))


def _common_prefix(a: int, b: int, limit: int) -> int:
    diff = a ^ b
    n = 128 - diff.bit_length()
    return min(n, limit)


class Source(Record):
    """A candidate source address of the host, with what RFC 6724 §5 asks of it.

    ``prefix_len`` is the length of its subnet prefix (None: 64 for IPv6); ``ifindex`` the
    link it is on (for Rule 5, outgoing interface).
    """

    __slots__ = (  # noqa: RUF023 - declaration order is the repr order
        "address",
        "ifindex",
        "prefix_len",
        "deprecated",
        "temporary",
        "home",
        "care_of",
    )

    def __init__(
        self,
        address: str,
        ifindex: int | None = None,
        prefix_len: int | None = None,
        deprecated: bool = False,
        temporary: bool = False,
        home: bool = False,
        care_of: bool = False,
    ) -> None:
        self.address = address
        self.ifindex = ifindex
        self.prefix_len = prefix_len
        self.deprecated = deprecated
        self.temporary = temporary
        self.home = home
        self.care_of = care_of


def _v4(a: int) -> bool:
    return a >> 32 == 0xFFFF


def _plen(src: Source, a: int) -> int:
    if src.prefix_len is None:
        return 32 if _v4(a) else 64
    return src.prefix_len + (96 if _v4(a) else 0)


def select_source(
    dest: str, candidates: Sequence[Source], out_ifindex: int | None = None
) -> Source | None:
    """The source RFC 6724 §5 picks for ``dest`` among ``candidates`` (same family only).

    Rules 1 (same address), 2 (appropriate scope), 3 (avoid deprecated), 4 (home
    address), 5 (outgoing interface, when ``out_ifindex`` is known), 6 (matching label),
    7 (prefer temporary), 8 (longest matching prefix); a tie keeps the earlier candidate.
    None when no candidate has the destination's family.
    """
    d = _as6(dest)
    d4 = _v4(d)
    sd = _scope(d)
    ld = _policy(d)[1]
    best: Source | None = None
    best_a = 0
    for src in candidates:
        a = _as6(src.address)
        if _v4(a) != d4:
            continue
        if best is None or _better_source(src, a, best, best_a, d, sd, ld, out_ifindex):
            best, best_a = src, a
    return best


def _better_source(
    sa: Source, a: int, sb: Source, b: int, d: int, sd: int, ld: int, out_ifindex: int | None
) -> bool:
    """True when ``sa`` beats the incumbent ``sb`` for destination ``d``."""
    if d in (a, b):  # Rule 1: prefer same address
        return a == d and b != d
    ssa, ssb = _scope(a), _scope(b)
    if ssa != ssb:  # Rule 2: prefer appropriate scope
        if ssa < ssb:
            return ssa >= sd
        return ssb < sd
    if sa.deprecated != sb.deprecated:  # Rule 3: avoid deprecated addresses
        return sb.deprecated
    if sa.home != sb.home or sa.care_of != sb.care_of:  # Rule 4: prefer home addresses
        ha, hb = sa.home and sa.care_of, sb.home and sb.care_of
        if ha != hb:
            return ha
        if sa.home != sb.home:
            return sa.home and not sa.care_of
    if out_ifindex is not None and (sa.ifindex == out_ifindex) != (sb.ifindex == out_ifindex):
        return sa.ifindex == out_ifindex  # Rule 5: prefer outgoing interface
    la, lb = _policy(a)[1] == ld, _policy(b)[1] == ld
    if la != lb:  # Rule 6: prefer matching label
        return la
    if sa.temporary != sb.temporary:  # Rule 7: prefer temporary addresses
        return sa.temporary
    ca, cb = _common_prefix(a, d, _plen(sa, a)), _common_prefix(b, d, _plen(sb, b))
    return ca > cb  # Rule 8: use longest matching prefix


class _Dest:
    __slots__ = ("a", "lab", "plen", "prec", "s", "scope", "src", "src_lab", "src_scope", "text")

    def __init__(self, text: str, src: Source | None) -> None:
        self.text = text
        self.a = _as6(text)
        self.prec, self.lab = _policy(self.a)
        self.scope = _scope(self.a)
        self.src = src
        if src is not None:
            self.s = _as6(src.address)
            self.src_scope = _scope(self.s)
            self.src_lab = _policy(self.s)[1]
            self.plen = _plen(src, self.s)


def _cmp(x: _Dest, y: _Dest) -> int:
    """RFC 6724 §6: negative when ``x`` goes first. Rules 1-6, 8, 9; 10 is the stable sort.

    Rule 7 (prefer native transport) needs knowledge of tunnels that the host does not
    give; encapsulated prefixes (6to4, Teredo) are already low in the policy table.
    """
    xs, ys = x.src, y.src
    if (xs is None) != (ys is None):  # Rule 1: avoid unusable destinations
        return 1 if xs is None else -1
    if xs is not None and ys is not None:
        xm, ym = x.scope == x.src_scope, y.scope == y.src_scope
        if xm != ym:  # Rule 2: prefer matching scope
            return -1 if xm else 1
        if xs.deprecated != ys.deprecated:  # Rule 3: avoid deprecated addresses
            return 1 if xs.deprecated else -1
        xh, yh = xs.home and not xs.care_of, ys.home and not ys.care_of
        if xh != yh:  # Rule 4: prefer home addresses
            return -1 if xh else 1
        xl, yl = x.lab == x.src_lab, y.lab == y.src_lab
        if xl != yl:  # Rule 5: prefer matching label
            return -1 if xl else 1
    if x.prec != y.prec:  # Rule 6: prefer higher precedence
        return -1 if x.prec > y.prec else 1
    if x.scope != y.scope:  # Rule 8: prefer smaller scope
        return -1 if x.scope < y.scope else 1
    if xs is not None and ys is not None and not _v4(x.a) and not _v4(y.a):
        # Rule 9: longest matching prefix, for IPv6 only (on IPv4 it defeats round robin;
        # Go and glibc limit it the same way).
        cx = _common_prefix(x.s, x.a, x.plen)
        cy = _common_prefix(y.s, y.a, y.plen)
        if cx != cy:
            return -1 if cx > cy else 1
    return 0


def sort_destinations(dests: Sequence[tuple[str, Source | None]]) -> list[str]:
    """Destinations in RFC 6724 §6 order; each comes with its source (None: unreachable).

    >>> sort_destinations([("198.51.100.121", Source("198.51.100.117")),
    ...                    ("2001:db8:1::1", Source("fe80::1"))])
    ['198.51.100.121', '2001:db8:1::1']
    """
    items = [_Dest(text, src) for text, src in dests]
    items.sort(key=cmp_to_key(_cmp))  # stable: Rule 10, the original order
    return [d.text for d in items]


def interleave(addresses: Sequence[str], after_family: int | None = None) -> list[str]:
    """RFC 8305 §4: alternate the families, starting with the family of the first address,
    each family in its own order ("First Address Family Count" 1). Mid-race,
    ``after_family`` is the family of the attempt started last: the list then starts with
    the other family when it has an address (§4: the next attempt after one of family X
    is of the other family).

    >>> interleave(["2001:db8::1", "2001:db8::2", "198.51.100.1", "198.51.100.2"])
    ['2001:db8::1', '198.51.100.1', '2001:db8::2', '198.51.100.2']
    >>> interleave(["2001:db8::2", "198.51.100.1"], after_family=socket.AF_INET6)
    ['198.51.100.1', '2001:db8::2']
    """
    if not addresses:
        return []
    first_v6 = ":" in addresses[0]
    if after_family is not None:
        other_v6 = after_family != socket.AF_INET6
        if any((":" in a) == other_v6 for a in addresses):
            first_v6 = other_v6
    same = [a for a in addresses if (":" in a) == first_v6]
    other = [a for a in addresses if (":" in a) != first_v6]
    out: list[str] = []
    for i in range(max(len(same), len(other))):
        if i < len(same):
            out.append(same[i])
        if i < len(other):
            out.append(other[i])
    return out


def rerank(addresses: Sequence[str], rank: Callable[[str], int]) -> list[str]:
    """A stable sort by ``rank(address)`` (lower first): demotes, never drops."""
    return sorted(addresses, key=rank)


def order(
    addresses: Sequence[str],
    source_of: Callable[[str], Source | None],
    rank: Callable[[str], int],
    after_family: int | None = None,
) -> list[str]:
    """The three steps: RFC 6724 sort, RFC 8305 interleave (after an attempt of
    ``after_family``, mid-race: see :func:`interleave`), then the database's rerank (so a
    demoted address stays behind the others, whatever its family)."""
    dests = sort_destinations([(a, source_of(a)) for a in addresses])
    return rerank(interleave(dests, after_family), rank)
