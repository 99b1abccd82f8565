"""The stress suite (marker ``stress``): load, faults and memory, at two sizes.

Every test here runs at the issue's full size when ``LWSPY_STRESS=full`` (tox's
``stress`` environment, one interpreter in CI) and at a fraction of it otherwise (the
four interpreters' ordinary runs), so the suite is exercised everywhere and the heavy
run is paid once. :func:`size` picks the number.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lwspy
from lwspy import Protocol, Reason, Wsi
from tests.dnsfake import FakeDns

FULL = os.environ.get("LWSPY_STRESS") == "full"
ROOT = Path(__file__).parent.parent.parent


def size(full: int, lean: int) -> int:
    """``full`` under LWSPY_STRESS=full, else ``lean``."""
    return full if FULL else lean


SO_RCVBUFFORCE = 33  # Linux <asm-generic/socket.h>; root may exceed net.core.rmem_max


def roomy(srv: FakeDns) -> FakeDns:
    """Room in the fake server's UDP buffer for every query of a burst: all arrive before
    it reads one, and a smaller buffer drops some (the resolver then asks again after its
    timeout, which the tests are not about)."""
    srv.udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    return srv


def record(test: str, **figures: object) -> None:
    """Append a test's figures as a JSON line to $LWSPY_STRESS_REPORT, if it is set
    (docs/reliability.md's tables come from such a file)."""
    path = os.environ.get("LWSPY_STRESS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, "full": FULL, **figures}) + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.stress)


@pytest.fixture
def nofile() -> Iterator[int]:
    """RLIMIT_NOFILE's soft limit raised to the hard one for the test; yields it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class EchoServer:
    """A lwspy context with an echo vhost on 127.0.0.1 that counts its connections."""

    def __init__(self, *extra: Protocol, **options: Any) -> None:
        self.adopted = 0
        self.closed: dict[Wsi, int] = {}
        self.open = 0
        self.peak = 0
        self.errors: list[str] = []
        self.ctx = lwspy.Context(
            protocols=[Protocol("echo", self.cb), *extra], netlink=False, **options
        )
        self.vh = self.ctx.create_vhost(
            "default", port=0, iface="127.0.0.1", accept_protocol="echo"
        )

    def cb(self, wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_ADOPT:
            self.adopted += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
        elif reason is Reason.RAW_RX and wsi is not None and isinstance(data, bytes):
            if wsi.write(data) != len(data):
                self.errors.append("write refused")
        elif reason is Reason.RAW_CLOSE and wsi is not None:
            self.open -= 1
            self.closed[wsi] = self.closed.get(wsi, 0) + 1
        return 0

    def serve_peer(self, *args: str, timeout: float = 600) -> dict[str, Any]:
        """Run tests/stress/peer.py with ``args`` against this server; its report."""
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.stress.peer", str(self.vh.port), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            while child.poll() is None:
                self.ctx.service(20)
            out, _ = child.communicate(timeout=timeout)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        for _ in range(2000):  # the peer's closes reach us
            if self.open == 0:
                break
            self.ctx.service(5)
        report: dict[str, Any] = json.loads(out)
        return report

    def close(self) -> None:
        self.ctx.destroy()


@pytest.fixture
def echo_server(nofile: int) -> Iterator[EchoServer]:
    srv = EchoServer()
    try:
        yield srv
    finally:
        srv.close()


from tests.netns.conftest import lab  # noqa: E402, F401  (the namespace lab, for test_flap)
