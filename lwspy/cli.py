"""The ``lwspy`` console script.

``lwspy demo`` shows what lwspy does (:mod:`lwspy._demo`); ``lwspy connect`` shows how
each connect was made (:mod:`lwspy._connect`); ``lwspy routes`` prints the routing table as
lwspy follows it (``--watch``: its changes); ``lwspy smd`` watches system messages;
``lwspy cpd URL`` probes for a captive portal; ``lwspy bench`` runs the benchmarks of
tools/ quickly. Every command has ``--help`` with an example; the exit codes are in
:mod:`lwspy._output` and in ``lwspy --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lwspy import (
    USER_BASE,
    Context,
    SmdClass,
    SystemState,
    __version__,
    _connect,
    _demo,
)
from lwspy._output import (
    EXIT_CAPTIVE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Style,
    human_us,
)
from lwspy._output import table as table_lines

if TYPE_CHECKING:
    from lwspy.net.route import Route


# -- shared by the commands ------------------------------------------------------------

_DONE = f"""  {EXIT_OK}    done (a watch ended by --for, smd's --count or Ctrl-C counts as done,
       and so does a reader of the output that went away, as `| head` does)"""
EXIT_CODES = f"""exit status:
{_DONE}
  {EXIT_FAILED}    what the command checked failed (a connect, a probe, a benchmark)
  {EXIT_USAGE}    bad arguments
  {EXIT_UNAVAILABLE}    not available here (no netlink, a feature this build lacks,
       the benchmarks' tools/ folder not found)
  {EXIT_CAPTIVE}    cpd: a captive portal answered
  {EXIT_INTERRUPTED}  interrupted by Ctrl-C (commands that are not watches)"""

_TABLES = {254: "main", 255: "local"}
_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}


def _set_log_level(verbose: int, quiet: int) -> None:
    """-v: INFO, -vv: DEBUG, -q: ERROR only, on the "lwspy" logger, printed to stderr."""
    if not verbose and not quiet:
        return  # lwspy's default: warnings and errors, through logging's last resort
    import logging

    level = logging.ERROR if quiet else (logging.INFO if verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lwspy").setLevel(level)


class _Clock:
    """Seconds since the command started, for watch lines."""

    __slots__ = ("start",)

    def __init__(self) -> None:
        self.start = time.monotonic()

    def since(self, when: float | None = None) -> float:
        return (time.monotonic() if when is None else when) - self.start


class _Lines:
    """Prints watch lines, flushed; a reader that went away (``BrokenPipeError`` inside a
    callback, where the loop would only log it) stops the loop, and :meth:`check` raises
    it again outside."""

    __slots__ = ("broken", "ctx", "out")

    def __init__(self, out: TextIO, ctx: Context) -> None:
        self.out = out
        self.ctx = ctx
        self.broken = False

    def __call__(self, text: str) -> None:
        if self.broken:
            return
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            self.broken = True
            self.ctx.stop()

    def check(self) -> None:
        if self.broken:
            raise BrokenPipeError


def _run_for(ctx: Context, seconds: float | None) -> None:
    """Run the loop until ``ctx.stop()``, ``seconds`` or Ctrl-C (which ends it quietly)."""
    if seconds is not None:
        ctx.call_later(seconds, ctx.stop)
    with contextlib.suppress(KeyboardInterrupt):
        ctx.run()


def _netlink_context(err: TextIO, prog: str) -> Context | None:
    """A context following the kernel's routes, cold plug done; None (said why) if not."""
    try:
        ctx = Context(netlink=True)
    except (OSError, RuntimeError) as e:
        print(f"{prog}: netlink is not available here ({e}), so lwspy has no routes", file=err)
        return None
    deadline = time.monotonic() + 10.0
    while ctx.system.state < SystemState.DHCP and time.monotonic() < deadline:
        ctx.service(50)
    return ctx


def _payload(payload: bytes) -> object:
    """An SMD payload for --json: the JSON it holds, else its text."""
    text = payload.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- lwspy routes ----------------------------------------------------------------------


def route_dict(route: Route) -> dict[str, Any]:
    """A route as a JSON-able object: every Route field by name, plus ``dst`` as text."""
    fields = route._asdict()
    fields["dst"] = route.dst
    return fields


def _ifname(index: int | None) -> str:
    if index is None:
        return "-"
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)  # a link that is already gone


