"""``lwspy connect`` and the shared CAO rendering (lwspy._output), on loopback."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwspy import Cao, CaoResult, Conmon, _output
from lwspy.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener() -> Iterator[int]:
    """A listening socket nobody accepts on: the kernel completes handshakes anyway."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A bound port that does not listen: connects to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


def test_json_prints_one_object_per_connect_with_cao_fields_and_conmon(listener: int) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwspy", "connect", "127.0.0.1", str(listener), "-n", "3", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 3
    for rec in records:
        assert rec["error"] is None
        (cao,) = rec["caos"]
        assert list(cao) == list(Cao.__slots__)
        assert (cao["address"], cao["port"], cao["result"]) == ("127.0.0.1", listener, "WON")
        assert cao["family"] == socket.AF_INET and cao["local"][0] == "127.0.0.1"
        assert cao["ended"] >= cao["started"] and cao["connect_us"] > 0
        assert rec["conmon"]["peer"] == "127.0.0.1" and rec["conmon"]["dns"] == ["127.0.0.1"]
        assert set(rec["conmon"]) == set(Conmon().as_dict())


def test_text_shows_the_legend_once_then_a_table_conmon_and_timeline(listener: int) -> None:
    status, text = _run("connect", "127.0.0.1", str(listener), "-n", "2")
    assert status == 0
    assert text.count("A CAO (connection attempt object)") == 1
    assert f"connect #1 to 127.0.0.1 port {listener}: connected" in text
    assert f"connect #2 to 127.0.0.1 port {listener}: connected" in text
    header = [line.split() for line in text.splitlines() if line.strip().startswith("cao ")]
    assert (
        header == [["cao", "address", "family", "source", "iface", "gateway", "result", "time"]] * 2
    )
    heads = [line.split() for line in text.splitlines() if line.strip().startswith("HEAD ")]
    assert [h[1:4] for h in heads] == [["127.0.0.1", "IPv4", "127.0.0.1"]] * 2
    assert text.count(f"CONMON: peer 127.0.0.1 port {listener}; no DNS") == 2
    assert text.count("timeline (from the first attempt's start):") == 2
    _, quiet = _run("connect", "127.0.0.1", str(listener), "-q")
    assert "A CAO" not in quiet and "HEAD 127.0.0.1" in quiet


def test_a_refused_connect_exits_1_and_shows_the_failed_attempt(closed_port: int) -> None:
    status, text = _run("connect", "127.0.0.1", str(closed_port))
    assert status == 1
    assert "failed: connect refused" in text
    assert "REFUSED" in text and "HEAD 127" not in text and "CONMON: not connected;" in text
    assert "no TCP handshake" in text and "TCP handshake 0" not in text
    status, text = _run("connect", "127.0.0.1", str(closed_port), "--json")
    rec = json.loads(text)
    assert status == 1 and rec["error"] == "connect refused"
    assert [c["result"] for c in rec["caos"]] == ["REFUSED"]


def test_a_connect_without_attempts_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # What an NXDOMAIN leaves: an error and no CAO; no empty table or timeline.
    from lwspy.core.wsi import Wsi

    monkeypatch.setattr(Wsi, "caos", property(lambda self: []))
    status, text = _run("connect", "127.0.0.1", "1")
    assert status == 1
    assert "  no attempt was made: connect refused" in text
    assert "timeline" not in text and "cao " not in text and "no TCP handshake" in text


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("connect", "not a host!", "80")[0] == 2
    for argv in (["connect", "127.0.0.1", "80", "-n", "0"], ["connect", "127.0.0.1", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv, io.StringIO())
        assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["connect", "--help"], io.StringIO())
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:\n  lwspy connect " in text and "130 interrupted" in text
    assert "-v, --verbose" in text and "-q, --quiet" in text


def _cao(address: str, family: int, start: float, end: float | None, result: CaoResult) -> Cao:
    return Cao("h.test", 80, address, family, start, ended=end, result=result)


def test_the_timeline_puts_each_attempt_on_one_scale_from_the_first_start() -> None:
    v6 = _cao("2001:db8::1", socket.AF_INET6, 10.0, 10.3, CaoResult.LOST_RACE)
    v4 = _cao("198.51.100.1", socket.AF_INET, 10.25, 10.3, CaoResult.WON)
    lines = _output.timeline([v4, v6], width=20)  # start order, whatever the list order
    assert lines[0].split() == ["0", "300", "ms"]
    assert lines[1] == "  2001:db8::1   |" + "=" * 20 + "|     0 ms ..  300 ms  LOST_RACE"
    assert lines[2] == "  198.51.100.1  |" + " " * 17 + "===|   250 ms ..  300 ms  WON"
    pending = _cao("198.51.100.2", socket.AF_INET, 10.0, None, CaoResult.PENDING)
    assert _output.timeline([pending], width=4, now=10.5)[1].endswith(
        "|====|     0 ms ..  500 ms  PENDING"
    )
    assert _output.timeline([]) == []


def test_the_cao_table_marks_head_only_when_it_won() -> None:
    won = _cao("198.51.100.1", socket.AF_INET, 1.0, 1.002, CaoResult.WON)
    won.local, won.ifindex, won.gateway = ("198.51.100.9", 5000), None, "198.51.100.254"
    lost = _cao("2001:db8::1", socket.AF_INET6, 0.9, None, CaoResult.LOST_RACE)
    rows = [line.split() for line in _output.cao_table([won, lost])[2:]]
    assert rows == [
        ["HEAD", "198.51.100.1", "IPv4", "198.51.100.9", "-", "198.51.100.254", "WON", "2.0", "ms"],
        ["1", "2001:db8::1", "IPv6", "-", "-", "-", "LOST_RACE", "-"],
    ]
    failed = _cao("198.51.100.1", 99, 1.0, 4.0, CaoResult.TIMED_OUT)
    assert _output.cao_table([failed])[2].split()[0:3] == ["0", "198.51.100.1", "99"]


def test_units_for_people() -> None:
    assert [_output.human_ms(us) for us in (0, 350, 12_100, 253_000, 3_010_000)] == [
        "0 ms", "0.35 ms", "12.1 ms", "253 ms", "3.01 s",
    ]  # fmt: skip
    assert _output.human_seconds(0.25) == "250 ms"
    assert _output.if_name(None) == "-" and _output.if_name(1) == socket.if_indextoname(1)
    assert _output.if_name(2**31 - 1) == f"#{2**31 - 1}"
    assert _output.conmon_lines(None) == ["  CONMON: none (conmon=False)"]
    cm = Conmon(peer=("198.51.100.1", 80), dns_us=1500, dns_results=["198.51.100.1"])
    assert "DNS OK in 1.5 ms gave 198.51.100.1" in _output.conmon_lines(cm)[0]
    line = _output.conmon_lines(cm, hosts=True)[0]
    assert "hosts file gave 198.51.100.1 (no DNS)" in line and "DNS OK" not in line
    assert _output.connect_record([], None) == {"caos": [], "conmon": None}


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, listener: int) -> None:
    from lwspy import _connect

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_connect, "connect_once", interrupted)
    assert _run("connect", "127.0.0.1", str(listener))[0] == 130
