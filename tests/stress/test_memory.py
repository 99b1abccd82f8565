"""Memory stays flat: connection open/close cycles and connects (the CAO database bounded).

Each test runs a warm-up, then takes the Python heap (tracemalloc, traced from the start)
and RSS (VmRSS) after ``gc.collect()``; then the rest of the cycles, and the same
figures again. A leak of even a few dozen bytes per cycle shows as far more than 5 %.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lwspy
from lwspy import Protocol, Reason, Wsi
from tests.conftest import service_until
from tests.stress.conftest import record, size


def rss() -> int:
    """This process's resident set, bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


class Cycler:
    """Client connects to a server in the same context, ``parallel`` at a time; each
    writes a byte, the server echoes it and closes (so TIME_WAIT stays on the server's
    side and the client's ephemeral ports are not used up)."""

    def __init__(self, host: Callable[[int], str], parallel: int = 64, **options: object):
        self.host = host
        self.parallel = parallel
        self.started = self.done = self.failed = 0
        self.closes: dict[str, int] = {}
        self.ctx = lwspy.Context(
            protocols=[Protocol("server", self.server), Protocol("client", self.client)],
            netlink=False,
            **options,  # type: ignore[arg-type]
        )

    def server(self, wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_RX and wsi is not None and isinstance(data, bytes):
            wsi.write(data)
            return 1  # close once flushed
        if reason is Reason.RAW_CLOSE:
            self.closes["server"] = self.closes.get("server", 0) + 1
        return 0

    def client(self, wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_CONNECTED and wsi is not None:
            wsi.write(b"x")
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            self.failed += 1
            self.done += 1
        elif reason is Reason.RAW_CLOSE:
            self.done += 1
        return 0

    def run(self, port: int, n: int) -> None:
        target = self.started + n
        for _ in range(n * 50):
            while self.started < target and self.started - self.done < self.parallel:
                self.ctx.connect(self.host(self.started), port, protocol="client")
                self.started += 1
            if self.done == target:
                return
            self.ctx.service(5)
        raise AssertionError(f"{self.done} of {target} cycles done")


def _measure(cycler: Cycler, port: int, warm: int, n: int) -> dict[str, float]:
    cycler.run(port, warm)
    gc.collect()
    traced = tracemalloc.is_tracing()
    heap0, rss0 = tracemalloc.get_traced_memory()[0], rss()
    cycler.run(port, n - warm)
    gc.collect()
    heap1, rss1 = tracemalloc.get_traced_memory()[0], rss()
    assert cycler.failed == 0
    if traced:  # tracemalloc's own tables grow RSS: only the heap figure counts then
        return {
            "heap_before": heap0,
            "heap_after": heap1,
            "heap_growth_pct": round(100 * (heap1 - heap0) / heap0, 2),
        }
    return {
        "rss_before": rss0,
        "rss_after": rss1,
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
    }


@pytest.mark.parametrize("measure", ["rss", "heap"])
def test_open_close_cycles_leave_memory_flat(measure: str, request: pytest.FixtureRequest) -> None:
    # RSS over the whole count; the heap (traced, three times slower) over a fifth of it.
    if measure == "heap":
        request.getfixturevalue("traced")
    n = size(50_000, 5_000) if measure == "rss" else size(10_000, 5_000)
    cycler = Cycler(lambda i: "127.0.0.1")
    with cycler.ctx as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1", accept_protocol="server")
        # The warm-up fills the CAO database (1,024 records) and every free list.
        figures = _measure(cycler, vh.listen_port, max(n // 10, 2_000), n)
        assert cycler.closes["server"] == n
        fds = [ctx.pt.wake_r, vh.listener.fd]  # type: ignore[union-attr]
        service_until(ctx, lambda: list(ctx.pt.fds) == fds)  # shut-down sockets see EOF
    record("open_close_cycles", cycles=n, **figures)
    assert figures[f"{measure}_growth_pct"] < 5


def test_connects_to_many_names_keep_the_cao_database_bounded(tmp_path: Path) -> None:
    n = size(10_000, 3_000)
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"127.0.0.1 h{i}.test\n" for i in range(n)))
    cycler = Cycler(lambda i: f"h{i}.test", hosts_file=hosts)
    with cycler.ctx as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1", accept_protocol="server")
        figures = _measure(cycler, vh.listen_port, 2_000, n)
        db = ctx.cao_db
        assert len(db) == db.history == 1024
        # Every index holds only what the records hold: the by-host one, 1,024 names.
        index = db._index  # the bound is on the internals
        assert len(index["host"]) == 1024
        assert all(sum(map(len, idx.values())) <= 1024 for idx in index.values())
        assert {c.host for c in db} == {f"h{i}.test" for i in range(n - 1024, n)}
    record("cao_db_connects", connects=n, **figures)
    assert figures["rss_growth_pct"] < 5