def _prefix(route: Route) -> str:
    if route.dst_len == 0 and route.table == 254:
        return "default"
    return f"{route.dst}/{route.dst_len}"


def _route_row(route: Route) -> list[object]:
    via = route.gateway or "-"
    if len(route.nexthops) > 1:
        via = ",".join(nh[0] or "-" for nh in route.nexthops)
    return [
        route.id,
        _prefix(route),
        via,
        ",".join(_ifname(i) for i in route.oifs) or "-",
        route.priority,
        _TABLES.get(route.table, str(route.table)),
        _TYPES.get(route.type, str(route.type)),
        route.prefsrc or "-",
    ]


_ROUTE_HEADERS = ["ID", "DST", "VIA", "DEV", "METRIC", "TABLE", "TYPE", "SRC"]


def _route_key(route: Route) -> tuple[int, int, int, int, int]:
    return (route.family, route.table != 254, route.dst_num, route.dst_len, route.priority)


def _selected(routes: Iterable[Route], args: argparse.Namespace) -> list[Route]:
    tables = {"main": {254}, "local": {255}, "all": {254, 255}}[args.table]
    families = {4: {socket.AF_INET}, 6: {socket.AF_INET6}}.get(args.family, set())
    return sorted(
        (r for r in routes if r.table in tables and (not families or r.family in families)),
        key=_route_key,
    )


