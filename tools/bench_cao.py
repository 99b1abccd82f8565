"""Benchmark the CAO database (``ctx.cao_db``): query and forget cost O(matches), not
O(database) (issue 10's goal: "CaoDb with 100,000 records: show time grows with matches,
not with the database size").

Usage::

    PYTHONPATH=. python tools/bench_cao.py            # sizes 1,000 .. 100,000 (about 30 s)
    PYTHONPATH=. python tools/bench_cao.py --quick    # sizes 1,000 and 100,000

A database of ``size`` records is filled with attempts spread over many hosts, addresses,
interfaces, gateways and routes; among them ``matches`` records share one host, one
route id and one interface (the slice a connect or a routing change asks for). Figures,
the median of ``--repeat`` runs, in microseconds per call:

* ``query(host=)``, ``stats(host=)``: one filter, the bucket is the answer;
* ``query(address=, limit=8)``: what every connect asks for each candidate;
* ``forget(route_id=)``, ``forget(ifindex=)``: what the netlink role calls (each forget
  is timed on a fresh copy of the slice, which is added back between runs);
* ``scan``: a list comprehension over every record with the same test (what a
  database without indexes would pay), for contrast.

A multi-filter call walks the smallest of its filters' buckets and checks the rest, so
it costs O(smallest bucket): that is a separate column (``query(host=, family=)``, whose
family bucket is half the database), with the slice's host bucket the smaller one.
"""

from __future__ import annotations

import argparse
import gc
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable

from lwspy.net.cao import Cao, CaoDb, CaoResult

V4, V6 = int(socket.AF_INET), int(socket.AF_INET6)
TARGET_HOST = "target.test"
TARGET_ROUTE = 999_999
TARGET_IFINDEX = 9_999
TARGET_ADDRESS = "2001:db8:ffff::1"
RESULTS = (CaoResult.WON, CaoResult.LOST_RACE, CaoResult.REFUSED, CaoResult.TIMED_OUT)


def _filler(i: int) -> Cao:
    """Background record ``i``: 1,000 hosts, 5,000 addresses, 50 links, 500 routes."""
    fam = V6 if i % 2 else V4
    n = i % 5_000
    address = f"2001:db8:{n // 256:x}::{n % 256:x}" if fam == V6 else f"198.18.{n // 256}.{n % 256}"
    return Cao(
        f"h{i % 1_000}.test",
        443,
        address,
        fam,
        started=0.0,
        ifindex=1 + i % 50,
        gateway=f"198.51.100.{1 + i % 200}",
        route_id=i % 500,
        result=RESULTS[i % len(RESULTS)],
        connect_us=100 + i % 900,
    )


def _target(i: int) -> Cao:
    return Cao(
        TARGET_HOST,
        443,
        TARGET_ADDRESS,
        V6,
        started=0.0,
        ifindex=TARGET_IFINDEX,
        gateway=None,
        route_id=TARGET_ROUTE,
        result=RESULTS[i % len(RESULTS)],
        connect_us=200 + i,
    )


def build(size: int, matches: int) -> tuple[CaoDb, list[Cao]]:
    """A database of ``size`` records, ``matches`` of them the target slice (spread out)."""
    db = CaoDb(history=size, ttl=1e9, clock=lambda: 0.0)
    slice_ = [_target(i) for i in range(matches)]
    every = max(1, size // max(1, matches))
    t = 0
    for i in range(size - matches):
        if t < matches and i % every == 0:
            db.add(slice_[t])
            t += 1
        db.add(_filler(i))
    for cao in slice_[t:]:
        db.add(cao)
    assert len(db) == size
    return db, slice_


def _median_us(fn: Callable[[], object], inner: int, repeat: int) -> float:
    fn()  # warm: the first call pays for caches, not for the database
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times) * 1e6


def _forget_us(db: CaoDb, slice_: list[Cao], repeat: int, **key: int) -> float:
    """One forget of the slice, timed; the slice is added back (as newest) between runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gone = db.forget(**key)
        times.append(time.perf_counter() - t0)
        assert gone == len(slice_), (gone, len(slice_))
        for cao in slice_:
            db.add(cao)
    return statistics.median(times) * 1e6


def measure(size: int, matches: int, repeat: int) -> dict[str, float]:
    db, slice_ = build(size, matches)
    records = list(db)
    inner = max(1, 2_000 // max(1, matches))
    row = {
        "query(host=)": _median_us(lambda: db.query(host=TARGET_HOST), inner, repeat),
        "stats(host=)": _median_us(lambda: db.stats(host=TARGET_HOST), inner, repeat),
        "query(address=, limit=8)": _median_us(
            lambda: db.query(address=TARGET_ADDRESS, limit=8), inner, repeat
        ),
        "query(host=, family=)": _median_us(
            lambda: db.query(host=TARGET_HOST, family=V6), inner, repeat
        ),
        "forget(route_id=)": _forget_us(db, slice_, repeat, route_id=TARGET_ROUTE),
        "forget(ifindex=)": _forget_us(db, slice_, repeat, ifindex=TARGET_IFINDEX),
        "scan": _median_us(lambda: [c for c in records if c.host == TARGET_HOST], 1, repeat),
    }
    assert len(db.query(host=TARGET_HOST)) == matches
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sizes 1,000 and 100,000 only")
    p.add_argument("--repeat", type=int, default=9, help="runs per figure (median)")
    args = p.parse_args(argv)
    sizes = [1_000, 100_000] if args.quick else [1_000, 10_000, 100_000]
    matches = [1, 10, 100, 1_000]
    print(f"CaoDb, {platform.python_implementation()} {platform.python_version()}, µs per call")
    cols: list[str] = []
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        rows = []
        for size in sizes:
            for m in matches:
                row = measure(size, m, args.repeat)
                cols = list(row)
                rows.append((size, m, row))
    finally:
        if gc_was_on:
            gc.enable()
    head = ["records", "matches", *cols]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for size, m, row in rows:
        cells = [f"{size:,}", f"{m:,}", *(f"{row[c]:,.1f}" for c in cols)]
        print("| " + " | ".join(cells) + " |")
    # The claim: for the same matches, 100x the records costs about the same.
    worst = 0.0
    for m in matches:
        small = next(r for s, mm, r in rows if s == sizes[0] and mm == m)
        big = next(r for s, mm, r in rows if s == sizes[-1] and mm == m)
        for c in ("query(host=)", "forget(route_id=)", "forget(ifindex=)"):
            worst = max(worst, big[c] / small[c])
    print(
        f"largest ratio, same matches, {sizes[-1]:,} vs {sizes[0]:,} records "
        f"(query/forget by one key): {worst:.2f}x (the scan: "
        f"{rows[-1][2]['scan'] / rows[len(matches) - 1][2]['scan']:.0f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
