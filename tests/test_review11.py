"""Regressions from the review of issue 11 (HTTP client and CPD): the head limit on a head
that arrives whole, one URL check up front, URL edge cases, an absolute portal URL, an
answer sent just before a reset, one probe for the triggers of one pass."""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

import lwspy.core.wsi
import lwspy.roles.h1
from lwspy import Context, CpdResult, HttpResponse, Reason, SmdClass, Wsi, WsiState
from lwspy.roles.h1 import split_url
from tests.conftest import Recorder, service_until
from tests.httpfake import HttpFake, answer


def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
    raise exc


@pytest.fixture
def ctx() -> Iterator[Context]:
    with Context(netlink=False, on_callback_error=reraise) as c:
        c.service(0)
        yield c


def get(ctx: Context, url: str, **kw: Any) -> HttpResponse:
    got: list[HttpResponse] = []
    ctx.http_get(url, got.append, **kw)
    service_until(ctx, lambda: bool(got))
    return got[0]


def head_of(size: int, status: bytes = b"204 No Content") -> bytes:
    """A response head of exactly ``size`` bytes (its blank line included)."""
    start, end = b"HTTP/1.1 " + status + b"\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


# -- D1: max_head bounds a head that arrives in one piece --------------------------------


@pytest.mark.parametrize("size", [16385, 40000, 65000])
def test_a_whole_head_over_max_head_is_a_bad_response(ctx: Context, size: int) -> None:
    srv = HttpFake(answer(head_of(size, b"302 Found")))
    try:
        resp = get(ctx, srv.url(), max_head=16384, timeout=5)
        assert (resp.status, resp.bad_response) == (None, True)
        assert resp.error == f"bad response: head too large ({size} bytes)"
    finally:
        srv.close()


def test_max_head_is_exact(ctx: Context) -> None:
    srv = HttpFake(answer(head_of(1000)))
    try:
        assert get(ctx, srv.url(), max_head=1000).status == 204
        resp = get(ctx, srv.url(), max_head=999)
        assert resp.status is None and resp.error == "bad response: head too large (1000 bytes)"
    finally:
        srv.close()


def test_a_head_too_large_in_pieces_says_so_too(ctx: Context) -> None:
    srv = HttpFake(answer(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 5000))  # never complete
    try:
        resp = get(ctx, srv.url(), max_head=100, timeout=5)
        assert (resp.error, resp.bad_response) == ("bad response: head too large", True)
    finally:
        srv.close()


def test_cpd_a_204_with_an_oversize_head_is_captive() -> None:
    srv = HttpFake(answer(head_of(20000)))
    try:
        with Context(netlink=False, cpd_url=srv.url(), on_callback_error=reraise) as ctx:
            service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
            assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL and ctx.cpd.portal_url is None
    finally:
        srv.close()


# -- D2, D3, D4: one URL check, made up front, with clear errors --------------------------

BAD_URLS = [
    ("http://127.0.0.1/\x00", "control character"),
    ("http://127.0.0.1/\x7f", "control character"),
    ("http://127.0.0.1/a b", "space"),
    ("http://127.0.0.1/\u00e9", "non-ASCII"),
    ("http://\u00e9.test/", "non-ASCII"),
    ("http://127.0.0.1:0/", "port 0"),
    ("http://256.1.1.1/", "looks like an IPv4 address"),
    ("http://1.2.3/", "looks like an IPv4 address"),
    ("http://x.1/", "looks like an IPv4 address"),
    ("http://[fe80::1%lo]/", "RFC 6874"),
    ("http://[fe80::1%25]/", "RFC 6874"),
    ("http://[::1/", "bad URL"),
    ("http://bad_host!/", "neither an IP address nor a host name"),
]


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_bad_urls_raise_a_clear_value_error(ctx: Context, url: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad URL") as info:
        ctx.http_get(url, lambda r: None)
    assert type(info.value) is ValueError and why in str(info.value)
    with pytest.raises(ValueError, match="cpd_url: bad URL") as info:
        Context(netlink=False, cpd_url=url)
    assert type(info.value) is ValueError and why in str(info.value)
    assert ctx.wsis == []


def test_a_non_ascii_header_is_a_value_error(ctx: Context) -> None:
    with pytest.raises(ValueError, match="bad request header") as info:
        ctx.http_get("http://127.0.0.1/", lambda r: None, headers=[("X-A", "\u00e9")])
    assert type(info.value) is ValueError


def test_an_ipv6_zone_is_decoded_and_kept_out_of_the_host_header(ctx: Context) -> None:
    assert split_url("http://[fe80::1%25lo]/x") == ("fe80::1%lo", 80, "/x")
    assert split_url("http://[FE80::1%25Eth0]:81/") == ("fe80::1%Eth0", 81, "/")  # zone case kept
    assert split_url("http://127.0.0.1:/") == ("127.0.0.1", 80, "/")
    got: list[HttpResponse] = []
    req = ctx.http_get("http://[fe80::1%25lo]:9/", got.append, timeout=5)
    assert dict(req._request.headers)[b"host"] == b"[fe80::1]:9"
    service_until(ctx, lambda: bool(got))
    assert got[0].caos[0].address == "fe80::1%lo"  # the zone reached the connect
    assert not (got[0].error or "").startswith("bad address")


def test_a_probe_that_cannot_start_fails_and_never_raises_from_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kw: Any) -> None:
        raise ValueError("no such request")

    monkeypatch.setattr(lwspy.roles.h1, "http_get", refuse)
    with Context(netlink=False, cpd_url="http://127.0.0.1:9/", on_callback_error=reraise) as c:
        service_until(c, lambda: c.cpd.result is not CpdResult.UNKNOWN)
        assert c.cpd.result is CpdResult.NO_INTERNET and not c.cpd.probing
        assert c.cpd.probes == 1


