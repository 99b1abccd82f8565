"""The DNS resolver's sans-I/O half: the message codec, resolv.conf, the query machine, the cache.

Nothing here opens a socket or reads a clock: bytes and times go in, decisions come out.
The driver in :mod:`lwspy.core.resolver` owns the sockets (wsi of :mod:`lwspy.roles.udp`)
and the timers.

Theory of operation of one query (:class:`QueryMachine`, one name and one type, AAAA or
A; a resolve runs one per family, in parallel):

* The machine holds the candidate names (the search list applied to the name, RFC 1535 /
  glibc ``ndots`` order) and the servers of resolv.conf, tried ``attempts`` rounds over.
* Every input is first turned into one :class:`QEvent` (a datagram becomes ANSWER,
  NEGATIVE, CNAME, TRUNCATED, SERVER_FAILED, MALFORMED, FATAL or IGNORED; a timer
  TIMEOUT; a socket error UNREACHABLE). Then :data:`TRANSITIONS` says what that event
  does in the current :class:`QState`; the steps are the only code that changes state.
* Each step returns at most one action for the driver: :class:`Send` ("send this to
  server N over UDP or TCP, on a fresh socket") or :class:`Done` (the answer, with the
  TTL it may be cached for). After DONE every input is ignored.
* An answer is believed only if it matches what was sent: the id, and the question
  (name case-insensitively, type, class). The source is checked by the driver's
  connected socket. A mismatch is IGNORED (counted for the final detail text); a
  malformed message with the right id makes the machine try the next server.

Everything that changes the machine's state lives in this file's :class:`QueryMachine`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import Enum
from socket import AF_INET, AF_INET6, inet_ntop
from typing import cast

from lwspy._record import Record

__all__ = [
    "CLASS_IN",
    "EDNS_PAYLOAD",
    "MAX_CNAME_CHAIN",
    "TRANSITIONS",
    "TYPE_A",
    "TYPE_AAAA",
    "TYPE_CNAME",
    "TYPE_MX",
    "TYPE_NS",
    "TYPE_OPT",
    "TYPE_PTR",
    "TYPE_SOA",
    "DnsAnswer",
    "DnsCache",
    "DnsFormatError",
    "Done",
    "Edns",
    "Labels",
    "Message",
    "QEvent",
    "QState",
    "QueryMachine",
    "Question",
    "ResolvConf",
    "ResourceRecord",
    "Send",
    "Soa",
    "decode_message",
    "decode_name",
    "encode_message",
    "encode_name",
    "make_query",
    "name_labels",
    "name_text",
    "parse_nameserver",
    "parse_resolv_conf",
    "search_names",
]

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_OPT = 41
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3
_RCODE_NAMES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

EDNS_PAYLOAD = 1232
"""The UDP payload size announced in EDNS0 (the DNS flag day 2020 value)."""

MAX_CNAME_CHAIN = 8
"""The most CNAMEs followed for one name before the answer is refused as a loop."""

MAX_TTL = 86400.0
"""No answer is cached longer than a day, whatever its TTL."""

MAX_NEGATIVE_TTL = 10800.0
"""RFC 2308 §5: negative answers are cached at most three hours."""

_QR = 0x8000
_TC = 0x0200
_RD = 0x0100
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QTAIL = struct.Struct("!HH")
_SOA_TAIL = struct.Struct("!IIIII")
_COUNTS = struct.Struct("!HHHHH")  # flags and the four counts, after the id
_PTR_RR = struct.Struct("!HHHIH")  # a record whose name is a 2-byte pointer

Labels = tuple[bytes, ...]
"""A domain name as its labels, without the root label: ``(b"www", b"example", b"test")``."""


class DnsFormatError(ValueError):
    """A DNS message (or name) is malformed; the text says how."""


# -- names -----------------------------------------------------------------------------


def name_labels(name: str) -> Labels:
    """The labels of a host name (a trailing dot is allowed); ValueError if it cannot be one.

    >>> name_labels("www.Example.test.")
    (b'www', b'Example', b'test')
    """
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise ValueError(f"{name!r} is not a host name")
    try:
        labels = tuple(text.encode("ascii").split(b"."))
    except UnicodeEncodeError:
        raise ValueError(f"{name!r} is not an ASCII host name") from None
    encode_name(labels)  # length checks
    return labels


_ESCAPED = frozenset(b'"().;\\@$')
_LENGTH_BYTE = [bytes((n,)) for n in range(64)]


def _label_text(label: bytes) -> str:
    out = []
    for b in label:
        if b in _ESCAPED:
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def name_text(labels: Labels) -> str:
    """A name as text, with dnspython's escapes for odd bytes (``\\.``, ``\\032``); root is ".".

    >>> name_text((b"a.b", b"test"))
    'a\\\\.b.test'
    """
    if not labels:
        return "."
    return ".".join(_label_text(label) for label in labels)


def encode_name(labels: Labels) -> bytes:
    """The uncompressed wire form of a name; ValueError for an empty or too long label/name."""
    for label in labels:
        if not 1 <= len(label) <= 63:
            raise ValueError(f"a DNS label must be 1..63 bytes, not {len(label)}")
    wire = b"".join([_LENGTH_BYTE[len(label)] + label for label in labels]) + b"\0"
    if len(wire) > 255:
        raise ValueError(f"a DNS name must be at most 255 bytes on the wire, not {len(wire)}")
    return wire


MAX_POINTERS = 32
"""The most compression pointers one name may follow (real compressors chain a few)."""


def decode_name(data: bytes, off: int) -> tuple[Labels, int]:
    """Decode the (possibly compressed) name at ``off``; returns it and the offset after it.

    Every compression pointer must point below everything read so far for this name
    (as dnspython requires), so a pointer loop cannot make it spin: DnsFormatError. A
    name follows at most :data:`MAX_POINTERS` pointers, so a chain of pointers cannot
    make every name of a 64 KiB message walk thousands of them.
    """
    labels: list[bytes] = []
    end = -1
    lowest = off  # RFC 1035 §4.1.4, hardened: pointers only go strictly backwards
    wire = 1
    hops = 0
    n = len(data)
    while True:
        if off >= n:
            raise DnsFormatError("name runs past the end of the message")
        length = data[off]
        if length >= 0xC0:
            if off + 1 >= n:
                raise DnsFormatError("name runs past the end of the message")
            target = ((length & 0x3F) << 8) | data[off + 1]
            if end < 0:
                end = off + 2
            if target >= lowest:
                raise DnsFormatError("compression pointer loop")
            hops += 1
            if hops > MAX_POINTERS:
                raise DnsFormatError("too many compression pointers in one name")
            lowest = off = target
            continue
        if length & 0xC0:
            raise DnsFormatError(f"unknown label type 0x{length & 0xC0:02x}")
        off += 1
        if length == 0:
            return tuple(labels), (end if end >= 0 else off)
        if off + length > n:
            raise DnsFormatError("name runs past the end of the message")
        wire += length + 1
        if wire > 255:
            raise DnsFormatError("name longer than 255 bytes")
        labels.append(data[off : off + length])
        off += length


_lower = bytes.lower


def _same_name(a: Labels, b: Labels) -> bool:
    """DNS names compare ASCII case-insensitively (RFC 4343)."""
    return a == b or (len(a) == len(b) and tuple(map(_lower, a)) == tuple(map(_lower, b)))


def _key(labels: Labels) -> Labels:
    return tuple(map(_lower, labels))


# -- messages --------------------------------------------------------------------------


class Question(Record):
    """One entry of the question section."""

    __slots__ = ("name", "qtype", "qclass")  # noqa: RUF023 - wire order

    def __init__(self, name: Labels, qtype: int, qclass: int = CLASS_IN) -> None:
        self.name = name
        self.qtype = qtype
        self.qclass = qclass


class Soa(Record):
    """The data of an SOA record (RFC 1035 §3.3.13)."""

    __slots__ = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")  # noqa: RUF023

    def __init__(
        self,
        mname: Labels,
        rname: Labels,
        serial: int,
        refresh: int,
        retry: int,
        expire: int,
        minimum: int,
    ) -> None:
        self.mname = mname
        self.rname = rname
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum


RData = str | Labels | tuple[int, Labels] | Soa | None
"""Decoded record data: an address (A, AAAA), a name (CNAME, NS, PTR), ``(preference,
exchange)`` (MX), a :class:`Soa`, or None for other types (``rdata`` holds the bytes)."""

_NAME_TYPES = frozenset((TYPE_NS, TYPE_CNAME, TYPE_PTR))


class ResourceRecord(Record):
    """One resource record. ``rdata`` is the uncompressed wire data, ``value`` its meaning."""

    __slots__ = ("name", "rtype", "rclass", "ttl", "rdata", "value")  # noqa: RUF023

    def __init__(
        self, name: Labels, rtype: int, rclass: int, ttl: int, rdata: bytes, value: RData = None
    ) -> None:
        self.name = name
        self.rtype = rtype
        self.rclass = rclass
        self.ttl = ttl
        self.rdata = rdata
        self.value = value

    @classmethod
    def make(
        cls, name: Labels, rtype: int, ttl: int, value: RData, rclass: int = CLASS_IN
    ) -> ResourceRecord:
        """A record from its meaning (address text, target name, MX pair, Soa)."""
        return cls(name, rtype, rclass, ttl, _encode_rdata(rtype, value), value)


def _encode_rdata(rtype: int, value: RData) -> bytes:
    if rtype == TYPE_A and isinstance(value, str):
        return ipaddress.IPv4Address(value).packed
    if rtype == TYPE_AAAA and isinstance(value, str):
        return ipaddress.IPv6Address(value).packed
    if rtype in _NAME_TYPES and isinstance(value, tuple) and not isinstance(value[0], int):
        return encode_name(value)
    if rtype == TYPE_MX and isinstance(value, tuple) and isinstance(value[0], int):
        pref, exchange = value
        return struct.pack("!H", pref) + encode_name(exchange)
    if rtype == TYPE_SOA and isinstance(value, Soa):
        return (
            encode_name(value.mname)
            + encode_name(value.rname)
            + _SOA_TAIL.pack(value.serial, value.refresh, value.retry, value.expire, value.minimum)
        )
    raise ValueError(f"no encoding of {value!r} as type {rtype}")


def _decode_rdata(data: bytes, off: int, end: int, rtype: int) -> tuple[bytes, RData]:
    """The uncompressed rdata and its value, for the record data in ``data[off:end]``."""
    if rtype in (TYPE_A, TYPE_AAAA):
        size = 4 if rtype == TYPE_A else 16
        if end - off != size:
            raise DnsFormatError(f"address record of {end - off} bytes")
        raw = data[off:end]
        # inet_ntop is a pure conversion (no socket), and 15x quicker than ipaddress
        return raw, inet_ntop(AF_INET if size == 4 else AF_INET6, raw)
    if rtype in _NAME_TYPES:
        target, after = decode_name(data, off)
        if after != end:
            raise DnsFormatError("record data length does not match its name")
        return encode_name(target), target
    if rtype == TYPE_MX:
        if end - off < 3:
            raise DnsFormatError("MX record too short")
        (pref,) = struct.unpack_from("!H", data, off)
        exchange, after = decode_name(data, off + 2)
        if after != end:
            raise DnsFormatError("record data length does not match its name")
        mx = (pref, exchange)
        return _encode_rdata(rtype, mx), mx
    if rtype == TYPE_SOA:
        mname, after = decode_name(data, off)
        rname, after = decode_name(data, after)
        if after + _SOA_TAIL.size != end:
            raise DnsFormatError("SOA record data length mismatch")
        soa = Soa(mname, rname, *_SOA_TAIL.unpack_from(data, after))
        return _encode_rdata(rtype, soa), soa
    return data[off:end], None


class Edns(Record):
    """The OPT pseudo-record of EDNS0 (RFC 6891): payload size, extended rcode, flags."""

    __slots__ = ("payload", "ext_rcode", "version", "flags", "options")  # noqa: RUF023

    def __init__(
        self,
        payload: int = EDNS_PAYLOAD,
        ext_rcode: int = 0,
        version: int = 0,
        flags: int = 0,
        options: bytes = b"",
    ) -> None:
        self.payload = payload
        self.ext_rcode = ext_rcode
        self.version = version
        self.flags = flags
        self.options = options


class Message(Record):
    """A DNS message. ``additional`` excludes the OPT record, which is ``edns``.

    ``truncated_sections`` is True when the TC bit was set and the sections after the
    question ended early (decoded as far as they went).
    """

    __slots__ = (  # noqa: RUF023 - wire order
        "id",
        "flags",
        "questions",
        "answers",
        "authority",
        "additional",
        "edns",
        "truncated_sections",
    )

    def __init__(
        self,
        id: int = 0,
        flags: int = 0,
        questions: list[Question] | None = None,
        answers: list[ResourceRecord] | None = None,
        authority: list[ResourceRecord] | None = None,
        additional: list[ResourceRecord] | None = None,
        edns: Edns | None = None,
        truncated_sections: bool = False,
    ) -> None:
        self.id = id
        self.flags = flags
        self.questions: list[Question] = questions if questions is not None else []
        self.answers: list[ResourceRecord] = answers if answers is not None else []
        self.authority: list[ResourceRecord] = authority if authority is not None else []
        self.additional: list[ResourceRecord] = additional if additional is not None else []
        self.edns = edns
        self.truncated_sections = truncated_sections

    @property
    def qr(self) -> bool:
        """True for a response."""
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        """The opcode (0: a standard query)."""
        return (self.flags >> 11) & 0xF

    @property
    def tc(self) -> bool:
        """The TC (truncated) bit."""
        return bool(self.flags & _TC)

    @property
    def rcode(self) -> int:
        """The response code, with the EDNS0 extended bits."""
        ext = self.edns.ext_rcode << 4 if self.edns is not None else 0
        return ext | (self.flags & 0xF)


def encode_message(msg: Message) -> bytes:
    """The wire form of ``msg`` (names uncompressed); ValueError for what cannot be encoded."""
    out = [
        _HEADER.pack(
            msg.id,
            msg.flags,
            len(msg.questions),
            len(msg.answers),
            len(msg.authority),
            len(msg.additional) + (msg.edns is not None),
        )
    ]
    for q in msg.questions:
        out.append(encode_name(q.name))
        out.append(_QTAIL.pack(q.qtype, q.qclass))
    for section in (msg.answers, msg.authority, msg.additional):
        for rr in section:
            if len(rr.rdata) > 0xFFFF:
                raise ValueError("record data longer than 65535 bytes")
            out.append(encode_name(rr.name))
            out.append(_RR.pack(rr.rtype, rr.rclass, rr.ttl, len(rr.rdata)))
            out.append(rr.rdata)
    e = msg.edns
    if e is not None:
        ttl = (e.ext_rcode << 24) | (e.version << 16) | e.flags
        out.append(b"\0" + _RR.pack(TYPE_OPT, e.payload, ttl, len(e.options)) + e.options)
    return b"".join(out)


def make_query(qid: int, name: Labels, qtype: int, *, payload: int = EDNS_PAYLOAD) -> bytes:
    """A recursive query (RD set) for ``name``/``qtype`` with an EDNS0 OPT record."""
    return _query(qid, encode_name(name) + _QTAIL.pack(qtype, CLASS_IN), payload)


_OPT_1232 = b"\0" + _RR.pack(TYPE_OPT, EDNS_PAYLOAD, 0, 0)


def _query(qid: int, question: bytes, payload: int = EDNS_PAYLOAD) -> bytes:
    opt = _OPT_1232 if payload == EDNS_PAYLOAD else b"\0" + _RR.pack(TYPE_OPT, payload, 0, 0)
    return _HEADER.pack(qid, _RD, 1, 0, 0, 1) + question + opt


def decode_message(data: bytes) -> Message:
    """Decode a DNS message; DnsFormatError (and only that) for anything malformed.

    A message with TC set may end early after its question section (servers cut it);
    it is returned with what was there and ``truncated_sections`` True.
    """
    if len(data) < 12:
        raise DnsFormatError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    msg = Message(qid, flags)
    off = 12
    n = len(data)
    for _ in range(qdcount):
        qname, off = decode_name(data, off)
        if off + 4 > n:
            raise DnsFormatError("question runs past the end of the message")
        qtype, qclass = _QTAIL.unpack_from(data, off)
        off += 4
        msg.questions.append(Question(qname, qtype, qclass))
    try:
        for section, count in ((msg.answers, ancount), (msg.authority, nscount)):
            for _ in range(count):
                rr, off = _decode_rr(data, off)
                if rr is None:
                    raise DnsFormatError("OPT record outside the additional section")
                section.append(rr)
        for _ in range(arcount):
            start = off
            rr, off = _decode_rr(data, off)
            if rr is None:
                if msg.edns is not None:
                    raise DnsFormatError("more than one OPT record")
                if data[start] != 0:
                    raise DnsFormatError("OPT record with a non-root name")
                rclass, ttl, rdlen = struct.unpack_from("!HIH", data, off - 8)
                msg.edns = Edns(
                    rclass, ttl >> 24, (ttl >> 16) & 0xFF, ttl & 0xFFFF, data[off - rdlen : off]
                )
            else:
                msg.additional.append(rr)
    except DnsFormatError:
        if not flags & _TC:
            raise
        msg.truncated_sections = True
        return msg
    if off != n:
        raise DnsFormatError(f"{n - off} bytes after the last record")
    return msg


def _decode_rr(data: bytes, off: int) -> tuple[ResourceRecord | None, int]:
    """One record at ``off``; None (and its end) for an OPT record."""
    name, off = decode_name(data, off)
    if off + 10 > len(data):
        raise DnsFormatError("record runs past the end of the message")
    rtype, rclass, ttl, rdlen = _RR.unpack_from(data, off)
    off += 10
    end = off + rdlen
    if end > len(data):
        raise DnsFormatError("record data runs past the end of the message")
    if rtype == TYPE_OPT:
        return None, end
    rdata, value = _decode_rdata(data, off, end, rtype)
    if ttl >= 0x80000000:  # RFC 2181 §8: a TTL with the top bit set is taken as zero
        ttl = 0
    return ResourceRecord(name, rtype, rclass, ttl, rdata, value), end


# -- resolv.conf -----------------------------------------------------------------------

Server = tuple[str, int]
"""A nameserver: (address, port)."""


class ResolvConf(Record):
    """What the resolver takes from resolv.conf(5).

    ``timeout`` is seconds per try (glibc default 5, at most 30), ``attempts`` rounds over
    the servers (default 2, at most 5), ``ndots`` (default 1, at most 15) decides whether
    a name is tried as given before the ``search`` domains.
    """

    __slots__ = ("nameservers", "search", "ndots", "timeout", "attempts", "source")  # noqa: RUF023

    def __init__(
        self,
        nameservers: Sequence[Server] = (),
        search: Sequence[Labels] = (),
        ndots: int = 1,
        timeout: float = 5.0,
        attempts: int = 2,
        source: str = "resolv.conf",
    ) -> None:
        self.nameservers = list(nameservers)
        self.search = list(search)
        self.ndots = ndots
        self.timeout = timeout
        self.attempts = attempts
        self.source = source


MAXNS = 3
"""glibc uses the first three nameserver lines."""


def parse_nameserver(text: str) -> Server:
    """``addr``, ``[addr]:port`` or ``v4addr:port`` as (address, port); ValueError else.

    The bracket form is OpenBSD's resolv.conf extension; glibc knows only port 53.
    """
    port = 53
    host = text
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"bad nameserver {text!r}")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"bad nameserver port in {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"bad nameserver port in {text!r}")
        port = int(p)
    if not 1 <= port <= 65535:
        raise ValueError(f"bad nameserver port in {text!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r} is not an IP address") from None
    return str(ip), port


def _option_number(value: str, low: float, high: float) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    return min(max(number, low), high)


def parse_resolv_conf(text: str, source: str = "resolv.conf") -> ResolvConf:
    """Parse resolv.conf text: ``nameserver``, ``search``/``domain``, ``options ndots:
    timeout: attempts:``. Unknown lines and bad values are skipped, as glibc does.

    ``timeout`` may have a fraction of a second here (glibc reads whole seconds); 0 or
    less means 1 s, glibc's minimum (``res_send``: ``if (seconds <= 0) seconds = 1``).

    >>> conf = parse_resolv_conf("nameserver 198.51.100.53\\nsearch lab.test\\noptions ndots:2")
    >>> conf.nameservers, conf.search, conf.ndots
    ([('198.51.100.53', 53)], [(b'lab', b'test')], 2)
    """
    conf = ResolvConf(source=source)
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, args = fields[0], fields[1:]
        if key == "nameserver" and args:
            if len(conf.nameservers) < MAXNS:
                with contextlib.suppress(ValueError):
                    conf.nameservers.append(parse_nameserver(args[0]))
        elif key in ("search", "domain") and args:
            search: list[Labels] = []
            for domain in args if key == "search" else args[:1]:
                try:
                    labels = name_labels(domain)
                except ValueError:
                    continue
                if labels not in search:
                    search.append(labels)
            conf.search = search  # the last search or domain line wins
        elif key == "options":
            for opt in args:
                name, _, value = opt.partition(":")
                if name == "ndots":
                    got = _option_number(value, 0, 15)
                    if got is not None:
                        conf.ndots = int(got)
                elif name == "timeout":
                    got = _option_number(value, -math.inf, 30)
                    if got is not None:  # glibc res_send: a try waits at least 1 s
                        conf.timeout = max(got, 0.001) if got > 0 else 1.0
                elif name == "attempts":
                    got = _option_number(value, 1, 5)
                    if got is not None:
                        conf.attempts = int(got)
    return conf


def search_names(name: str, conf: ResolvConf) -> list[Labels]:
    """The names to ask for ``name``, in order (glibc ``res_search``): as given first
    when it has at least ``ndots`` dots, else after the search domains; a trailing dot
    means as given only.

    >>> conf = ResolvConf(search=[(b"lab", b"test")], ndots=1)
    >>> [name_text(n) for n in search_names("box", conf)]
    ['box.lab.test', 'box']
    """
    base = name_labels(name)
    if name.endswith(".") or not conf.search:
        return [base]
    suffixed = []
    for domain in conf.search:
        full = base + domain
        if 1 + sum(len(label) + 1 for label in full) <= 255 and full not in suffixed:
            suffixed.append(full)
    if len(base) - 1 >= conf.ndots:
        return [base, *suffixed]
    return [*suffixed, base]


# -- answers and the cache -------------------------------------------------------------


class DnsAnswer(Record):
    """The outcome of one family of a resolve, as handed to the resolver's callback.

    ``disposition`` is "OK", "NXDOMAIN", "NO_RESULT" or "SERVER_UNREACHABLE" (the CONMON
    ``dns_disposition``); ``detail`` a human text for CLIENT_CONNECTION_ERROR, e.g.
    "DNS NXDOMAIN"; ``elapsed`` seconds from ``resolve()`` to this answer.
    """

    __slots__ = ("family", "addresses", "disposition", "detail", "elapsed")  # noqa: RUF023

    def __init__(
        self,
        family: int,
        addresses: list[str],
        disposition: str,
        detail: str,
        elapsed: float = 0.0,
    ) -> None:
        self.family = family
        self.addresses = addresses
        self.disposition = disposition
        self.detail = detail
        self.elapsed = elapsed


class _CacheEntry:
    __slots__ = ("addresses", "detail", "disposition", "expires")

    def __init__(self, addresses: list[str], disposition: str, detail: str, expires: float):
        self.addresses = addresses
        self.disposition = disposition
        self.detail = detail
        self.expires = expires


class DnsCache:
    """Answers by (name, type), positive and negative (RFC 2308), each until its TTL ends.

    At most ``max_entries`` names are kept; the least recently used goes first. Times
    are the caller's clock, passed in. Names compare case-insensitively; the caller
    decides whether "name." and "name" are one key (they are unless a search list
    applies).
    """

    __slots__ = ("_entries", "hits", "max_entries", "misses")

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int], _CacheEntry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, qtype: int, now: float) -> tuple[list[str], str, str] | None:
        """(addresses, disposition, detail) if an unexpired answer is held, else None."""
        key = (name.lower(), qtype)
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return list(entry.addresses), entry.disposition, entry.detail

    def put(self, name: str, qtype: int, answer: DnsAnswer, ttl: float, now: float) -> None:
        """Keep ``answer`` for ``ttl`` seconds (capped: a day, three hours if negative)."""
        if ttl <= 0 or self.max_entries == 0:
            return
        cap = MAX_TTL if answer.disposition == "OK" else MAX_NEGATIVE_TTL
        key = (name.lower(), qtype)
        entries = self._entries
        entries[key] = _CacheEntry(
            list(answer.addresses), answer.disposition, answer.detail, now + min(ttl, cap)
        )
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer."""
        self._entries.clear()


