"""``lwspy routes`` and ``lwspy smd`` in a namespace lab: the JSON equals the kernel's
table as ``ip -j route`` gives it, and ``--watch`` shows a route add and delete as they
happen (as the console script, run with ``ip netns exec``; and in-process, for coverage)."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lwspy import cli
from tests.netns.conftest import RTN_NAMES, Lab

ROOT = Path(__file__).resolve().parent.parent.parent
EXTRA = "198.18.7.0/24"  # carries no traffic


def _normal(r: dict[str, Any]) -> tuple[object, ...]:
    """A ``routes --json`` object in :meth:`Lab.kernel_routes`' normal form."""
    return (
        r["family"],
        f"{r['dst']}/{r['dst_len']}",
        r["table"],
        RTN_NAMES.get(r["type"], str(r["type"])),
        r["gateway"],
        r["oif"],
        r["priority"],
    )


def _lwspy(lab: Lab, *args: str) -> list[str]:
    return ["ip", "netns", "exec", lab.ns["a"], sys.executable, "-m", "lwspy", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def test_routes_json_equals_ip_route(lab: Lab) -> None:
    done = subprocess.run(
        _lwspy(lab, "routes", "--json", "--table", "all"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    routes = json.loads(done.stdout)
    assert {_normal(r) for r in routes} == lab.kernel_routes("a")
    assert len(routes) == len({_normal(r) for r in routes})
    # the default view is `ip route`'s: table main, IPv4, same destinations and devices
    done = subprocess.run(
        _lwspy(lab, "routes", "--json", "-4"),
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    mine = {(r["dst"], r["dst_len"], r["gateway"]) for r in json.loads(done.stdout)}
    theirs = set()
    for r in json.loads(lab.ip("a", "-j", "route")):
        dst, _, plen = r["dst"].partition("/")
        theirs.add((dst, int(plen or 32), r.get("gateway")))
    assert mine == theirs
    assert ("203.0.113.0", 24, Lab.B_ADDR) in mine


def test_routes_text_is_an_aligned_table_with_ids(lab: Lab) -> None:
    done = subprocess.run(
        _lwspy(lab, "routes"), capture_output=True, text=True, check=False, env=_env()
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "DST", "VIA", "DEV", "METRIC", "TABLE", "TYPE", "SRC"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["203.0.113.0/24"][2:] == [Lab.B_ADDR, "va", "0", "main", "unicast", "-"]
    assert rows["198.51.100.0/24"][2:] == ["-", "va", "0", "main", "unicast", Lab.A_ADDR]
    assert rows["2001:db8:2::/64"][2:4] == [Lab.B_ADDR6, "va"]
    assert all(row[0].isdigit() for row in rows.values())
    starts = {line.index(line.split()[1]) for line in lines[1:]}  # DST column aligned
    assert len(starts) == 1


class _Reader:
    """The lines of a stream, read by a thread (a select() on a buffered text stream
    would miss lines already in its buffer)."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def __call__(self, timeout: float = 20.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line within the timeout") from None


def test_routes_watch_json_shows_an_add_and_a_delete(lab: Lab) -> None:
    with subprocess.Popen(
        _lwspy(lab, "routes", "--watch", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        readline = _Reader(p.stdout)
        try:
            first = json.loads(readline())
            assert isinstance(first, list) and all("id" in r for r in first)
            lab.ip("a", "route", "add", EXTRA, "via", Lab.B_ADDR)
            events = []
            while not any(e["event"] == "smd" for e in events):
                events.append(json.loads(readline()))
            added = [e for e in events if e["event"] == "add"]
            assert [(e["route"]["dst"], e["route"]["gateway"]) for e in added] == [
                ("198.18.7.0", Lab.B_ADDR)
            ]
            assert events[-1]["class"] == "NETWORK" and "rt" in events[-1]["payload"]
            lab.ip("a", "route", "del", EXTRA)
            events = []
            while not any(e["event"] == "del" for e in events):
                events.append(json.loads(readline()))
            gone = next(e for e in events if e["event"] == "del")
            assert gone["route"]["id"] == added[0]["route"]["id"]
        finally:
            p.send_signal(signal.SIGINT)  # Ctrl-C ends a watch
        assert p.wait(timeout=20) == 0
        assert "Traceback" not in p.stderr.read()


@contextmanager
def _ctrl_c_when(ready: Callable[[], bool]) -> Iterator[None]:
    """SIGINT to this (the main) thread once ``ready()`` holds, as a user's Ctrl-C."""
    me = threading.main_thread().ident
    assert me is not None and threading.current_thread() is threading.main_thread()
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            if ready():
                break
            time.sleep(0.02)
        signal.pthread_kill(me, signal.SIGINT)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def test_routes_watch_text_in_process(lab: Lab) -> None:
    out = io.StringIO()
    done: list[str] = []

    def ready() -> bool:
        text = out.getvalue()
        if text.startswith("ID") and not done:
            done.append("add")
            lab.ip("a", "route", "add", EXTRA, "via", Lab.B_ADDR)
        if " s  + " in text and done == ["add"]:
            done.append("del")
            lab.ip("a", "route", "del", EXTRA)
        return " s  - " in text  # a change line: "<seconds> s  - <route row>"

    with _ctrl_c_when(ready):
        code = cli.main(["routes", "--watch"], out=out)
    assert code == 0
    changes = [line for line in out.getvalue().splitlines() if " s  " in line]
    plus = next(line for line in changes if " s  + " in line)
    minus = next(line for line in changes if " s  - " in line)
    assert "198.18.7.0/24" in plus and Lab.B_ADDR in plus and "va" in plus
    assert plus.split("+ ")[1].split()[0] == minus.split("- ")[1].split()[0]  # the same id
    assert any('smd NETWORK {"rt":' in line for line in changes)


def test_routes_watch_json_in_process_and_smd_sees_the_network(lab: Lab) -> None:
    out = io.StringIO()
    added = threading.Event()

    def ready() -> bool:
        if out.getvalue().startswith("[") and not added.is_set():
            added.set()
            lab.ip("a", "route", "add", EXTRA, "via", Lab.B_ADDR)
        return '"event": "smd"' in out.getvalue()

    with _ctrl_c_when(ready):
        assert cli.main(["routes", "--watch", "--json"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert json.loads(lines[1])["event"] == "add"
    assert json.loads(lines[1])["route"]["dst"] == "198.18.7.0"

    smd = io.StringIO()

    def operational_then_change() -> bool:
        text = smd.getvalue()
        if "OPERATIONAL" in text and "rt" not in text and added.is_set():
            added.clear()
            lab.ip("a", "route", "del", EXTRA)
        return '{"rt":"del"}' in text

    with _ctrl_c_when(operational_then_change):
        assert cli.main(["smd", "--classes", "system_state,network"], out=smd) == 0
    assert 'NETWORK       {"rt":"del"}' in smd.getvalue()
