"""Captive portal detection in the namespace lab: a real HTTP server and a real dnsmasq.

lwspy runs in namespace "a" (netlink on); namespace "b" holds the "internet": http.server
on 203.0.113.1:80 (its answer switched by the test), dnsmasq on 198.51.100.2 giving
portal.test = 203.0.113.1, and a DNS server on 198.51.100.3 that never answers.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwspy import Context, CpdResult, HttpResponse, Protocol, Reason, SmdClass, SystemState, Wsi
from tests.netns.conftest import Dnsmasq, Lab, require_dnsmasq

pytestmark = pytest.mark.netns

SILENT_DNS = "198.51.100.3"
URL = "http://portal.test/generate_204"


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the server's current ``answer``."""

    server: Web

    def do_GET(self) -> None:
        status, headers, body = self.server.answer
        self.server.hits += 1
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Web(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int]) -> None:
        super().__init__(addr, Handler)
        self.answer: tuple[int, list[tuple[str, str]], bytes] = (204, [], b"")
        self.hits = 0


class World:
    """The lab with its web server, dnsmasq and a silent DNS server, and resolv.conf files."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        lab.ip("b", "addr", "add", f"{SILENT_DNS}/24", "dev", "vb")
        with lab.inside("b"):
            self.web = Web((lab.PEER, 80))
            self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.silent.bind((SILENT_DNS, 53))  # reads nothing, answers nothing
        threading.Thread(target=self.web.serve_forever, daemon=True).start()
        self.dnsmasq = Dnsmasq(lab, tmp, f"{lab.PEER} portal.test\n", "portal.test", ttl=None)
        self.resolv = tmp / "resolv.conf"
        self.resolv.write_text(f"nameserver {lab.B_ADDR}\noptions timeout:1 attempts:2\n")
        self.resolv_silent = tmp / "resolv-silent.conf"
        self.resolv_silent.write_text(f"nameserver {SILENT_DNS}\noptions timeout:1 attempts:3\n")
        self.net: list[dict[str, Any]] = []
        self.states: list[str] = []

    def context(self, silent_dns: bool = False, **kw: Any) -> Context:
        ctx = Context(
            netlink=True,
            hosts_file="/dev/null",
            resolv_conf=self.resolv_silent if silent_dns else self.resolv,
            on_callback_error=_reraise,
            **kw,
        )
        ctx.smd.register(self._on, SmdClass.NETWORK | SmdClass.SYSTEM_STATE)
        return ctx

    def _on(self, cls: SmdClass, ts: float, payload: bytes) -> None:
        msg = json.loads(payload)
        (self.states if cls is SmdClass.SYSTEM_STATE else self.net).append(msg)

    def results(self) -> list[str]:
        return [m["result"] for m in self.net if m.get("type") == "cpd"]

    def close(self) -> None:
        self.web.shutdown()
        self.web.server_close()
        self.silent.close()
        self.dnsmasq.stop()


def _reraise(wsi: Wsi | None, reason: Reason | None, exc: BaseException) -> None:
    raise exc


@pytest.fixture
def world(lab: Lab, tmp_path: Path) -> Iterator[World]:
    require_dnsmasq()
    w = World(lab, tmp_path)
    try:
        yield w
    finally:
        w.close()


def until(ctx: Context, cond: Any, passes: int = 1000) -> None:
    for _ in range(passes):
        if cond():
            return
        ctx.service(20)
    raise AssertionError("condition not reached")


def test_the_probe_goes_through_the_resolver_and_the_race(world: World) -> None:
    with world.context() as ctx:
        got: list[HttpResponse] = []
        ctx.http_get("http://portal.test/x", got.append, timeout=5)
        until(ctx, lambda: bool(got))
        resp = got[0]
        assert resp.status == 204 and resp.error is None
        assert resp.conmon is not None
        assert resp.conmon.dns_disposition == "OK"
        assert resp.conmon.dns_results == [world.lab.PEER]
        assert resp.conmon.protocol_specific == {"http": {"response": 204}}
        head = resp.caos[0]
        assert head.address == world.lab.PEER and head.gateway == world.lab.B_ADDR
        assert ctx.cao_db.query(host="portal.test")


def test_gateway_changes_probe_again_and_the_result_follows(world: World) -> None:
    lab = world.lab
    with world.context(cpd_url=URL) as ctx:
        until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL)
        assert ctx.cpd.result is CpdResult.INTERNET_OK and world.results() == ["OK"]
        i = world.states.index({"state": "CPD_PRE_TIME"})
        assert world.states[i + 1] == {"state": "TIME_VALID"}
        assert world.net.index({"type": "cpd", "result": "OK"}) >= 0

        # The portal appears; a new route with a gateway makes the netlink role ask for CPD.
        world.web.answer = (302, [("Location", "http://portal.test/login")], b"")
        lab.ip("a", "route", "add", "198.18.0.0/24", "via", lab.B_ADDR)
        until(ctx, lambda: len(world.results()) == 2 and not ctx.cpd.probing)
        assert {"trigger": "cpdcheck", "src": "gw-change"} in world.net
        assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL
        assert ctx.cpd.portal_url == "http://portal.test/login"

        # A login page instead of a redirect; the route goes again.
        world.web.answer = (200, [], b"<html>please log in</html>")
        lab.ip("a", "route", "del", "198.18.0.0/24", "via", lab.B_ADDR)
        until(ctx, lambda: len(world.results()) == 3 and not ctx.cpd.probing)
        assert ctx.cpd.result is CpdResult.CAPTIVE_PORTAL and ctx.cpd.portal_url is None

        # The user logged in: the next change finds the internet.
        world.web.answer = (204, [], b"")
        lab.ip("a", "route", "add", "198.18.1.0/24", "via", lab.B_ADDR)
        until(ctx, lambda: len(world.results()) == 4 and not ctx.cpd.probing)
        assert ctx.cpd.result is CpdResult.INTERNET_OK
        assert world.results() == ["OK", "Captive", "Captive", "OK"]
        assert ctx.cpd.probes == 4 == world.web.hits
        # A route without a gateway is no reason to probe.
        lab.ip("a", "route", "add", "198.18.2.0/24", "dev", "va")
        for _ in range(20):
            ctx.service(10)
        assert ctx.cpd.probes == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://gone.test/generate_204",  # NXDOMAIN from dnsmasq
        "http://203.0.113.1:81/generate_204",  # refused
    ],
)
def test_no_internet(world: World, url: str) -> None:
    with world.context(cpd_url=url) as ctx:
        until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL)
        assert ctx.cpd.result is CpdResult.NO_INTERNET
        assert world.results() == ["No internet"]


def test_a_silent_server_is_no_internet_after_the_timeout(world: World) -> None:
    lab = world.lab
    with lab.inside("b"):
        mute = socket.create_server((lab.PEER, 8080))  # the kernel accepts; nobody answers
    try:
        with world.context(cpd_url=f"http://{lab.PEER}:8080/", cpd_timeout_secs=0.5) as ctx:
            until(ctx, lambda: ctx.system.state is SystemState.CPD_PRE_TIME)
            while ctx.cpd.result is CpdResult.UNKNOWN:  # held while the server is silent
                assert ctx.system.state is SystemState.CPD_PRE_TIME and ctx.cpd.probing
                ctx.service(20)
            assert ctx.cpd.result is CpdResult.NO_INTERNET
            until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL)
            assert world.results() == ["No internet"]
    finally:
        mute.close()


def test_the_loop_never_blocks_while_the_probe_dns_server_is_silent(world: World) -> None:
    """Echo round trips go on, each pass short, while the probe's name waits on a DNS
    server that never answers (lws 5.0.99 stalls its loop in a blocking lookup here)."""
    lab = world.lab
    stamps: list[float] = []

    def echo_client(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if wsi is None:
            return 0
        if reason is Reason.RAW_CONNECTED:
            wsi.write(b"ping")
        elif reason is Reason.RAW_RX:
            stamps.append(wsi.ctx.now())
            wsi.write(b"ping")
        return 0

    with lab.inside("b"):
        echo_srv = socket.create_server((lab.PEER, 7))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = echo_srv.accept()
        with conn, contextlib.suppress(OSError):  # the context's close may reset it
            while not stop.is_set():
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    timeout = 2.0
    try:
        ctx = world.context(
            silent_dns=True,
            cpd_url=URL,
            cpd_timeout_secs=timeout,
            protocols=[Protocol("echo", echo_client)],
        )
        with ctx:
            until(ctx, lambda: ctx.cpd.result is not CpdResult.UNKNOWN, passes=500)
            ctx.connect(lab.PEER, 7, protocol="echo")
            until(ctx, lambda: bool(stamps))
            # The echo is running: a gateway change asks for a probe now.
            lab.ip("a", "route", "add", "198.18.0.0/24", "via", lab.B_ADDR)
            first = ctx.now()
            longest = 0.0
            until(ctx, lambda: ctx.cpd.probing)
            while ctx.cpd.probing:
                t0 = ctx.now()
                ctx.service(50)
                longest = max(longest, ctx.now() - t0)
                assert ctx.now() - first < 10 * timeout, "the probe never ended"
            assert ctx.cpd.result is CpdResult.NO_INTERNET and ctx.cpd.probes == 2
            assert ctx.now() - first >= timeout  # it waited for the deadline
            echoes = [t for t in stamps if t >= first]
            gaps = [b - a for a, b in itertools.pairwise(echoes)]
            # A blocking lookup would stall a pass for the resolver's whole timeout (1 s
            # per try here); the bound is half the probe timeout, far above a normal pass.
            assert longest < timeout / 2 and max(gaps) < timeout / 2
            assert len(echoes) > 100  # the echo kept going the whole time
            assert ctx.system.state is SystemState.OPERATIONAL
            print(
                f"passes <= {longest * 1000:.1f} ms, {len(echoes)} echoes, gap <= "
                f"{max(gaps) * 1000:.1f} ms while the probe's DNS was silent"
            )
    finally:
        stop.set()
        echo_srv.close()
        thread.join(5)
