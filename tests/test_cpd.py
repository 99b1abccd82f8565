"""ctx.cpd on loopback: results, messages, triggers and their coalescing, the CPD_PRE_TIME
hold and its bound, a later probe changing the result, nothing leaked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lwspy import Context, CpdResult, Reason, SmdClass, SystemState, Wsi
from tests.conftest import FakeClock, service_until
from tests.httpfake import (
    HttpFake,
    answer,
    close_after,
    endless_body,
    huge_headers,
    reset,
    stall_after,
)

OK = answer(b"HTTP/1.1 204 No Content\r\n\r\n")
REDIRECT = answer(b"HTTP/1.1 302 Found\r\nLocation: http://portal.test/login\r\n\r\n")
LOGIN = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n<html>login</html>")


def reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
    raise exc


class Probe:
    """A context with CPD pointed at a scripted server; records NETWORK and state messages."""

    def __init__(self, srv: HttpFake, **kw: Any) -> None:
        self.net: list[dict[str, Any]] = []
        self.states: list[str] = []
        self.ctx = Context(netlink=False, cpd_url=srv.url(), on_callback_error=reraise, **kw)
        self.ctx.smd.register(self._on, SmdClass.NETWORK | SmdClass.SYSTEM_STATE)

    def _on(self, cls: SmdClass, ts: float, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if cls is SmdClass.SYSTEM_STATE:
            self.states.append(msg["state"])
        else:
            self.net.append(msg)

    def results(self) -> list[str]:
        return [m["result"] for m in self.net if m.get("type") == "cpd" and m["result"] != "?"]

    def until_results(self, n: int) -> None:
        service_until(self.ctx, lambda: len(self.results()) >= n and not self.ctx.cpd.probing)
        for _ in range(3):
            self.ctx.service(1)


@pytest.fixture
def servers() -> Iterator[list[HttpFake]]:
    made: list[HttpFake] = []
    yield made
    for s in made:
        s.close()


@pytest.mark.parametrize(
    ("behaviour", "result", "text", "portal"),
    [
        (OK, CpdResult.INTERNET_OK, "OK", None),
        (REDIRECT, CpdResult.CAPTIVE_PORTAL, "Captive", "http://portal.test/login"),
        (LOGIN, CpdResult.CAPTIVE_PORTAL, "Captive", None),
        (answer(b"garbage\r\n\r\n"), CpdResult.CAPTIVE_PORTAL, "Captive", None),
        (huge_headers, CpdResult.CAPTIVE_PORTAL, "Captive", None),
        (endless_body, CpdResult.CAPTIVE_PORTAL, "Captive", None),
        (close_after(b"HTTP/1.1 204 No Co"), CpdResult.CAPTIVE_PORTAL, "Captive", None),
        (close_after(b""), CpdResult.NO_INTERNET, "No internet", None),
        (reset, CpdResult.NO_INTERNET, "No internet", None),
        (None, CpdResult.NO_INTERNET, "No internet", None),  # accepts, never answers
    ],
)
def test_startup_probe_result(
    servers: list[HttpFake], behaviour: Any, result: CpdResult, text: str, portal: str | None
) -> None:
    srv = HttpFake(behaviour)
    servers.append(srv)
    p = Probe(srv, cpd_timeout_secs=0.3)
    with p.ctx as ctx:
        assert ctx.cpd.result is CpdResult.UNKNOWN and ctx.cpd.url == srv.url()
        p.until_results(1)
        assert ctx.cpd.result is result and ctx.cpd.portal_url == portal
        assert p.results() == [text] and ctx.cpd.probes == 1
        service_until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL)
        # nothing left behind: no connection, no timer but none at all
        service_until(ctx, lambda: not ctx.wsis and len(ctx.pt.fds) == 1, passes=100)
        assert len(ctx.pt.suls) == 0
        assert "CPD_PRE_TIME" in p.states and p.states[-1] == "OPERATIONAL"


def test_nothing_listening_is_no_internet() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/generate_204"
        with Context(netlink=False, cpd_url=url) as ctx:
            service_until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN)
            assert ctx.cpd.result is CpdResult.NO_INTERNET


def test_a_later_probe_changes_the_result(servers: list[HttpFake]) -> None:
    srv = HttpFake(REDIRECT, OK, None)
    servers.append(srv)
    p = Probe(srv, cpd_timeout_secs=0.3)
    with p.ctx as ctx:
        p.until_results(1)
        assert ctx.cpd.portal_url == "http://portal.test/login"
        ctx.cpd.start()
        p.until_results(2)
        assert ctx.cpd.result is CpdResult.INTERNET_OK and ctx.cpd.portal_url is None
        ctx.cpd.start()
        p.until_results(3)
        assert ctx.cpd.result is CpdResult.NO_INTERNET
        assert p.results() == ["Captive", "OK", "No internet"]


def test_cpdcheck_triggers_coalesce(servers: list[HttpFake]) -> None:
    srv = HttpFake(OK)
    servers.append(srv)
    p = Probe(srv)
    with p.ctx as ctx:
        p.until_results(1)
        assert ctx.cpd.probes == 1
        for _ in range(3):  # one pass delivers all three: one probe
            ctx.smd.post(SmdClass.NETWORK, {"trigger": "cpdcheck", "src": "gw-change"})
        ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
        ctx.smd.post(SmdClass.NETWORK, {"type": "cpd", "result": "?"})  # not a trigger
        ctx.smd.post(SmdClass.NETWORK, b"cpdcheck, but not JSON")
        ctx.smd.post(SmdClass.NETWORK, b'["cpdcheck"]')
        ctx.service(0)
        p.until_results(2)
        assert ctx.cpd.probes == 2
        # triggers while a probe runs: exactly one more probe after it
        ctx.cpd.start()
        service_until(ctx, lambda: ctx.cpd.probing)
        ctx.cpd.start()
        ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
        p.until_results(4)
        assert ctx.cpd.probes == 4
        for _ in range(20):
            ctx.service(5)
        assert ctx.cpd.probes == 4 and len(p.results()) == 4


def test_the_hold_at_cpd_pre_time_is_bounded_by_the_timeout(
    servers: list[HttpFake], clock: FakeClock
) -> None:
    srv = HttpFake(None)  # accepts, never answers
    servers.append(srv)
    p = Probe(srv, clock=clock, cpd_timeout_secs=3)
    with p.ctx as ctx:
        service_until(ctx, lambda: ctx.cpd.probing and ctx.system.state >= SystemState.DHCP)
        start = clock.now
        for _ in range(20):
            ctx.service(1)
        assert ctx.system.state is SystemState.CPD_PRE_TIME and ctx.system.held
        clock.advance(2.999)
        for _ in range(5):
            ctx.service(1)
        assert ctx.system.state is SystemState.CPD_PRE_TIME
        assert ctx.cpd.result is CpdResult.UNKNOWN
        clock.now = start + 3.0
        service_until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL, passes=20)
        assert ctx.cpd.result is CpdResult.NO_INTERNET
        i = p.states.index("CPD_PRE_TIME")
        assert p.states[i + 1] == "TIME_VALID"


@pytest.mark.parametrize(
    ("sent", "result"),
    [
        (b"HTTP/1.1 204 No Content\r\n", CpdResult.NO_INTERNET),  # no head by the deadline
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", CpdResult.CAPTIVE_PORTAL),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 9\r\n\r\n", None),
    ],
)
def test_what_came_by_the_deadline_decides(
    servers: list[HttpFake], clock: FakeClock, sent: bytes, result: CpdResult | None
) -> None:
    srv = HttpFake(stall_after(sent))
    servers.append(srv)
    p = Probe(srv, clock=clock)
    with p.ctx as ctx:
        service_until(ctx, lambda: ctx.cpd.probing)
        for _ in range(20):  # the bytes arrive; the probe waits for the rest
            ctx.service(1)
        assert ctx.cpd.result is CpdResult.UNKNOWN
        clock.advance(3)
        p.until_results(1)
        if result is None:  # a redirect's head is enough to know the portal
            assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL and ctx.cpd.portal_url == "/x"
        else:
            assert ctx.cpd.result is result and ctx.cpd.portal_url is None


def test_destroy_mid_probe_posts_nothing_and_leaks_nothing() -> None:
    import os

    fds = len(os.listdir("/proc/self/fd"))  # the server's sockets are this process's too
    srv = HttpFake(None)
    try:
        p = Probe(srv)
        service_until(p.ctx, lambda: p.ctx.cpd.probing)
        service_until(p.ctx, lambda: any(w.peer for w in p.ctx.wsis))
        p.ctx.destroy()
        assert p.results() == [] and p.ctx.cpd.result is CpdResult.UNKNOWN
    finally:
        srv.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_cpd_off_and_bad_urls() -> None:
    with Context(netlink=False) as ctx:
        assert ctx.cpd.url is None and ctx.cpd.result is CpdResult.UNKNOWN
        with pytest.raises(RuntimeError):
            ctx.cpd.start()
        ctx.smd.post(SmdClass.NETWORK, {"type": "cpdcheck"})
        ctx.service(0)
        assert ctx.cpd.probes == 0 and ctx.cpd.timeout == 3.0
        assert "None" in repr(ctx.cpd)
    for url in ("https://x.test/", "http://bad_host!/", "x"):
        with pytest.raises(ValueError):
            Context(netlink=False, cpd_url=url)
    with pytest.raises(TypeError):
        Context(netlink=False, cpd_url=b"http://x.test/")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Context(netlink=False, cpd_timeout_secs=0)