# -- the query machine -----------------------------------------------------------------


class Send(Record):
    """Action: send ``payload`` to ``server`` (index ``index``) over UDP or TCP, on a
    fresh socket (closing the previous one of this query; the driver may send the other
    family's query of the same moment on it too)."""

    __slots__ = ("index", "server", "tcp", "payload")  # noqa: RUF023

    def __init__(self, index: int, server: Server, tcp: bool, payload: bytes) -> None:
        self.index = index
        self.server = server
        self.tcp = tcp
        self.payload = payload


class Done(Record):
    """Action: the query is over; ``ttl`` is how long the answer may be cached (None: not)."""

    __slots__ = ("answer", "ttl")

    def __init__(self, answer: DnsAnswer, ttl: float | None) -> None:
        self.answer = answer
        self.ttl = ttl


Action = Send | Done


class QState(Enum):
    """Where one query is."""

    __hash__ = object.__hash__  # members are singletons: the table lookup hashes in C

    IDLE = "IDLE"  # made, not started
    UDP = "UDP"  # a UDP query is out to the current server
    TCP = "TCP"  # the same question over TCP, after a truncated UDP answer
    PAUSED = "PAUSED"  # lockstep: this name has no record of the type; the sibling decides
    DONE = "DONE"  # answered or given up; inputs are ignored


