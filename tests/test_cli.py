"""The ``lwspy`` commands other than demo/connect: in-process (for coverage) and as the
console script in a subprocess (for the real output). The namespace parts (``routes``
against ``ip -j route``, ``--watch``) are in tests/netns/test_cli.py."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwspy import SmdClass, cli
from lwspy._output import (
    EXIT_CAPTIVE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Style,
    human_us,
    table,
)
from lwspy.net.nlmsg import Route

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["demo", "routes", "smd", "cpd", "bench"]


def lwspy(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("LWSPY_TOOLS", None)
    env.update(kw.pop("env", {}))  # type: ignore[call-overload]
    return subprocess.run(
        [sys.executable, "-m", "lwspy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=kw.pop("cwd", ROOT),  # type: ignore[arg-type]
    )


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def restore_logger() -> Iterator[None]:
    logger = logging.getLogger("lwspy")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_the_exit_codes(command: str) -> None:
    done = lwspy(command, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"usage: lwspy {command}")
    example = text.split("example:\n", 1)[1].splitlines()[0]
    assert f"lwspy {command}" in example  # ("  sudo lwspy demo" counts)
    assert "exit status:" in text and "130" in text
    assert "-v, --verbose" in text and "-q, --quiet" in text


def test_top_level_help_lists_every_command() -> None:
    done = lwspy("--help")
    assert done.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in done.stdout


def test_smd_prints_the_contexts_own_state_steps() -> None:
    code, out, _ = run("smd", "--classes", "system_state", "--count", "3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["0.000", "s", "SYSTEM_STATE", '{"state":"INITIALIZED"}'] or (
        lines[0].split()[1:] == ["s", "SYSTEM_STATE", '{"state":"INITIALIZED"}']
    )
    assert '{"state":"DHCP"}' in lines[2]


def test_smd_json_is_one_object_a_line_until_operational() -> None:
    done = lwspy("smd", "--json", "--classes", "system_state,network", "--for", "1")
    assert done.returncode == 0, done.stderr
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert {m["class"] for m in messages} <= {"SYSTEM_STATE", "NETWORK"}
    states = [m["payload"]["state"] for m in messages if m["class"] == "SYSTEM_STATE"]
    assert states[0] == "INITIALIZED" and states[-1] == "OPERATIONAL"
    times = [m["t"] for m in messages]
    assert times == sorted(times) and times[0] >= 0


def test_smd_classes_take_names_numbers_and_all() -> None:
    assert cli._classes("network,System-State") == SmdClass.NETWORK | SmdClass.SYSTEM_STATE
    assert cli._classes("0x1000000") == 1 << 24
    everything = cli._classes("all")
    assert everything & SmdClass.METRICS and everything & (1 << 31)
    assert cli._class_name(1 << 25) == "0x2000000"
    assert cli._class_name(SmdClass.NETWORK) == "NETWORK"
    done = lwspy("smd", "--classes", "bogus")
    assert done.returncode == 2 and "unknown class 'bogus'" in done.stderr
    done = lwspy("smd", "--classes", "0")
    assert done.returncode == 2 and "no class given" in done.stderr
    done = lwspy("smd", "--count", "0")
    assert done.returncode == 2 and "must be >= 1" in done.stderr


class _Probe(http.server.BaseHTTPRequestHandler):
    answer = 204  # set per server, below

    def do_GET(self) -> None:
        self.send_response(self.answer)
        if self.answer == 302:
            self.send_header("Location", "http://portal.test/login")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def probe_server(answer: int) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every GET with ``answer``; yields its URL."""
    handler = type("Handler", (_Probe,), {"answer": answer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/generate_204"
    finally:
        server.shutdown()
        server.server_close()
        t.join()


def test_cpd_reports_the_internet() -> None:
    with probe_server(204) as url:
        done = lwspy("cpd", url)
    assert done.returncode == 0, done.stderr
    rows = [line.split(None, 1) for line in done.stdout.splitlines()]
    assert rows[0] == ["probe", url]
    assert rows[1][0] == "result" and rows[1][1].startswith("INTERNET_OK: ")
    assert rows[2][0] == "time" and rows[2][1].endswith(" ms")
    assert len(rows) == 3


def test_cpd_reports_a_captive_portal_and_its_url() -> None:
    with probe_server(302) as url:
        code, out, err = run("cpd", url)
        assert code == EXIT_CAPTIVE, err
        assert "result  CAPTIVE_PORTAL: a captive portal answered" in out
        assert "portal  http://portal.test/login" in out
        code, out, _ = run("cpd", "--json", url)
    assert code == EXIT_CAPTIVE
    line = json.loads(out)
    assert line["url"] == url and line["result"] == "CAPTIVE_PORTAL"
    assert line["portal_url"] == "http://portal.test/login" and line["ms"] > 0


def test_cpd_reports_no_internet_and_bad_urls() -> None:
    with socket.socket() as bound:  # bound, never listening: the probe's connect is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/generate_204"
        code, out, _ = run("cpd", "--json", "--timeout", "2", url)
    assert code == EXIT_FAILED
    assert json.loads(out)["result"] == "NO_INTERNET"
    code, out, err = run("cpd", "ftp://portal.test/")
    assert code == 2 and out == "" and "ftp://portal.test/" in err


def test_cpd_says_when_this_build_has_no_cpd(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "lwspy.system.cpd" else real(name)
    )
    code, out, err = run("cpd", "http://portal.test/generate_204")
    assert code == EXIT_UNAVAILABLE and out == ""
    assert "captive portal detection is not in this build" in err


def test_routes_lists_what_the_json_holds() -> None:
    code, out, err = run("routes", "--json", "--table", "all")
    if code == EXIT_UNAVAILABLE:
        if os.environ.get("LWSPY_REQUIRE_NETNS") == "1":  # CI: netlink must be there
            pytest.fail(f"LWSPY_REQUIRE_NETNS=1 but no netlink here: {err}")
        pytest.skip(f"no netlink here: {err}")
    routes = json.loads(out)
    code, text, _ = run("routes", "--table", "all")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split() == cli._ROUTE_HEADERS
    assert len(lines) == 1 + len(routes)
    # route ids are per process run (a serial taken at decode), the rest is the same
    prefixes = sorted(line.split()[1] for line in lines[1:])
    assert prefixes == sorted(cli._prefix(_route(r)) for r in routes)
    for r in routes:
        assert set(r) == {*Route._fields, "dst"}
        assert Route(**{k: v for k, v in r.items() if k != "dst"}).dst == r["dst"]
    code, v4, _ = run("routes", "-4", "--json")
    assert all(r["family"] == 2 and r["table"] == 254 for r in json.loads(v4))


def _route(fields: dict[str, object]) -> object:
    return Route(**{k: v for k, v in fields.items() if k != "dst"})


def test_routes_without_netlink_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**options: object) -> object:
        raise OSError(93, "Protocol not supported")

    monkeypatch.setattr(cli, "Context", refuse)
    code, out, err = run("routes")
    assert code == EXIT_UNAVAILABLE and out == ""
    assert "netlink is not available here" in err and "Protocol not supported" in err


def test_route_rows_name_links_and_paths() -> None:

    base = dict.fromkeys(Route._fields, 0) | {"src": None, "gateway": None, "prefsrc": None}
    base |= {"nexthops": (), "metrics": (), "expires": 0.0, "family": 2, "table": 254}
    multi = Route(
        **base
        | {
            "dst_num": 0xC6336400,
            "dst_len": 24,
            "type": 1,
            "id": 7,
            "oif": 1,
            "nexthops": (("198.51.100.2", 1, 1, 0), ("198.51.100.3", 999_999, 1, 0)),
        }
    )
    assert cli._route_row(multi) == [
        7,
        "198.51.100.0/24",
        "198.51.100.2,198.51.100.3",
        "lo,999999",
        0,
        "main",
        "unicast",
        "-",
    ]
    odd = Route(**base | {"table": 100, "type": 42, "oif": None, "id": 8})
    assert cli._route_row(odd)[1:] == ["0.0.0.0/0", "-", "-", 0, "100", "42", "-"]


def test_bench_runs_a_benchmark_and_prints_its_ratios() -> None:
    # --tools: under tox the package comes from site-packages, far from tools/
    code, out, _ = run("bench", "--only", "smd", "--tools", str(ROOT / "tools"))
    assert code == 0
    assert re.search(r"^smd / floor +=  ?[0-9.]+$", out, re.M)  # blinker: only if installed
    assert out.splitlines()[-1].split()[:2] == ["smd", "ok"]


def test_bench_from_an_installed_package_says_where_tools_are(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "lwspy", tmp_path / "site" / "lwspy")
    done = lwspy("bench", env={"PYTHONPATH": str(tmp_path / "site")}, cwd=tmp_path)
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "tools/ folder of lwspy's source tree" in done.stderr and "--tools DIR" in done.stderr
    assert "LWSPY_TOOLS=DIR" in done.stderr and "run it in a checkout's top folder" in done.stderr
    assert "from a checkout" not in done.stderr
    assert done.stdout == ""


def _fake_tools(tmp_path: Path, body: str) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir(parents=True)
    (tools / "bench_smd.py").write_text(body, encoding="utf-8")
    return tools


def test_bench_reports_a_failing_and_a_hanging_benchmark(tmp_path: Path) -> None:
    tools = _fake_tools(tmp_path, "import sys\nprint('half a table')\nsys.exit(4)\n")
    code, out, _ = run("bench", "--only", "smd", "--tools", str(tools))
    assert code == EXIT_FAILED
    assert "half a table" in out and out.splitlines()[-1].split()[:3] == ["smd", "FAILED", "(exit"]
    slow = _fake_tools(tmp_path / "slow", "import time\ntime.sleep(30)\n")
    code, out, _ = run("bench", "--only", "smd", "--tools", str(slow), "--timeout", "0.5")
    assert code == EXIT_FAILED and "no end within 0.5 s" in out


def test_bench_skips_namespace_benchmarks_without_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, _ = run("bench", "--only", "connect", "--tools", str(ROOT / "tools"))
    assert code == 0
    assert out.splitlines()[-1].split() == [
        "connect",
        *["skipped:", "needs", "root", "(network", "namespaces)", "-"],
    ]
    code, _, err = run("bench", "--only", "smd,nosuch")
    assert code == 2 and "unknown benchmark ['nosuch']" in err


def test_bench_takes_tools_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = _fake_tools(tmp_path, "print('from env')\n")
    monkeypatch.setenv("LWSPY_TOOLS", str(tools))
    assert cli.find_tools(None) == tools
    code, out, _ = run("bench", "--only", "smd", "-v")
    assert code == 0 and "from env" in out
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "no" / "where" / "cli.py"))
    monkeypatch.delenv("LWSPY_TOOLS")
    monkeypatch.chdir(tools)
    assert cli.find_tools(None) is None
    monkeypatch.chdir(tmp_path)  # a checkout's top folder: ./tools
    assert cli.find_tools(None) == tmp_path / "tools"