def _routes(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    ctx = _netlink_context(err, "lwspy routes")
    if ctx is None:
        return EXIT_UNAVAILABLE
    with ctx:
        table = ctx.routes
        assert table is not None  # netlink=True made it
        routes = _selected(table, args)
        style = Style(out)
        if args.json:
            print(json.dumps([route_dict(r) for r in routes]), file=out, flush=True)
        else:
            lines = table_lines(_ROUTE_HEADERS, [_route_row(r) for r in routes])
            print(style.bold(lines[0]), file=out)
            for line in lines[1:]:
                print(line, file=out)
            out.flush()
        if not args.watch:
            return EXIT_OK
        clock = _Clock()
        seen = {r.id: r for r in table}
        say = _Lines(out, ctx)

        def changed(cls: SmdClass, ts: float, payload: bytes) -> None:
            now = {r.id: r for r in table}
            gone = _selected((r for i, r in seen.items() if i not in now), args)
            came = _selected((r for i, r in now.items() if i not in seen), args)
            seen.clear()
            seen.update(now)
            text = payload.decode("utf-8", "replace")
            if args.json:
                for word, batch in (("del", gone), ("add", came)):
                    for r in batch:
                        event = {"t": round(clock.since(ts), 6), "event": word}
                        say(json.dumps({**event, "route": route_dict(r)}))
                smd = {"t": round(clock.since(ts), 6), "event": "smd", "class": cls.name}
                say(json.dumps({**smd, "payload": _payload(payload)}))
                return
            stamp = f"{clock.since(ts):8.3f} s"
            for sign, batch, paint in (("-", gone, style.bad), ("+", came, style.good)):
                for row in table_lines(_ROUTE_HEADERS, [_route_row(r) for r in batch])[1:]:
                    say(f"{stamp}  {paint(sign)} {row}")
            say(f"{stamp}  {style.dim('smd NETWORK')} {text}")

        ctx.smd.register(changed, SmdClass.NETWORK)
        _run_for(ctx, args.seconds)
        say.check()
    return EXIT_OK


# -- lwspy smd -------------------------------------------------------------------------


_ALL_CLASSES = sum(SmdClass) | ((1 << 32) - USER_BASE)  # every system class, every user bit


def _classes(text: str) -> SmdClass | int:
    """``--classes`` names (network, system_state, ...), numbers or "all", comma-separated."""
    mask = 0
    for word in text.split(","):
        name = word.strip().upper().replace("-", "_")
        if name == "ALL":
            mask |= _ALL_CLASSES
        elif name in SmdClass.__members__:
            mask |= SmdClass[name]
        else:
            try:
                mask |= int(name, 0)
            except ValueError:
                names = ", ".join(m.lower() for m in SmdClass.__members__)
                raise argparse.ArgumentTypeError(
                    f"unknown class {word!r} (known: {names}, all, or a number)"
                ) from None
    if mask <= 0:
        raise argparse.ArgumentTypeError("no class given")
    return mask


def _class_name(cls: int) -> str:
    try:
        return SmdClass(cls).name or hex(cls)
    except ValueError:
        return hex(cls)


def _smd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    clock = _Clock()
    style = Style(out)
    count = [0]
    with Context(netlink=None) as ctx:
        say = _Lines(out, ctx)

        def show(cls: SmdClass, ts: float, payload: bytes) -> None:
            if args.count is not None and count[0] >= args.count:
                return  # the rest of this pass's messages, after ctx.stop()
            text = payload.decode("utf-8", "replace")
            if args.json:
                say(
                    json.dumps(
                        {
                            "t": round(clock.since(ts), 6),
                            "class": _class_name(cls),
                            "payload": _payload(payload),
                        }
                    )
                )
            else:
                say(f"{clock.since(ts):8.3f} s  {style.bold(_class_name(cls).ljust(12))}  {text}")
            count[0] += 1
            if args.count is not None and count[0] >= args.count:
                ctx.stop()

        ctx.smd.register(show, args.classes)
        _run_for(ctx, args.seconds)
        say.check()
    return EXIT_OK


# -- lwspy cpd -------------------------------------------------------------------------


_CPD_WORDS = {
    "INTERNET_OK": "the internet is reachable (the probe URL answered 204)",
    "CAPTIVE_PORTAL": "a captive portal answered in place of the probe URL",
    "NO_INTERNET": "no answer: the name, the connect or the response failed or timed out",
    "UNKNOWN": "no result within the time allowed",
}


def _cpd(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if importlib.util.find_spec("lwspy.system.cpd") is None:
        print(
            "lwspy cpd: captive portal detection is not in this build of lwspy yet",
            file=err,
        )
        return EXIT_UNAVAILABLE
    from lwspy.system.cpd import CpdResult

    started = time.monotonic()
    try:
        ctx = Context(cpd_url=args.url, cpd_timeout_secs=args.timeout)
    except (TypeError, ValueError) as e:
        print(f"lwspy cpd: {e}", file=err)
        return EXIT_USAGE
    with ctx:
        ended: list[float] = []

        def reported(cls: SmdClass, ts: float, payload: bytes) -> None:
            if b'"cpd"' in payload and not ended:  # {"type":"cpd","result":...}
                ended.append(ts)
                ctx.stop()

        ctx.smd.register(reported, SmdClass.NETWORK)
        ctx.call_later(args.timeout + 2.0, ctx.stop)  # the probe's own bound comes first
        ctx.run()
        result, portal = ctx.cpd.result, ctx.cpd.portal_url
    ms = ((ended[0] if ended else time.monotonic()) - started) * 1000
    if args.json:
        line = {"url": args.url, "result": result.name, "portal_url": portal, "ms": round(ms, 3)}
        print(json.dumps(line), file=out)
    else:
        style = Style(out)
        paint = style.good if result is CpdResult.INTERNET_OK else style.bad
        rows: list[list[object]] = [
            ["probe", args.url],
            ["result", f"{paint(result.name)}: {_CPD_WORDS[result.name]}"],
        ]
        if portal is not None:
            rows.append(["portal", portal])
        rows.append(["time", human_us(ms * 1000)])
        for row in table_lines(["", ""], rows)[1:]:
            print(row, file=out)
    if result is CpdResult.INTERNET_OK:
        return EXIT_OK
    return EXIT_CAPTIVE if result is CpdResult.CAPTIVE_PORTAL else EXIT_FAILED


# -- lwspy bench -----------------------------------------------------------------------

# name: (script and quick arguments, needs network namespaces)
BENCHES: dict[str, tuple[list[str], bool]] = {
    "smd": (["bench_smd.py", "--messages", "20000", "--repeat", "3"], False),
    "route": (
        ["bench_route.py", "--no-pyroute2", "--routes", "20000", "--repeat", "2"],
        False,
    ),
    "echo": (["bench_echo.py", "--quick", "--reps", "1"], False),
    "connect": (["bench_connect.py", "--quick"], True),
    "netlink": (["bench_netlink.py", "--quick"], True),
}
_DEFAULT_BENCHES = "smd,route,echo"


def find_tools(given: str | None) -> Path | None:
    """The benchmarks' folder: ``given``, else $LWSPY_TOOLS, else the source tree's tools/,
    else ./tools (an installed ``lwspy bench`` run in a checkout's top folder)."""
    candidates = [given] if given else []
    if os.environ.get("LWSPY_TOOLS"):
        candidates.append(os.environ["LWSPY_TOOLS"])
    candidates.append(str(Path(__file__).resolve().parent.parent / "tools"))
    candidates.append(str(Path.cwd() / "tools"))
    for c in candidates:
        if (Path(c) / "bench_smd.py").is_file():
            return Path(c)
    return None


def _bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown or not names:
        print(f"lwspy bench: unknown benchmark {unknown} (known: {', '.join(BENCHES)})", file=err)
        return EXIT_USAGE
    tools = find_tools(args.tools)
    if tools is None:
        print(
            "lwspy bench: the benchmarks live in the tools/ folder of lwspy's source tree, "
            "which an installed package does not carry: give --tools DIR (a checkout's "
            "tools/ folder), set LWSPY_TOOLS=DIR, or run it in a checkout's top folder",
            file=err,
        )
        return EXIT_UNAVAILABLE
    style = Style(out)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    summary: list[list[object]] = []
    for name in names:
        script, needs_netns = BENCHES[name]
        if needs_netns and os.geteuid() != 0:
            summary.append([name, "skipped: needs root (network namespaces)", "-"])
            continue
        print(style.bold(f"== {name}: {' '.join(script)}"), file=out, flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(tools / script[0]), *script[1:]],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                timeout=args.timeout,
            )
        except subprocess.TimeoutExpired:
            summary.append([name, f"FAILED: no end within {args.timeout:g} s", "-"])
            continue
        print(done.stdout.rstrip(), file=out, flush=True)
        if args.verbose or done.returncode != 0:
            print(done.stderr.rstrip(), file=err)
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        summary.append([name, status, f"{time.monotonic() - started:.1f} s"])
    print(file=out)
    for line in table_lines(["BENCHMARK", "RESULT", "TIME"], summary):
        print(line, file=out)
    failed = any(str(row[1]).startswith("FAILED") for row in summary)
    return EXIT_FAILED if failed else EXIT_OK


# -- the parser ------------------------------------------------------------------------


def _example(*lines: str, ends: str = "") -> str:
    """An epilog: the examples, then the exit statuses; ``ends`` names how the command's
    watch ends (its options), or "" for a command that is no watch."""
    done = (
        f"  {EXIT_OK}    done (a watch ended by {ends} counts as done, and so does a\n"
        "       reader of the output that went away, as `| head` does)"
        if ends
        else f"  {EXIT_OK}    done (also when a reader of the output went away, as `| head`)"
    )
    codes = EXIT_CODES.replace(_DONE, done, 1)
    return "example:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + codes


def build_parser() -> argparse.ArgumentParser:
    """The ``lwspy`` argument parser, with every subcommand."""
    # -v/-q before the command (top level, default 0) or after it (a subcommand's, whose
    # default must not overwrite the top level's: SUPPRESS)
    top, common = (argparse.ArgumentParser(add_help=False) for _ in range(2))
    for p, default in ((top, 0), (common, argparse.SUPPRESS)):
        p.add_argument(
            "-v", "--verbose", action="count", default=default, help="log more (-v info, -vv debug)"
        )
        p.add_argument("-q", "--quiet", action="count", default=default, help="log errors only")
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="lwspy",
        description="lwspy, a selectors-based event loop in the style of libwebsockets.",
        epilog="example:\n  lwspy demo\n  lwspy routes --watch\n\n"
        + EXIT_CODES
        + "\n\nAlso runs as: python -m lwspy. Each command has --help.",
        formatter_class=fmt,
        parents=[top],
    )
    parser.add_argument("--version", action="version", version=f"lwspy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _demo.add_parser(sub, [common])
    _connect.add_parser(sub, [common])

    routes = sub.add_parser(
        "routes",
        help="the routing table as lwspy follows it (netlink), with route ids",
        description="Print the routes lwspy's netlink role holds (tables main and local; "
        "like `ip route`, plus lwspy's route id). With --watch, print every change and "
        "every SMD NETWORK message as it happens (like `ip monitor route`); + is a route "
        "that came, - one that went.",
        epilog=_example(
            "lwspy routes",
            "lwspy routes --table all -6",
            "lwspy routes --watch --for 60",
            ends="--for or Ctrl-C",
        ),
        formatter_class=fmt,
        parents=[common],
    )
    routes.add_argument("--watch", action="store_true", help="then print changes as they come")
    routes.add_argument(
        "--json",
        action="store_true",
        help="one JSON array of routes (the Route field names); with --watch, then one "
        "JSON object per change",
    )
    routes.add_argument("--table", choices=("main", "local", "all"), default="main", help="(main)")
    fam = routes.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    routes.add_argument("--for", dest="seconds", type=_seconds, help="stop watching after SECONDS")
    routes.set_defaults(run=_routes)

    smd = sub.add_parser(
        "smd",
        help="watch SMD system messages (state, network, ...)",
        description="Run a context and print the SMD messages of the chosen classes as "
        "they are delivered: its own SYSTEM_STATE steps, NETWORK messages from the netlink "
        "role (route changes, CPD triggers), ... Times are seconds since the start.",
        epilog=_example(
            "lwspy smd", "lwspy smd --classes network --json", ends="--for, --count or Ctrl-C"
        ),
        formatter_class=fmt,
        parents=[common],
    )
    smd.add_argument(
        "--classes",
        type=_classes,
        default=_classes("all"),
        help="comma-separated: interaction, system_state, network, metrics, all, or a "
        "number for user classes (all)",
    )
    smd.add_argument("--json", action="store_true", help="one JSON object per message")
    smd.add_argument("--count", type=_positive, help="stop after N messages")
    smd.add_argument("--for", dest="seconds", type=_seconds, help="stop after SECONDS")
    smd.set_defaults(run=_smd)

    cpd = sub.add_parser(
        "cpd",
        help="captive portal detection against URL",
        description="Probe URL the way CPD does (an HTTP GET through lwspy's own client: "
        "204 means the internet is reachable, any other answer a captive portal, no answer "
        "no internet) and print the result and the portal's URL. Exit status 0 for "
        f"internet, {EXIT_CAPTIVE} for a captive portal, {EXIT_FAILED} for no internet.",
        epilog=_example("lwspy cpd http://connectivity-check.test/generate_204"),
        formatter_class=fmt,
        parents=[common],
    )
    cpd.add_argument("url", metavar="URL", help="an http:// URL that answers 204")
    cpd.add_argument("--json", action="store_true", help="one JSON object")
    cpd.add_argument("--timeout", type=float, default=3.0, help="seconds the probe may take (3)")
    cpd.set_defaults(run=_cpd)

    bench = sub.add_parser(
        "bench",
        help="run the benchmarks of tools/ quickly, print their ratio tables",
        description="Run quick versions of the benchmarks in the source tree's tools/ "
        "folder, each against its peers in the same run, and print their tables (ratios "
        f"to the peers). Known: {', '.join(BENCHES)}; connect and netlink build network "
        "namespaces and need root. The full runs: python tools/bench_NAME.py --help.",
        epilog=_example("lwspy bench", "lwspy bench --only smd,connect"),
        formatter_class=fmt,
        parents=[common],
    )
    bench.add_argument(
        "--only", default=_DEFAULT_BENCHES, help=f"comma-separated ({_DEFAULT_BENCHES})"
    )
    bench.add_argument("--tools", help="the tools/ folder (default: next to the package)")
    bench.add_argument("--timeout", type=float, default=300.0, help="seconds per benchmark (300)")
    bench.set_defaults(run=_bench)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the ``lwspy`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _set_log_level(args.verbose, args.quiet)
    run: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.run
    try:
        return run(
            args, out if out is not None else sys.stdout, err if err is not None else sys.stderr
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into head: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