class QEvent(Enum):
    """What an input meant, before the transition table says what it does."""

    __hash__ = object.__hash__

    START = "START"
    ANSWER = "ANSWER"  # records of the asked type (after any CNAMEs)
    NEGATIVE = "NEGATIVE"  # NXDOMAIN, or no record of that type (NODATA)
    CNAME = "CNAME"  # a CNAME chain that ends without records: ask for its target
    TRUNCATED = "TRUNCATED"  # TC set
    SERVER_FAILED = "SERVER_FAILED"  # SERVFAIL, REFUSED, NOTIMP, FORMERR
    MALFORMED = "MALFORMED"  # the right id, but not a valid message
    FATAL = "FATAL"  # a CNAME loop or an overlong chain: no server will do better
    TIMEOUT = "TIMEOUT"
    UNREACHABLE = "UNREACHABLE"  # ICMP refused, no route, TCP reset
    IGNORED = "IGNORED"  # wrong id, wrong question, not a response
    NEXT = "NEXT"  # lockstep: neither family has a record at this name: the next one
    STOP = "STOP"  # lockstep: the other family has records at this name (or gave up)


_S, _E = QState, QEvent
TRANSITIONS: dict[tuple[QState, QEvent], str] = {
    (_S.IDLE, _E.START): "send_udp",
    **{
        (state, event): step
        for state in (_S.UDP, _S.TCP)
        for event, step in (
            (_E.ANSWER, "finish"),
            (_E.NEGATIVE, "next_name"),
            (_E.CNAME, "follow"),
            (_E.TRUNCATED, "send_tcp" if state is _S.UDP else "next_server"),
            (_E.SERVER_FAILED, "next_server"),
            (_E.MALFORMED, "next_server"),
            (_E.TIMEOUT, "next_server"),
            (_E.UNREACHABLE, "next_server"),
            (_E.FATAL, "fail"),
            (_E.IGNORED, "stay"),
        )
    },
    (_S.PAUSED, _E.NEXT): "resume",
    (_S.PAUSED, _E.STOP): "stop",
}
"""(state, event) -> step. The steps and the states they lead to:

* ``send_udp``: ask the current name of the current server over UDP -> UDP
* ``send_tcp``: ask the same server again over TCP -> TCP
* ``next_server``: the next server (or round); none left -> DONE (given up)
* ``next_name``: the next search-list name from the first server; none left -> DONE
  (negative); with ``lockstep``, while names are left -> PAUSED (the driver says NEXT
  when the other family found nothing here either, STOP when it found records here)
* ``resume``: the next name, as ``next_name`` would -> UDP
* ``stop``: no further name: the negative answer for the names asked -> DONE
* ``follow``: ask the CNAME target of the same server -> UDP
* ``finish`` / ``fail``: -> DONE
* ``stay``: nothing changes

A (state, event) pair not in the table cannot happen (inputs in IDLE or DONE are dropped).
"""


