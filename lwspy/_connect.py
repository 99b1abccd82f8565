"""``lwspy connect HOST PORT``: connect N times and show how each connect was made.

Each connect prints its CAO table (every attempt, HEAD first), its CONMON figures and a
text timeline of the attempts, so the Happy Eyeballs race and what the CAO database
learned from it are visible at a glance. The connects run one after the other in one
context, so the second one benefits from what the first one learned.

Exit status: 0 every connect succeeded, 1 at least one failed, 2 bad arguments, 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, TextIO

from lwspy import _output
from lwspy.core.client import literal_address
from lwspy.core.context import Context
from lwspy.core.protocol import Protocol, Reason
from lwspy.core.wsi import Wsi, WsiState
from lwspy.net.hosts import HOSTNAME
from lwspy.system.state import SystemState

__all__ = ["LEGEND", "add_parser", "connect_once", "run"]

LEGEND = (
    "A CAO (connection attempt object) records one attempt to one address. HEAD is the\n"
    "attempt that WON and holds the socket; LOST_RACE marks an attempt that was still\n"
    "connecting when another won (RFC 8305 Happy Eyeballs). CONMON is the connection's\n"
    "monitoring: DNS time and answer, TCP handshake time."
)

EPILOG = """\
example:
  lwspy connect localhost 22 -n 2
  lwspy connect 198.51.100.7 80 --json --iface eth0

exit status: 0 every connect succeeded, 1 at least one failed, 2 bad arguments,
  130 interrupted
"""


def _quiet(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is not None and reason is Reason.CLIENT_CONNECTION_ERROR:
        wsi.user = data  # the reason string, read back by connect_once
    return 0


def connect_once(
    ctx: Context, host: str, port: int, iface: str | None = None, timeout: float = 30.0
) -> tuple[Wsi, str | None]:
    """Connect once, servicing ``ctx`` until the outcome; returns the wsi (still open when
    it connected) and the error reason, None on success."""
    wsi = ctx.connect(host, port, protocol="lwspy-connect", iface=iface)
    deadline = ctx.now() + timeout
    while wsi.state in (WsiState.PENDING, WsiState.CONNECTING) and ctx.now() < deadline:
        ctx.service(50)
    if wsi.state is WsiState.ESTABLISHED:
        return wsi, None
    return wsi, str(wsi.user) if isinstance(wsi.user, str) else (wsi.close_reason or "failed")


def protocol() -> Protocol:
    """The client protocol :func:`connect_once` needs in the context."""
    return Protocol("lwspy-connect", _quiet, user_factory=lambda: None)


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """Run ``lwspy connect`` with parsed ``args``: the report to ``out``, a bad argument
    to ``err`` (default: ``out``); returns the exit status."""
    try:
        return _run(args, out, out if err is None else err)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    failed = 0
    if HOSTNAME.match(args.host) is None and literal_address(args.host) is None:
        # connect() reports this from the loop; on a command line it is a bad argument
        print(f"lwspy connect: invalid host name {args.host!r}", file=err)
        return 2
    with Context(protocols=[protocol()]) as ctx:
        # Until cold plug has read the route table, a CAO could not name its route.
        deadline = ctx.now() + 5
        while ctx.system.state is not SystemState.OPERATIONAL and ctx.now() < deadline:
            ctx.service(50)
        hosts = bool(ctx._hosts_lookup(args.host))  # connect() asks the hosts file first
        for n in range(1, args.n + 1):
            try:
                wsi, error = connect_once(ctx, args.host, args.port, args.iface)
            except ValueError as exc:
                print(f"lwspy connect: {exc}", file=err)
                return 2
            caos, conmon = wsi.caos, wsi.conmon
            if error is not None:
                failed += 1
            else:
                wsi.close("done")
                ctx.service(0)
            if args.json:
                record = _output.connect_record(caos, conmon)
                record["error"] = error
                print(json.dumps(record), file=out)
                continue
            if n == 1 and not args.quiet:
                print(LEGEND + "\n", file=out)
            what = "connected" if error is None else f"failed: {error}"
            print(f"connect #{n} to {args.host} port {args.port}: {what}", file=out)
            if not caos:  # e.g. NXDOMAIN: nothing to tabulate or draw
                print(f"  no attempt was made: {error}", file=out)
            for line in [
                *(_output.cao_table(caos) if caos else []),
                *_output.conmon_lines(conmon, hosts),
            ]:
                print(line, file=out)
            if caos:
                print("  timeline (from the first attempt's start):", file=out)
                for line in _output.timeline(caos):
                    print(line, file=out)
            print(file=out)
    return 1 if failed else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def add_parser(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``connect`` on the ``lwspy`` subparsers ``sub``; ``parents`` give ``-v``
    and ``-q`` (a count: with one or more the explanation of the terms is left out)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "connect",
        parents=list(parents),
        help="connect N times, print each connect's CAO table, CONMON and timeline",
        description="Connect to HOST PORT N times, one after the other in one context, and "
        "print each connect's CAOs (address, family, source, interface, gateway, result, "
        "time), its CONMON and a timeline of the attempts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("host", help="a name or an IP address")
    p.add_argument("port", type=int, help="TCP port")
    p.add_argument("-n", type=_positive, default=1, metavar="N", help="connects to make (1)")
    p.add_argument("--json", action="store_true", help="one JSON object per connect, a line each")
    p.add_argument("--iface", metavar="IF", help="source interface name or address")
    p.set_defaults(run=run)
    return p
