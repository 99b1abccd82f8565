"""``lwspy demo``: what lwspy does that other loops do not, narrated with real timings.

As root (with iproute2 and dnsmasq) the demo builds a private lab (:mod:`lwspy._lab`) and
shows, in one lwspy loop: a Happy Eyeballs race against a name whose IPv6 address is
black-holed, recorded as CAOs; a second connect that goes straight through because the
CAO database learned; a deleted route closing its connection at once while a loopback
one stays; and a gateway change triggering captive portal detection. Elsewhere it runs
the loopback part and says what it skipped and why. Everything the lab makes is removed
at exit, on Ctrl-C (or SIGTERM) and on an error.

Exit status: 0 the demo ran to its end and each step did what it showed, 1 a step did
not (the narration says which), 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from lwspy import _lab, _output
from lwspy.core.context import Context
from lwspy.core.protocol import Protocol, Reason
from lwspy.core.wsi import Wsi, WsiState
from lwspy.net.cao import Cao, CaoResult
from lwspy.system.cpd import CpdResult
from lwspy.system.smd import SmdClass
from lwspy.system.state import SystemState

__all__ = ["TERMS", "add_parser", "run"]

TERMS = {
    "CAO": "a Connection Attempt Object: lwspy's record of one attempt to connect to one "
    "address (source, interface, gateway, result, time)",
    "HEAD": "the CAO that won: it holds the socket; the other attempts hang off its tail",
    "WON": "the attempt that connected first",
    "LOST_RACE": "an attempt that was still connecting when another won; closed, and "
    "remembered in ctx.cao_db so the next connect demotes that path",
    "CONMON": "connection monitoring: how long DNS and the TCP handshake took, and what "
    "DNS answered (lws's CONMON)",
}

EPILOG = """\
example:
  sudo lwspy demo        the full demo in a private network lab (needs iproute2, dnsmasq)
  lwspy demo --no-lab    the loopback part only
  lwspy demo -v          also print each SMD message as it comes

exit status: 0 every step did what it showed, 1 a step did not, 130 interrupted
"""

MESSAGE = b"hello through lwspy\n"


class DemoFailed(Exception):
    """A step did not do what the narration was about to show."""


class Narrator:
    """Prints the story; explains each term the first time it appears."""

    def __init__(self, out: TextIO, verbose: bool) -> None:
        self.out = out
        self.verbose = verbose
        self.explained: set[str] = set()
        self.failures: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def para(self, text: str, indent: str = "") -> None:
        """A paragraph, wrapped to 88 columns; its leading spaces indent every line."""
        body = text.lstrip(" ")
        indent += text[: len(text) - len(body)]
        self.say(textwrap.fill(body, 88, initial_indent=indent, subsequent_indent=indent))

    def lines(self, lines: list[str]) -> None:
        for line in lines:
            self.say(line)

    def terms(self, *names: str) -> None:
        """Explain those of ``names`` not explained yet."""
        for name in names:
            if name not in self.explained:
                self.explained.add(name)
                self.para(f"{name}: {TERMS[name]}.", "  ")

    def check(self, ok: bool, what: str) -> None:
        """Record a step that did not do what it showed."""
        if not ok:
            self.failures.append(what)
            self.say(f"  !! unexpected: {what}")


class Client:
    """Per-connection state of the demo's client protocol."""

    __slots__ = ("closed_at", "connected_at", "error", "rx")

    def __init__(self) -> None:
        self.rx = bytearray()
        self.connected_at: float | None = None
        self.closed_at: float | None = None
        self.error: str | None = None


def _client(wsi: Wsi | None, reason: Reason, user: Client, data: Any) -> int:
    if wsi is None:
        return 0
    if reason is Reason.RAW_CONNECTED:
        user.connected_at = time.monotonic()
    elif reason is Reason.RAW_RX:
        user.rx += data
    elif reason is Reason.CLIENT_CONNECTION_ERROR:
        user.error = str(data)
        user.closed_at = time.monotonic()
    elif reason is Reason.RAW_CLOSE:
        user.closed_at = time.monotonic()
    return 0