_NO_SOCKET = "no socket"  # the UNREACHABLE of a socket this host could not open


class QueryMachine:
    """One name, one type (A or AAAA): the search list over the servers, sans-I/O.

    ``rand16`` gives query ids (the driver passes a CSPRNG); ``now`` values are the
    driver's clock. Each input method returns the next :data:`Action` or None;
    :attr:`deadline` is when :meth:`timer` must be called; :attr:`down` holds the indices
    of servers that timed out or were unreachable (the driver tries them last for a
    while), :attr:`alive` those that answered; :attr:`query_id` is the id of the query
    out (-1 before the first), which a driver that shares a socket between queries
    dispatches datagrams by (each machine checks the id again).

    ``lockstep`` (set by a driver asking AAAA and A of one name together): the search
    list is walked by both families as one, as glibc's ``getaddrinfo`` does, so that one
    connect never mixes the addresses of two names: after a name with no record of its
    type the machine waits in PAUSED for :meth:`resume` (neither family had any there)
    or :meth:`stop` (the other family had: this name is the answer, with none of ours).
    """

    __slots__ = (
        "_chain",
        "_chain_ttl",
        "_error",
        "_failures",
        "_ignored",
        "_name",
        "_name_index",
        "_negative_ttl",
        "_nxdomain",
        "_payload",
        "_qtail",
        "_qwire",
        "_rand16",
        "_try",
        "alive",
        "attempts",
        "deadline",
        "down",
        "family",
        "lockstep",
        "names",
        "qtype",
        "query_id",
        "servers",
        "started",
        "state",
        "timeout",
    )

    def __init__(
        self,
        names: Sequence[Labels],
        qtype: int,
        servers: Sequence[Server],
        *,
        timeout: float,
        attempts: int,
        rand16: Callable[[], int],
        started: float,
    ) -> None:
        if not names or not servers:
            raise ValueError("a query needs at least one name and one server")
        self.names = list(names)
        self.qtype = qtype
        self.family = AF_INET6 if qtype == TYPE_AAAA else AF_INET
        self.servers = list(servers)
        self.timeout = timeout
        self.attempts = attempts
        self.started = started
        self.state = QState.IDLE
        self.deadline: float | None = None
        self.lockstep = False
        self._rand16 = rand16
        self._qtail = _QTAIL.pack(qtype, CLASS_IN)
        self._name_index = 0
        self._name = self.names[0]
        self._qwire = b""  # the question section asking for _name, made on the first send
        self._chain: list[Labels] | None = None  # this candidate's CNAME chain (None: [_name])
        self._chain_ttl = MAX_TTL
        self._try = 0  # index into rounds x servers
        self.query_id = -1
        self._payload = b""
        self._failures: list[str] = []  # why each server of this candidate failed
        self.down: set[int] = set()  # servers that timed out or were unreachable
        self.alive: set[int] = set()  # servers that answered (whatever they said)
        self._ignored: dict[str, int] = {}
        self._error = ""  # the last socket error, as text
        self._nxdomain = True  # every candidate so far said NXDOMAIN
        self._negative_ttl: float | None = MAX_NEGATIVE_TTL

    # -- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> Action | None:
        """Begin: the first Send."""
        return self._event(QEvent.START, now, None)

    def timer(self, now: float) -> Action | None:
        """The driver's timer fired; a TIMEOUT if the deadline has passed."""
        if self.state is QState.DONE or self.deadline is None or now < self.deadline:
            return None
        return self._event(QEvent.TIMEOUT, now, "no answer")

    def unreachable(self, now: float, why: str = "", *, local: bool = False) -> Action | None:
        """The socket to the current server failed (ICMP refused, no route, TCP closed);
        ``why`` (e.g. "connection refused") ends up in the give-up text. ``local``: the
        failure is this host's (no file descriptor or memory for a socket), not the
        server's: it moves on all the same, but the server is not counted :attr:`down`."""
        if self.state is not QState.UDP and self.state is not QState.TCP:
            return None
        if why:
            self._error = why
        return self._event(QEvent.UNREACHABLE, now, _NO_SOCKET if local else "unreachable")

    def resume(self, now: float) -> Action | None:
        """Lockstep, PAUSED: the other family had no record at this name either: go on
        to the next name (its first Send). None in any other state."""
        if self.state is not QState.PAUSED:
            return None
        return self._event(QEvent.NEXT, now, None)

    def stop(self, now: float) -> Action | None:
        """Lockstep, PAUSED: the other family had records at this name, or gave up: this
        name ends the search (the negative answer). None in any other state."""
        if self.state is not QState.PAUSED:
            return None
        return self._event(QEvent.STOP, now, None)

    def receive(self, data: bytes, now: float) -> Action | None:
        """A datagram (or a whole TCP message) from the current server's socket."""
        if self.state is not QState.UDP and self.state is not QState.TCP:
            return None
        event, info = self._plain_answer(data) or self._classify(data)
        if event is not QEvent.IGNORED:
            index = self._try % len(self.servers)
            self.alive.add(index)
            self.down.discard(index)
        return self._event(event, now, info)

    # -- the table -----------------------------------------------------------------------

    def _event(self, event: QEvent, now: float, info: object) -> Action | None:
        step = TRANSITIONS[(self.state, event)]
        if step == "stay":
            assert isinstance(info, str)
            self._ignored[info] = self._ignored.get(info, 0) + 1
            return None
        if step == "send_udp":
            return self._send(now, tcp=False)
        if step == "send_tcp":
            return self._send(now, tcp=True)
        if step == "finish":
            assert isinstance(info, tuple)
            addresses, ttl = info
            return self._done(now, addresses, "OK", "DNS OK", ttl)
        if step == "fail":
            assert isinstance(info, str)
            return self._done(now, [], "NO_RESULT", f"DNS {info}", None)
        if step == "follow":
            assert isinstance(info, tuple)
            self._name, self._chain, self._chain_ttl = info
            self._qwire = b""
            return self._send(now, tcp=False)
        if step == "next_server":
            assert isinstance(info, str)
            if event in (QEvent.TIMEOUT, QEvent.UNREACHABLE):
                if info != _NO_SOCKET:  # the server's silence or refusal, not ours
                    self.down.add(self._try % len(self.servers))
                if self.state is QState.TCP:
                    info = "truncated answer, and no answer over TCP"
            self._failures.append(info)
            self._try += 1
            if self._try < len(self.servers) * self.attempts:
                return self._send(now, tcp=False)
            return self._give_up(now)
        if step == "resume":
            self._next_candidate()
            return self._send(now, tcp=False)
        if step == "stop":
            return self._negative(now)
        assert step == "next_name"
        assert isinstance(info, tuple)
        nxdomain, ttl = info
        self._nxdomain = self._nxdomain and nxdomain
        if ttl is None or self._negative_ttl is None:
            self._negative_ttl = None
        else:
            self._negative_ttl = min(self._negative_ttl, ttl)
        self._name_index += 1
        if self._name_index < len(self.names):
            if self.lockstep:  # the other family's word decides: next name, or stop here
                self.state = QState.PAUSED
                self.deadline = None
                return None
            self._next_candidate()
            return self._send(now, tcp=False)
        return self._negative(now)

    def _negative(self, now: float) -> Done:
        """No record of the type at any name asked: NXDOMAIN if every one said so."""
        if self._nxdomain:
            return self._done(now, [], "NXDOMAIN", "DNS NXDOMAIN", self._negative_ttl)
        kind = "AAAA" if self.qtype == TYPE_AAAA else "A"
        return self._done(
            now, [], "NO_RESULT", f"DNS NO_RESULT (no {kind} record)", self._negative_ttl
        )

    # -- steps ---------------------------------------------------------------------------

    def _next_candidate(self) -> None:
        self._name = self.names[self._name_index]
        self._qwire = b""
        self._chain = None
        self._chain_ttl = MAX_TTL
        self._try = 0
        self._failures = []

    def _send(self, now: float, tcp: bool) -> Send:
        index = self._try % len(self.servers)
        if not tcp:  # a TCP retry asks the same question with the same id
            self.query_id = self._rand16() & 0xFFFF
            if not self._qwire:
                self._qwire = encode_name(self._name) + self._qtail
            self._payload = _HEADER.pack(self.query_id, _RD, 1, 0, 0, 1) + self._qwire + _OPT_1232
        self.state = QState.TCP if tcp else QState.UDP
        self.deadline = now + self.timeout
        return Send(index, self.servers[index], tcp, self._payload)

    def _done(
        self, now: float, addresses: list[str], disposition: str, detail: str, ttl: float | None
    ) -> Done:
        self.state = QState.DONE
        self.deadline = None
        answer = DnsAnswer(self.family, addresses, disposition, detail, now - self.started)
        return Done(answer, ttl)

    def _give_up(self, now: float) -> Done:
        answered = [f for f in self._failures if f not in ("no answer", "unreachable", _NO_SOCKET)]
        if answered:  # a server said something: that is the more useful text
            return self._done(now, [], "NO_RESULT", f"DNS {answered[-1]}", None)
        n = len(self.servers)
        detail = f"DNS SERVER_UNREACHABLE (no answer from {n} server{'s' if n != 1 else ''}"
        if self._error:
            detail += f"; {self._error}"
        for why, count in self._ignored.items():
            detail += f"; ignored {count} answer{'s' if count != 1 else ''} with {why}"
        return self._done(now, [], "SERVER_UNREACHABLE", detail + ")", None)

    # -- what a datagram means -----------------------------------------------------------

    def _classify(self, data: bytes) -> tuple[QEvent, object]:
        if len(data) < 2 or (data[0] << 8 | data[1]) != self.query_id:
            return QEvent.IGNORED, "a wrong id"
        return self._classify_message(data)

    def _plain_answer(self, data: bytes) -> tuple[QEvent, object] | None:
        """The common answer, read in place: what :meth:`_classify_message` would say, or
        None (then it decides) for anything else.

        "Common" is exactly: a response with no error, not truncated, one question that
        is byte for byte the one sent, no authority records, an EDNS0 OPT record or none
        as the only additional record, and answers that are all records of the asked
        type and class whose name is a pointer to the question's name (offset 12).
        """
        n = len(data)
        if n < 12 or (data[0] << 8 | data[1]) != self.query_id:
            return None
        flags, qd, an, ns, ar = _COUNTS.unpack_from(data, 2)
        if flags & 0xFA0F != _QR or qd != 1 or not an or ns or ar > 1:
            return None  # not QR, opcode not 0, TC, an rcode; or other sections
        qwire = self._qwire
        off = 12 + len(qwire)
        if data[12:off] != qwire:
            return None
        qtype = self.qtype
        size = 4 if qtype == TYPE_A else 16
        family = AF_INET if size == 4 else AF_INET6
        addresses: list[str] = []
        ttl = self._chain_ttl
        unpack = _PTR_RR.unpack_from
        for _ in range(an):
            end = off + 12 + size
            if end > n:
                return None
            ptr, rtype, rclass, rttl, rdlen = unpack(data, off)
            if ptr != 0xC00C or rtype != qtype or rclass != CLASS_IN or rdlen != size:
                return None
            address = inet_ntop(family, data[off + 12 : end])
            if address not in addresses:
                addresses.append(address)
                ttl = min(ttl, rttl if rttl < 0x80000000 else 0)
            off = end
        if ar:  # the OPT record: root name, type 41, no extended rcode, rdata in bounds
            if off + 11 > n or data[off] or data[off + 1 : off + 3] != b"\0\x29" or data[off + 5]:
                return None
            off += 11 + (data[off + 9] << 8 | data[off + 10])
        if off != n:
            return None
        return QEvent.ANSWER, (addresses, ttl)

    def _classify_message(self, data: bytes) -> tuple[QEvent, object]:
        """Any datagram with our id, decoded whole."""
        try:
            msg = decode_message(data)
        except DnsFormatError as e:
            return QEvent.MALFORMED, f"malformed answer ({e})"
        if not msg.qr or msg.opcode != 0:
            return QEvent.IGNORED, "no response flag"
        rcode = msg.rcode
        if not msg.questions and rcode != RCODE_NOERROR:  # FORMERR and friends may drop it
            return QEvent.SERVER_FAILED, _RCODE_NAMES.get(rcode, f"rcode {rcode}")
        if len(msg.questions) != 1 or not self._asked(msg.questions[0]):
            return QEvent.IGNORED, "the wrong question"
        if msg.tc:
            return QEvent.TRUNCATED, "truncated answer over TCP"
        if rcode == RCODE_NXDOMAIN:
            return QEvent.NEGATIVE, (True, _negative_ttl(msg))
        if rcode != RCODE_NOERROR:
            return QEvent.SERVER_FAILED, _RCODE_NAMES.get(rcode, f"rcode {rcode}")
        return self._follow(msg)

    def _asked(self, q: Question) -> bool:
        return q.qtype == self.qtype and q.qclass == CLASS_IN and _same_name(q.name, self._name)

    def _follow(self, msg: Message) -> tuple[QEvent, object]:
        """Walk the answer's CNAME chain from the asked name to the records of our type."""
        name = self._name
        chain = [_key(name)] if self._chain is None else list(self._chain)  # lower-cased
        ttl = self._chain_ttl
        followed = False
        while True:
            addresses: list[str] = []
            cname: ResourceRecord | None = None
            for rr in msg.answers:
                if rr.rclass != CLASS_IN or not _same_name(rr.name, name):
                    continue
                if rr.rtype == self.qtype:
                    assert isinstance(rr.value, str)
                    if rr.value not in addresses:
                        addresses.append(rr.value)
                        ttl = min(ttl, rr.ttl)
                elif rr.rtype == TYPE_CNAME and cname is None:
                    cname = rr
            if addresses:
                return QEvent.ANSWER, (addresses, ttl)
            if cname is None:
                break
            target = cast(Labels, cname.value)
            if _key(target) in chain:
                return QEvent.FATAL, "CNAME loop"
            if len(chain) > MAX_CNAME_CHAIN:
                return QEvent.FATAL, f"CNAME chain longer than {MAX_CNAME_CHAIN}"
            chain.append(_key(target))
            ttl = min(ttl, cname.ttl)
            name = target
            followed = True
        soa_ttl = _negative_ttl(msg)
        if followed and soa_ttl is None:  # the chain stops short: ask for its target
            return QEvent.CNAME, (name, chain, ttl)
        return QEvent.NEGATIVE, (False, soa_ttl)


def _negative_ttl(msg: Message) -> float | None:
    """RFC 2308 §5: the SOA's TTL, at most its MINIMUM; None without an SOA (not cached)."""
    for rr in msg.authority:
        if rr.rtype == TYPE_SOA and isinstance(rr.value, Soa):
            return float(min(rr.ttl, rr.value.minimum))
    return None


def hosts_answers(addresses: Sequence[str], elapsed: float = 0.0) -> tuple[DnsAnswer, DnsAnswer]:
    """The (AAAA, A) answers for a name found in the hosts file."""
    out = []
    for family, kind in ((AF_INET6, "IPv6"), (AF_INET, "IPv4")):
        found = [a for a in addresses if (":" in a) == (family == AF_INET6)]
        detail = "hosts file" if found else f"DNS NO_RESULT (no {kind} address in the hosts file)"
        out.append(DnsAnswer(family, found, "OK" if found else "NO_RESULT", detail, elapsed))
    return out[0], out[1]
