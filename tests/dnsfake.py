"""A tiny DNS server for tests: a zone, and hooks to misbehave. No threads: ``pump()``.

Answers are built with dnspython (the reference), so the resolver is checked against
another implementation's messages. A behaviour turns a query into the replies to send:
bytes sent from the server's own socket, ``("other", bytes)`` sent from another
socket (a different source port), to play an off-path spoofer; over TCP also
``("close", b"")`` (shut the connection), ``("reset", b"")`` (an RST) and
``("slow", bytes)`` (one byte now, the rest on the next pump).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Reply = bytes | tuple[str, bytes]
Behaviour = Callable[["FakeDns", dns.message.Message, bytes, bool], list[Reply]]


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class FakeDns:
    """UDP and TCP on one address and port; ``zone`` maps a lower-case name to records.

    ``zone[name]`` is a list of (type, text) like ("A", "198.51.100.7") or
    ("CNAME", "b.test."); a name not in the zone is NXDOMAIN with an SOA (TTL ``neg_ttl``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        behaviour: Behaviour | None = None,
        ttl: int = 300,
        neg_ttl: int = 60,
        other_host: str | None = None,
    ) -> None:
        fam = family_of(host)
        for _ in range(50):  # port 0: a UDP port whose TCP twin is free too
            self.udp = socket.socket(fam, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(fam, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if port:
                    raise
        else:  # pragma: no cover
            raise OSError("no free UDP+TCP port pair")
        self.host = host
        self.tcp.listen(8)
        self.other = socket.socket(fam, socket.SOCK_DGRAM)  # the spoofer's socket
        self.other.bind((other_host or host, 0))
        for s in (self.udp, self.tcp, self.other):
            s.setblocking(False)
        self.conns: list[tuple[socket.socket, bytearray]] = []
        self.slow: list[tuple[socket.socket, bytes]] = []
        self.zone: dict[str, list[tuple[str, str]]] = {}
        self.behaviour = behaviour or FakeDns.normal
        self.ttl = ttl
        self.neg_ttl = neg_ttl
        self.queries: list[tuple[bool, dns.message.Message, tuple[str, int]]] = []

    @property
    def address(self) -> str:
        """The server as a ``nameservers=`` entry."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        for s in (self.udp, self.tcp, self.other):
            s.close()
        for c, _ in self.conns:
            c.close()

    def __enter__(self) -> FakeDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving -------------------------------------------------------------------------

    def pump(self) -> int:
        """Answer every query waiting now; returns how many were read."""
        n = 0
        while True:
            try:
                wire, src = self.udp.recvfrom(65535)
            except BlockingIOError:
                break
            n += 1
            self._handle(wire, src, None)
        with contextlib.suppress(BlockingIOError):
            while self.tcp.fileno() >= 0:
                c, _ = self.tcp.accept()
                c.setblocking(False)
                self.conns.append((c, bytearray()))
        for c, rest in self.slow:
            c.sendall(rest)
        self.slow.clear()
        for c, buf in list(self.conns):
            try:
                data = c.recv(65535)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                c.close()
                self.conns.remove((c, buf))
                continue
            buf += data
            if len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
                size = struct.unpack_from("!H", buf)[0]
                n += 1
                self._handle(bytes(buf[2 : 2 + size]), c.getpeername(), c)
                del buf[: 2 + size]
        return n

    def _handle(self, wire: bytes, src: tuple[str, int], conn: socket.socket | None) -> None:
        query = dns.message.from_wire(wire)
        self.queries.append((conn is not None, query, src))
        for reply in self.behaviour(self, query, wire, conn is not None):
            if isinstance(reply, tuple) and reply[0] == "close" and conn is not None:
                conn.shutdown(socket.SHUT_RDWR)
            elif isinstance(reply, tuple) and reply[0] == "reset" and conn is not None:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # an RST
                self.conns = [(c, b) for c, b in self.conns if c is not conn]
            elif isinstance(reply, tuple) and reply[0] == "slow" and conn is not None:
                framed = struct.pack("!H", len(reply[1])) + reply[1]
                conn.sendall(framed[:1])  # the rest on the next pump
                self.slow.append((conn, framed[1:]))
            elif isinstance(reply, tuple):
                self.other.sendto(reply[1], src[:2])
            elif conn is not None:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
            else:
                self.udp.sendto(reply, src[:2])

    # -- behaviours ----------------------------------------------------------------------

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The zone's answer to ``query``, following CNAMEs inside the zone."""
        resp = dns.message.make_response(query)
        q = query.question[0]
        name = q.name.to_text().lower()
        seen: set[str] = set()
        while name not in seen:
            seen.add(name)
            records = self.zone.get(name.rstrip("."))
            if records is None:
                if not seen - {name}:
                    resp.set_rcode(dns.rcode.NXDOMAIN)
                resp.authority.append(self.soa())
                return resp
            want = dns.rdatatype.to_text(q.rdtype)
            found = [text for kind, text in records if kind == want]
            if found:
                resp.answer.append(dns.rrset.from_text_list(name, self.ttl, "IN", want, found))
                return resp
            cnames = [text for kind, text in records if kind == "CNAME"]
            if not cnames:
                resp.authority.append(self.soa())
                return resp
            resp.answer.append(dns.rrset.from_text(name, self.ttl, "IN", "CNAME", cnames[0]))
            name = cnames[0].lower()
        return resp  # a loop: the chain as far as it went

    def soa(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            "test.", self.neg_ttl, "IN", "SOA", f"ns.test. host.test. 1 2 3 4 {self.neg_ttl}"
        )

    @staticmethod
    def normal(srv: FakeDns, query: dns.message.Message, wire: bytes, tcp: bool) -> list[Reply]:
        return [srv.answer(query).to_wire()]
