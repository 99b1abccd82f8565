"""Fuzz targets: hostile bytes into lwspy's parsers, with the invariants each must keep.

Each target takes one input (bytes) and raises only when an invariant breaks: an
exception other than the documented one escapes, or a decode takes more time or memory
than a bound linear in the input allows. The same targets run two ways:

* coverage-guided, under atheris (``tests/fuzz/run.py``: CI's bounded run and the longer
  run of docs/reliability.md);
* replayed over the committed corpus (``tests/fuzz/corpus/<target>/``) in the normal
  suite (``tests/fuzz/test_corpus.py``), on every interpreter, without atheris.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lwspy
from lwspy import HttpResponse, WsiState
from lwspy.net import dns, nlmsg, route, rule
from lwspy.net.hosts import parse_hosts

MAX_SECONDS = 1.0
"""No single input may take longer (a generous bound: inputs are at most 64 KiB, and a
linear decode of that takes milliseconds; a loop or a quadratic walk takes far longer)."""


_MAX_EXPANDED = 2 * 255 + 20
"""The largest decompressed record data (an SOA: two names of at most 255 bytes, 20 more)."""


class InvariantBroken(AssertionError):
    """A target's invariant does not hold for an input."""


def _timed(fn: Callable[[bytes], object], data: bytes) -> None:
    start = time.perf_counter()
    fn(data)
    took = time.perf_counter() - start
    if took > MAX_SECONDS:
        raise InvariantBroken(f"{len(data)} bytes took {took:.2f} s")


def _dns_message(data: bytes) -> None:
    try:
        msg = dns.decode_message(data)
    except dns.DnsFormatError:
        return
    # Memory stays linear in the input: no more records than bytes, and a record's data
    # is its own bytes or, decompressed, at most two names and an SOA tail.
    records = msg.answers + msg.authority + msg.additional
    if len(records) + len(msg.questions) > len(data):
        raise InvariantBroken("more records than bytes")
    for rr in records:
        if len(rr.rdata) > max(len(data), _MAX_EXPANDED):
            raise InvariantBroken(f"record data of {len(rr.rdata)} bytes")


def _dns_query(data: bytes) -> None:
    """The resolver's query machine fed the input as answers: only Actions or None."""
    ids = iter(range(0x1234, 0x10000))
    names = [dns.name_labels("lab.test"), dns.name_labels("lab.test.example")]
    for qtype in (dns.TYPE_A, dns.TYPE_AAAA):
        qm = dns.QueryMachine(
            names,
            qtype,
            [("127.0.0.1", 53), ("::1", 53)],
            timeout=1.0,
            attempts=2,
            rand16=lambda: next(ids),
            started=0.0,
        )
        act = qm.start(0.0)
        if not isinstance(act, dns.Send):
            raise InvariantBroken(f"start gave {act!r}")
        # Give the answer the id asked for, so the machine reads past the id check.
        answer = act.payload[:2] + data[2:] if len(data) >= 2 else data
        now = 0.0
        for _ in range(8):
            got = qm.receive(answer, now)
            if isinstance(got, dns.Done):
                break
            if got is not None and not isinstance(got, dns.Send):
                raise InvariantBroken(f"receive gave {got!r}")
            if isinstance(got, dns.Send):
                answer = got.payload[:2] + data[2:] if len(data) >= 2 else data
            now += 0.1


def _resolv_conf(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    conf = dns.parse_resolv_conf(text)
    for name in ("lab", "lab.test", "a.b.c.d.e"):
        dns.search_names(name, conf)
    parse_hosts(text)


def _netlink(data: bytes) -> None:
    """The route decoder (never raises), and the table applying whatever it decoded."""
    records = nlmsg.decode(data)
    table = route.RouteTable()
    for rec in records:
        if isinstance(rec, nlmsg.RouteMsg):
            table.apply_route(rec)
        elif isinstance(rec, nlmsg.NexthopMsg):
            table.apply_nexthop(rec)
        elif isinstance(rec, nlmsg.LinkMsg):
            table.link_down(rec.index) if not rec.up else table.link_up(rec.index)
    for r in list(table):
        table.lookup(r.dst)
    rule.decode_rules(data)


_http: list[lwspy.Context] = []  # one context for every input of a run

HTTP_MAX_HEAD = 4096
HTTP_MAX_BODY = 8192


def _http_response(data: bytes) -> None:
    """The HTTP client's response parsing (lwspy.roles.h1 over h11), fed the input as
    what a server sent: the first byte picks the size of the reads it arrives in
    (``2 ** (byte % 17)``: 1 byte to 64 KiB), then the end of stream. Exactly one
    response comes out, within the head and body limits, and the connection is gone."""
    if not _http:
        _http.append(lwspy.Context(netlink=False))
    ctx = _http[0]
    got: list[HttpResponse] = []
    # Port 9 of loopback (discard; nothing listens): the request is fed by hand, and
    # ends before the loop would connect.
    req = ctx.http_get(
        "http://127.0.0.1:9/probe", got.append, max_head=HTTP_MAX_HEAD, max_body=HTTP_MAX_BODY
    )
    step = 1 << ((data[0] if data else 0) % 17)
    body = data[1:]
    for at in range(0, len(body), step):
        if req.done:
            break
        req._rx(body[at : at + step])  # the parse, without a socket
    if not req.done:
        req._closed("peer closed")
    ctx.service(0)
    if len(got) != 1:
        raise InvariantBroken(f"{len(got)} responses")
    resp = got[0]
    if len(resp.body) > HTTP_MAX_BODY or len(resp.headers) > HTTP_MAX_HEAD:
        raise InvariantBroken("a limit was passed")
    if resp.bad_response and resp.error is None:
        raise InvariantBroken("a bad response without an error")
    if resp.status is not None and not 100 <= resp.status <= 999:
        raise InvariantBroken(f"status {resp.status}")
    if req.wsi.state is not WsiState.CLOSED:
        raise InvariantBroken(f"the wsi is {req.wsi.state.name}")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "dns_message": lambda data: _timed(_dns_message, data),
    "dns_query": lambda data: _timed(_dns_query, data),
    "resolv_conf": lambda data: _timed(_resolv_conf, data),
    "netlink": lambda data: _timed(_netlink, data),
    "http_response": lambda data: _timed(_http_response, data),
}
"""Target name -> function; the name is also the corpus folder's."""