def test_verbose_and_quiet_set_the_lwspy_log_level(restore_logger: None) -> None:
    logger = logging.getLogger("lwspy")
    cli._set_log_level(1, 0)
    assert logger.level == logging.INFO
    cli._set_log_level(2, 0)
    assert logger.level == logging.DEBUG
    cli._set_log_level(0, 1)
    assert logger.level == logging.ERROR
    before = logger.level
    cli._set_log_level(0, 0)
    assert logger.level == before


def test_a_closed_stdout_ends_quietly() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(
        [sys.executable, "-m", "lwspy", "smd", "--for", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # like `lwspy smd | head -0`
        err = p.stderr.read().decode()
        assert p.wait(timeout=30) == EXIT_OK
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_closed_stdout_ends_the_demo_quietly_with_0() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(
        [sys.executable, "-m", "lwspy", "demo", "--no-lab"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # like `lwspy demo | head -0`
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == EXIT_OK
    assert "Traceback" not in err and "BrokenPipe" not in err and "failed" not in err


@pytest.mark.parametrize("cmd", ["routes", "smd"])
@pytest.mark.parametrize("seconds", ["-1", "0", "nan"])
def test_for_must_be_positive(cmd: str, seconds: str) -> None:
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args([cmd, f"--for={seconds}"])
    assert e.value.code == EXIT_USAGE


def test_only_smd_help_mentions_count() -> None:
    for cmd, has in (("routes", False), ("cpd", False), ("smd", True)):
        done = lwspy(cmd, "--help")
        assert ("--count" in done.stdout.split("exit status:")[1]) is has, cmd


def test_ctrl_c_is_exit_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: object, out: object, err: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", _parser_with_cpd(interrupted))
    assert run("cpd", "http://portal.test/")[0] == 130


def _parser_with_cpd(fn: object) -> object:
    build = cli.build_parser

    def patched() -> object:
        parser = build()
        parser._subparsers._group_actions[0].choices["cpd"].set_defaults(run=fn)  # type: ignore[union-attr]
        return parser

    return patched


def test_colour_only_on_a_tty_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    style = Style(Tty())
    assert style.bold("x") == "\x1b[1mx\x1b[0m" and style.good("y").startswith("\x1b[32m")
    assert style.bad("z").startswith("\x1b[31m") and style.dim("w").startswith("\x1b[2m")
    assert Style(io.StringIO()).bold("x") == "x"
    monkeypatch.setenv("NO_COLOR", "")
    assert Style(Tty()).bold("x") == "x"


def test_tables_align_and_units_are_human() -> None:
    assert table(["A", "NAME"], []) == ["A  NAME"]
    assert table(["N", "S"], [[5, "a"], ["-", "bb"], [100, "c"]]) == [
        "  N  S",
        "  5  a",
        "  -  bb",
        "100  c",
    ]
    # a ">" header puts a text column right; indent, separator and rule as cao_table has them
    assert table(
        [">ms", "N", "S"], [["1", 5, "a"], ["250", 10, "bb"]], indent=". ", sep="|", rule=True
    ) == [
        ".  ms| N|S",
        ". ---|--|--",
        ".   1| 5|a",
        ". 250|10|bb",
    ]
    assert [human_us(x) for x in (12, 999, 1000, 999_999, 1_000_000)] == [
        "12 us",
        "999 us",
        "1.0 ms",
        "1000.0 ms",
        "1.00 s",
    ]


def test_json_payloads_are_objects_when_they_hold_json() -> None:
    assert cli._payload(b'{"rt":"add"}') == {"rt": "add"}
    assert cli._payload(b"tick 3") == "tick 3"
    assert cli._payload(b"\xff") == "\ufffd"


def test_a_watch_line_to_a_gone_reader_stops_the_loop_then_raises() -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    from lwspy import Context

    with Context(netlink=False) as ctx:
        say = cli._Lines(Gone(), ctx)
        say.check()  # nothing written yet: fine
        ctx.call_later(0, say, "a line")
        ctx.call_later(30, ctx.stop)  # a bound: say() must stop the loop long before
        ctx.run()
        assert say.broken
        say("more")  # dropped, no second error
        with pytest.raises(BrokenPipeError):
            say.check()


def test_in_process_bench_without_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "find_tools", lambda given: None)
    code, out, err = run("bench")
    assert code == EXIT_UNAVAILABLE and out == "" and "tools/ folder" in err


def test_unknown_link_index_is_shown_as_a_number() -> None:
    assert cli._ifname(None) == "-"
    assert cli._ifname(2**31 - 1) == str(2**31 - 1)
    assert cli._ifname(1) == "lo"


def test_smd_class_errors_in_process() -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="unknown class 'nope'"):
        cli._classes("network,nope")
    with pytest.raises(argparse.ArgumentTypeError, match="no class given"):
        cli._classes("0")


def test_verbose_and_quiet_count_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["-v", "smd"]).verbose == 1
    assert parser.parse_args(["smd", "-vv"]).verbose == 2
    assert parser.parse_args(["-q", "routes"]).quiet == 1
    args = parser.parse_args(["bench"])
    assert (args.verbose, args.quiet) == (0, 0)