# -- D5: portal_url is absolute --------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "portal"),
    [
        ("/login?from=cpd", "http://127.0.0.1:{port}/login?from=cpd"),
        ("login", "http://127.0.0.1:{port}/login"),
        ("//portal.test/x", "http://portal.test/x"),
        ("https://portal.test/x", "https://portal.test/x"),
        ("http://[oops/", "http://[oops/"),  # no URL: kept as it came
    ],
)
def test_a_relative_location_is_resolved_against_the_probe_url(location: str, portal: str) -> None:
    raw = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
    srv = HttpFake(answer(raw.encode()))
    try:
        with Context(netlink=False, cpd_url=srv.url(), on_callback_error=reraise) as ctx:
            service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
            assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL
            assert ctx.cpd.portal_url == portal.format(port=srv.port)
    finally:
        srv.close()


# -- D6: what the peer sent before its reset is delivered, then the close ---------------


@pytest.mark.parametrize(("bound", "timeout"), [(None, False), (4, False), (None, True)])
def test_a_send_error_delivers_what_the_peer_sent_before_its_reset(
    monkeypatch: pytest.MonkeyPatch, bound: int | None, timeout: bool
) -> None:
    if bound is not None:  # the late read is bounded: the rest is dropped with the socket
        monkeypatch.setattr(lwspy.core.wsi, "_LATE_RX", bound)
    rec = Recorder("p")
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        port = lsock.getsockname()[1]
        with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
            wsi = ctx.connect("127.0.0.1", port, protocol="p")
            service_until(ctx, lambda: Reason.RAW_CONNECTED in rec.reasons())
            if timeout:  # a user's timeout is replaced by the close after the late read
                wsi.set_timeout(30, reason="user timeout")
            conn, _ = lsock.accept()
            conn.sendall(b"the answer")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset
            assert wsi.sock is not None
            select.select([wsi.sock], [], [], 5)  # the answer is there; the loop reads nothing
            for _ in range(500):  # until the reset is there too: the send fails
                if wsi.write(b"request") == 0:
                    break
                time.sleep(0.01)
            assert wsi.state is WsiState.CLOSING
            service_until(ctx, lambda: Reason.RAW_CLOSE in rec.reasons())
            got = rec.reasons(wsi)
            assert got.index(Reason.RAW_RX) < got.index(Reason.RAW_CLOSE)
            assert b"".join(rec.data(Reason.RAW_RX)) == b"the answer"[:bound]
            assert wsi.close_reason in ("peer reset", "peer closed")
            assert got.count(Reason.RAW_CLOSE) == 1 and len(ctx.pt.fds) == 1


# -- D7: every trigger of one pass makes one probe ---------------------------------------


@pytest.mark.parametrize("order", ["start first", "cpdcheck first"])
def test_start_and_a_cpdcheck_in_one_pass_make_one_probe(order: str) -> None:
    srv = HttpFake(answer(b"HTTP/1.1 204 No Content\r\n\r\n"))
    try:
        with Context(netlink=False, cpd_url=srv.url(), on_callback_error=reraise) as ctx:
            service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
            service_until(ctx, lambda: not ctx.cpd.probing)
            assert ctx.cpd.probes == 1
            if order == "start first":
                ctx.cpd.start()
                ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
            else:
                ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
                ctx.cpd.start()
            service_until(ctx, lambda: ctx.cpd.probing)
            service_until(ctx, lambda: not ctx.cpd.probing)
            for _ in range(20):
                ctx.service(5)
            assert ctx.cpd.probes == 2 and not ctx.cpd.probing
    finally:
        srv.close()


def test_a_context_destroyed_by_an_smd_peer_before_the_kick_starts_no_probe() -> None:
    with Context(netlink=False, cpd_url="http://127.0.0.1:9/") as ctx:
        ctx.smd.register(lambda cls, ts, p: ctx.destroy(), SmdClass.NETWORK)
        ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
        ctx.service(0)
        assert ctx.cpd.probes == 0 and ctx.wsis == []


def test_a_send_error_on_a_pipe_closes_from_the_loop_as_before() -> None:
    rec = Recorder("p")
    r, w = os.pipe()
    os.close(r)
    with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
        wsi = ctx.adopt_file(w, protocol="p")
        assert wsi.write(b"x") == 0 and wsi.state is WsiState.CLOSING  # EPIPE: no sock
        assert Reason.RAW_CLOSE_FILE not in rec.reasons()  # never inside write()
        service_until(ctx, lambda: Reason.RAW_CLOSE_FILE in rec.reasons())
        assert wsi.close_reason == "peer closed" and Reason.RAW_RX_FILE not in rec.reasons()
