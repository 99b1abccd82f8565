"""Every program in examples/ runs and does what its docstring says (each as a
subprocess, as a user would run it), and all of them type-check under mypy --strict."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 30


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def run_example(
    name: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=_env(),
    )


class Lines:
    """A stream's lines, read by a thread, with a timeout per line."""

    def __init__(self, stream: IO[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.q.put(x) for x in stream], daemon=True).start()

    def next(self) -> str:
        try:
            return self.q.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no line within the timeout") from None


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A plain blocking echo server on 127.0.0.1 (one connection), outside lwspy."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"banner\n")
            while data := conn.recv(4096):
                conn.sendall(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    srv.close()
    t.join(timeout=TIMEOUT)


def test_every_example_is_tested() -> None:
    tested = set(re.findall(r'"(\w+\.py)"', Path(__file__).read_text(encoding="utf-8")))
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


def test_raw_netcat_joins_stdin_and_the_connection(echo_server: int) -> None:
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "raw_netcat.py"), "127.0.0.1", str(echo_server)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as p:
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None
        out = Lines(p.stdout)
        assert out.next() == "banner\n"
        p.stdin.write("hello over lwspy\n")
        p.stdin.flush()
        assert out.next() == "hello over lwspy\n"
        p.stdin.close()  # stdin ends: the example closes LINGER s later and ends
        assert p.wait(timeout=TIMEOUT) == 0
        err = p.stderr.read()
    assert "connected to ('127.0.0.1'" in err and "closed: stdin ended" in err


def test_raw_netcat_prints_the_reply_to_piped_stdin() -> None:
    # stdin ends at once (a pipe): the reply still arrives, and the peer's close ends it.
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            got = b""
            while len(got) < 4 and (data := conn.recv(4096)):
                got += data
            time.sleep(0.2)  # reply well after the client's stdin has ended
            conn.sendall(got.upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        done = run_example("raw_netcat.py", "127.0.0.1", str(srv.getsockname()[1]), stdin="ping")
    finally:
        srv.close()
        t.join(timeout=TIMEOUT)
    assert done.returncode == 0
    assert done.stdout == "PING"
    assert "closed: " in done.stderr and "stdin ended" not in done.stderr


def test_raw_netcat_reports_a_refused_connect() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        done = run_example("raw_netcat.py", "127.0.0.1", str(bound.getsockname()[1]), stdin="")
    assert done.returncode == 1
    assert done.stderr.strip() == "connect failed: connect refused"


def test_raw_vhost_chat_broadcasts_to_the_others() -> None:
    with subprocess.Popen(
        [sys.executable, str(EXAMPLES / "raw_vhost_chat.py"), "--for", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        out = Lines(p.stdout)
        port = int(out.next().split()[-1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(3)]
        files = [c.makefile("rb") for c in clients]
        try:
            for f in files:
                assert f.readline() == b"welcome\n"
            joined = [out.next() for _ in clients]
            assert joined[-1].endswith("3 in the room\n")
            clients[0].sendall(b"hi all\nsecond ")
            clients[0].sendall(b"line\n")
            for f in files[1:]:
                assert f.readline() == b"hi all\n" and f.readline() == b"second line\n"
            clients[2].sendall(b"reply\n")
            assert files[0].readline() == b"reply\n" and files[1].readline() == b"reply\n"
        finally:
            for f in files:
                f.close()
            for c in clients:
                c.close()
        assert out.next().startswith("left: ")
        p.terminate()
        p.wait(timeout=TIMEOUT)


def test_adopt_socket_answers_the_foreign_thread() -> None:
    done = run_example("adopt_socket.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "loop: adopted a socket",
        "thread: got HELLO",
        "thread: got ADOPTED",
        "thread: got SOCKET",
        "loop: closed (peer closed)",
    ]


def test_smd_threads_delivers_by_class() -> None:
    done = run_example("smd_threads.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [x for x in lines if x.startswith("buttons:")] == [
        *(f'buttons: {{"button":{n}}}' for n in range(4)),
        'buttons: {"event":"bye"}',
    ]
    assert [x for x in lines if x.startswith("ticks:")] == [f"ticks:   tick {n}" for n in range(4)]
    assert lines[-1].startswith("delivered: {'buttons': 5, 'ticks': 4, 'both': 9}")
    assert "posted=9, delivered=18" in lines[-1]


def test_connect_conmon_prints_the_caos_and_conmon() -> None:
    done = run_example("connect_conmon.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["address", "family", "source", "result", "connect"]
    rows = [line.split() for line in lines[1:-1]]
    assert rows[0][0] == "127.0.0.1" and rows[0][1] == "IPv4" and rows[0][3] == "WON"
    assert rows[0][2].startswith("127.0.0.1:") and rows[0][-1] == "ms"
    assert all(row[3] != "WON" for row in rows[1:])  # only the HEAD won
    assert lines[-1].startswith('CONMON {"peer": "127.0.0.1", "dns_us": ')
    assert '"dns": [' in lines[-1]


def test_connect_conmon_to_a_dead_port_shows_the_failed_attempt() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        done = run_example("connect_conmon.py", "127.0.0.1", str(bound.getsockname()[1]))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == "connect failed: connect refused"
    assert lines[2].split()[:4] == ["127.0.0.1", "IPv4", "-", "REFUSED"]


def test_reconnect_retries_then_keeps_the_session_up() -> None:
    done = run_example("reconnect.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = next(x for x in lines if x.startswith("session 1:"))
    attempts = int(first.split("after ")[1].split()[0])
    assert attempts >= 2  # refused while the server was down, retried silently
    assert first.endswith("['WON'" + ", 'REFUSED'" * (attempts - 1) + "]")
    assert lines.index(first) > lines.index(next(x for x in lines if x.startswith("server up")))
    assert [x.split(":")[0] for x in lines if x.startswith("session")] == [
        "session 1",
        "session 2",
        "session 3",
    ]
    assert lines.count("  got b'hello, and goodbye\\n'") == 3
    assert sum("reconnecting in" in x for x in lines) == 2


def test_examples_type_check_under_mypy_strict() -> None:
    pytest.importorskip("mypy")
    programs = sorted(str(p) for p in EXAMPLES.glob("*.py"))
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version=3.10"]
    done = subprocess.run(
        [*mypy, "--config-file=", *programs],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, MYPYPATH=str(ROOT)),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cpd_notifier_holds_the_state_until_the_internet() -> None:
    done = run_example("cpd_notifier.py")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "notifier: holding at POLICY_VALID until CPD finds the internet"
    assert lines[1:3] == [
        'smd: {"type":"cpd","result":"Captive"}',
        lines[2],
    ] and re.fullmatch(r"cpd: captive portal, log in at http://127\.0\.0\.1:\d+/login", lines[2])
    assert lines[3:] == [
        'smd: {"type":"cpd","result":"OK"}',
        "cpd: internet OK",
        "notifier: OPERATIONAL",
        "state OPERATIONAL, 2 probes",
    ]