def _echo(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is not None and reason is Reason.RAW_RX:
        wsi.write(data)
    return 0


def _portal(wsi: Wsi | None, reason: Reason, user: bytearray, data: Any) -> int:
    # A captive portal: whatever is asked, the answer is a redirect to its login page.
    if wsi is not None and reason is Reason.RAW_RX:
        user += data
        if b"\r\n\r\n" in user:
            wsi.write(
                b"HTTP/1.1 302 Found\r\nLocation: http://"
                + _lab.Lab.PORTAL.encode()
                + b"/login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            wsi.close("answered")
    return 0


def _protocols() -> list[Protocol]:
    return [
        Protocol("demo-echo", _echo),
        Protocol("demo-client", _client, user_factory=Client),
        Protocol("demo-portal", _portal, user_factory=bytearray),
    ]


class Peer(threading.Thread):
    """The far side of the lab: its own lwspy loop in namespace "b", in a thread of its own
    (setns is per thread): an echo server on every address, the portal on port 80."""

    def __init__(self, ns_fd: int) -> None:
        super().__init__(name="lwspy-demo-peer", daemon=True)
        self.ns_fd = ns_fd
        self.ready = threading.Event()
        self.port = 0
        self.ctx: Context | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _lab.setns_thread(self.ns_fd)
            with Context(protocols=_protocols(), netlink=False) as ctx:
                self.port = ctx.create_vhost("echo", port=0, protocols=["demo-echo"]).listen_port
                ctx.create_vhost("portal", port=80, protocols=["demo-portal"])
                self.ctx = ctx
                self.ready.set()
                ctx.run()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.ready.set()

    def stop(self) -> None:
        if self.ctx is not None and not self.ctx.destroyed:
            self.ctx.call_from_thread(self.ctx.stop)
        self.join(5)


def _until(ctx: Context, cond: Callable[[], bool], timeout: float) -> bool:
    """Service ``ctx`` until ``cond()`` or ``timeout`` seconds; returns ``cond()``."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        ctx.service(20)
    return cond()


def _connect(ctx: Context, host: str, port: int) -> tuple[Wsi, Client, float]:
    """Connect and wait for the outcome; returns the wsi, its state and the seconds taken."""
    t0 = time.monotonic()
    wsi = ctx.connect(host, port, protocol="demo-client")
    user: Client = wsi.user
    _until(ctx, lambda: user.connected_at is not None or user.closed_at is not None, 30)
    end = user.connected_at or user.closed_at or time.monotonic()
    return wsi, user, end - t0


def _echo_rtt(ctx: Context, wsi: Wsi) -> float | None:
    """Send MESSAGE, wait for it to come back; the round trip in seconds, None if not."""
    user: Client = wsi.user
    user.rx.clear()
    t0 = time.monotonic()
    wsi.write(MESSAGE)
    if not _until(ctx, lambda: bytes(user.rx) == MESSAGE, 5):
        return None
    return time.monotonic() - t0


def _show_connect(say: Narrator, wsi: Wsi, now: float) -> None:
    say.lines(_output.cao_table(wsi.caos))
    say.lines(_output.conmon_lines(wsi.conmon))
    say.say("  timeline (from the first attempt's start):")
    say.lines(_output.timeline(wsi.caos, now=now))


def _smd_listener(ctx: Context, say: Narrator) -> list[tuple[SmdClass, bytes]]:
    got: list[tuple[SmdClass, bytes]] = []

    def heard(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append((cls, payload))
        if say.verbose:
            say.say(f"  [smd {cls.name}] {payload.decode(errors='replace')}")

    ctx.smd.register(heard, SmdClass.NETWORK | SmdClass.SYSTEM_STATE)
    return got


def loopback_part(say: Narrator, ctx: Context) -> Wsi | None:
    """An echo server and a client on 127.0.0.1 in the one loop; returns the open client."""
    _until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL, 5)
    vh = ctx.create_vhost("loopback", port=0, iface="127.0.0.1", protocols=["demo-echo"])
    say.para(
        f"First, on loopback: an echo server listens on 127.0.0.1 port {vh.listen_port}, "
        "in the same loop as the client."
    )
    wsi, user, took = _connect(ctx, "127.0.0.1", vh.listen_port)
    if user.error is not None:
        say.check(False, f"the loopback connect failed: {user.error}")
        return None
    rtt = _echo_rtt(ctx, wsi)
    say.check(rtt is not None, "the loopback echo did not come back")
    say.para(
        f"A client connected to it in {_output.human_seconds(took)}"
        + (
            f" and {len(MESSAGE)} bytes made the round trip in {_output.human_seconds(rtt)}."
            if rtt is not None
            else "."
        )
    )
    say.say("Its connection attempt, as lwspy recorded it:")
    say.terms("CAO", "HEAD", "WON", "CONMON")
    _show_connect(say, wsi, time.monotonic())
    return wsi


def _losers(caos: list[Cao]) -> list[Cao]:
    return [c for c in caos if c.result is CaoResult.LOST_RACE]


def lab_part(say: Narrator, lab: _lab.Lab, peer: Peer) -> None:
    """The lab story; ``lab`` is built and this thread is in its namespace "a"."""
    ctx = Context(
        protocols=_protocols(),
        netlink=True,
        nameservers=[lab.B_ADDR],
        hosts_file="/dev/null",
        cpd_url=f"http://{lab.CHECK}/generate_204",
    )
    try:
        _lab_story(say, lab, peer, ctx)
    finally:
        ctx.destroy()


def _lab_story(say: Narrator, lab: _lab.Lab, peer: Peer, ctx: Context) -> None:
    smd = _smd_listener(ctx, say)
    up = _until(ctx, lambda: ctx.system.state is SystemState.OPERATIONAL, 5)
    say.check(up, "the context did not reach OPERATIONAL")
    routes = ctx.routes
    say.para(
        f'lwspy\'s context in "a" read the routing table over netlink ({len(routes or [])} '
        "routes) and follows every change from now on, in the same loop."
    )
    cpd = ctx.cpd
    say.check(cpd.result is CpdResult.NO_INTERNET, "CPD at start-up found a way out")
    if cpd.probes:
        say.para(
            f"At start-up captive portal detection found {cpd.result.name}: the probe's "
            f"host, {lab.CHECK} ({lab.PORTAL_ADDR}), has no route yet."
        )
    loop = loopback_part(say, ctx)
    port = peer.port
    say.say()
    say.para(
        f'Step 1. Connect to {lab.NAME} port {port}. DNS (dnsmasq in "b") answers with an '
        f"IPv6 address, {lab.HOLE6}, that nobody holds (a black hole: a connect to it "
        f"hangs for seconds) and an IPv4 one, {lab.PEER}."
    )
    w1, u1, took1 = _connect(ctx, lab.NAME, port)
    if u1.error is not None:
        say.check(False, f"connect #1 failed: {u1.error}")
        return
    say.terms("LOST_RACE")
    _show_connect(say, w1, time.monotonic())
    head, lost = w1.caos[0], _losers(w1.caos)
    say.check(bool(lost) and lost[0].address == lab.HOLE6, "IPv6 did not lose the race")
    if lost:
        say.para(
            f"  IPv6 went first (RFC 6724 prefers it). It had no answer after "
            f"{_output.human_seconds(head.started - lost[0].started)}, so lwspy started "
            f"IPv4 alongside it (RFC 8305 Happy Eyeballs); IPv4 connected in "
            f"{_output.human_ms(head.connect_us)} and the IPv6 attempt was closed."
        )
    say.say(f"  Connect #1 took {_output.human_seconds(took1)} in all.")
    w1.close("done")
    say.say()
    say.para(
        f"Step 2. Connect to {lab.NAME} again. ctx.cao_db remembers that IPv6 lost: "
        "that path is demoted and IPv4 goes first."
    )
    w2, u2, took2 = _connect(ctx, lab.NAME, port)
    if u2.error is not None:
        say.check(False, f"connect #2 failed: {u2.error}")
        return
    _show_connect(say, w2, time.monotonic())
    straight = [c.result for c in w2.caos] == [CaoResult.WON] and w2.caos[0].address == lab.PEER
    say.check(straight, "connect #2 did not go straight to IPv4")
    rtt = _echo_rtt(ctx, w2)
    say.check(rtt is not None, "the echo through the lab did not come back")
    if w2.conmon is not None and w2.conmon.dns_us < 1000:
        say.para("  DNS came from lwspy's resolver cache this time (the answer's TTL holds).")
    say.para(
        f"  Connect #2 took {_output.human_seconds(took2)}, no race"
        + (f"; the echo server answered in {_output.human_seconds(rtt)}." if rtt else ".")
    )
    say.say()
    say.para(
        f"Step 3. Delete the route to {lab.PEER_NET} (the echo server's network) while "
        "connection #2 is open. TCP alone would notice only when it next sends and its "
        "retransmissions time out, minutes later."
    )
    seen = len(smd)
    probes = cpd.probes
    t0 = time.monotonic()
    lab.ip("a", "route", "del", lab.PEER_NET)
    gone = _until(ctx, lambda: u2.closed_at is not None, 5)
    say.check(gone and w2.close_reason == "route lost", "connection #2 was not closed")
    if gone and u2.closed_at is not None:
        say.para(
            f"  lwspy closed connection #2 {_output.human_seconds(u2.closed_at - t0)} after "
            f"the delete, close_reason {w2.close_reason!r}."
        )
    stays = loop is not None and loop.state is WsiState.ESTABLISHED
    rtt = _echo_rtt(ctx, loop) if loop is not None and stays else None
    say.check(stays and rtt is not None, "the loopback connection did not stay")
    if rtt is not None:
        say.para(
            "  The loopback connection was left alone: it still echoes "
            f"({_output.human_seconds(rtt)})."
        )
    _until(ctx, lambda: len(smd) > seen, 1)
    # The delete removed a route with a gateway: CPD runs again.
    _until(ctx, lambda: cpd.probes > probes and not cpd.probing, cpd.timeout + 2)
    _show_smd(say, smd[seen:])
    say.para(
        f"  That route had a gateway, so lwspy also ran CPD again: {cpd.result.name} "
        f"(the probe's host, {lab.PORTAL_ADDR}, has no route now)."
    )
    say.say()
    _cpd_step(say, lab, ctx, smd)
    if loop is not None:
        loop.close("done")
    _until(ctx, lambda: not ctx.wsis, 1)


def _show_smd(say: Narrator, messages: list[tuple[SmdClass, bytes]]) -> None:
    net = [p.decode(errors="replace") for c, p in messages if c & SmdClass.NETWORK]
    if net:
        say.say("  lwspy posted on SMD (its in-process message queue), class NETWORK:")
        say.lines([f"    {p}" for p in net])


def _cpd_step(
    say: Narrator, lab: _lab.Lab, ctx: Context, smd: list[tuple[SmdClass, bytes]]
) -> None:
    say.para(
        f"Step 4. A gateway change: add a default route via {lab.B_ADDR}. Behind a new "
        "gateway there may be a captive portal, so lwspy checks (CPD, captive portal "
        f"detection: an HTTP GET of a probe URL, {lab.CHECK} here, that must answer 204)."
    )
    cpd = ctx.cpd
    before = cpd.probes
    seen = len(smd)
    t0 = time.monotonic()
    lab.ip("a", "route", "add", "default", "via", lab.B_ADDR)
    heard = _until(ctx, lambda: any(b"cpdcheck" in p for _, p in smd[seen:]), 3)
    say.check(heard, "no cpdcheck message after the gateway change")
    done = _until(ctx, lambda: cpd.probes > before and not cpd.probing, cpd.timeout + 2)
    _show_smd(say, smd[seen:])
    result = cpd.result.name
    say.check(done and result == "CAPTIVE_PORTAL", f"CPD found {result}, not the portal")
    say.para(
        f"CPD probed {lab.CHECK} and got a redirect, not a 204: result {result}, portal "
        f"URL {cpd.portal_url}, {_output.human_seconds(time.monotonic() - t0)} after the "
        "route change. An application would now show the portal's login page.",
        "  ",
    )


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, like Ctrl-C, so cleanup runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _lab_run(say: Narrator) -> None:
    swept = _lab.sweep()
    if swept:
        say.say(f"(removed {len(swept)} namespaces left by an earlier, killed run)")
    t0 = time.monotonic()
    lab = _lab.Lab()
    peer: Peer | None = None
    try:
        lab.build()
        lab.enter_a()
        peer = Peer(lab.ns_fd("b"))
        peer.start()
        peer.ready.wait(5)
        if peer.error is not None or peer.ctx is None:
            raise DemoFailed(f"the lab's servers did not start: {peer.error}")
        say.para(
            f"Built a private network lab in {_output.human_seconds(time.monotonic() - t0)}: "
            f'namespace "a" ({lab.A_ADDR}, {lab.A_ADDR6}) runs this demo\'s lwspy loop; '
            f'"b" ({lab.B_ADDR}) is its router, with dnsmasq (DNS), an echo server '
            f"(on {lab.PEER}) and a captive portal. Documentation addresses only."
        )
        lab_part(say, lab, peer)
        say.say()
        say.para(
            "What this showed: lwspy records every connect attempt (CAOs) and learns from "
            "them; it follows the routing table and closes a connection the moment its "
            "route goes, leaving the others alone; and it notices a gateway change"
            + " and checks for a captive portal."
            + " The client side was one single-threaded lwspy loop; the lab's servers ran "
            "in a second one, in a thread of their own."
        )
    finally:
        if peer is not None:
            peer.stop()
        lab.destroy()
        say.say(f"Removed the lab (namespaces {lab.ns['a']}, {lab.ns['b']}; dnsmasq stopped).")


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """Run ``lwspy demo`` with parsed ``args``; returns the exit status. The story goes
    to ``out``, all of it (a failure is part of the story); ``err`` is not used."""
    say = Narrator(out, args.verbose)
    t0 = time.monotonic()
    if args.no_lab:
        found: tuple[str, str] | None = (
            "--no-lab was given",
            "Run it without --no-lab to see them.",
        )
    else:
        found = _lab.why_not_and_fix()
    why, fix = (None, "") if found is None else found
    try:
        with _signals_interrupt():
            if why is None:
                _lab_run(say)
            else:
                with Context(protocols=_protocols()) as ctx:
                    smd = _smd_listener(ctx, say)
                    loop = loopback_part(say, ctx)
                    if loop is not None:
                        loop.close("done")
                    _until(ctx, lambda: not ctx.wsis, 1)
                    del smd
                say.say()
                say.para(
                    "Skipped the network lab (a Happy Eyeballs race against a black-holed "
                    "IPv6 address, a connection closed the moment its route goes, captive "
                    f"portal detection on a gateway change): {why}. {fix}"
                )
    except KeyboardInterrupt:
        say.say("Interrupted; everything the demo made has been removed.")
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): main() ends quietly
        raise
    except (DemoFailed, RuntimeError, OSError) as exc:
        say.say(f"The demo failed: {exc}")
        return 1
    took = _output.human_seconds(time.monotonic() - t0)
    if say.failures:
        say.say(f"Demo finished in {took} with {len(say.failures)} unexpected results.")
        return 1
    say.say(f"Demo finished in {took}.")
    return 0


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``lwspy`` subparsers ``sub``; ``parents`` give ``-v``
    (a count: with one or more the demo also prints each SMD message) and ``-q``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        parents=list(parents),
        help="the lwspy demo: Happy Eyeballs, CAOs, route loss, CPD in a private lab",
        description="As root, build a private network lab (two namespaces, dnsmasq, an echo "
        "server, a captive portal) and show what lwspy does there, with real timings; "
        "elsewhere run the loopback part and say what was skipped. Everything the lab "
        "makes is removed at exit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--no-lab", action="store_true", help="run only the loopback part")
    p.set_defaults(run=run)
    return p
