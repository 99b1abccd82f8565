"""Benchmark SMD post + delivery against peers measured in the same run.

Usage::

    PYTHONPATH=. python tools/bench_smd.py [--messages N] [--batch B] [--repeat R]

Each case posts ``B`` messages (default 40, SMD's default queue depth) then drains them,
and repeats until ``N`` messages went through; the best of ``R`` runs is kept, since the
noise of a shared machine only ever slows a run down. Cases:

* ``floor``: a bare ``queue.SimpleQueue`` put, then drain and call the receiver: the
  least any thread-safe queue in Python can cost.
* ``blinker``: blinker's synchronous ``Signal.send`` to one receiver (no queue at all);
  skipped with a note when blinker is not installed.
* ``smd 1 peer``: :meth:`Smd.post` then :meth:`Smd.service`, one peer.
* ``smd 8 peers``: eight peers with mixed filters, posts cycling over five classes; the
  figure that matters is the cost per delivery (one peer getting one message).
"""

from __future__ import annotations

import argparse
import gc
import platform
import queue
import sys
import time
from collections.abc import Callable

from lwspy.system.smd import USER_BASE, Smd, SmdClass

PAYLOAD = b'{"type":"bench","seq":12345678}'


def best_rates(
    cases: dict[str, Callable[[int, int], int]], messages: int, batch: int, repeat: int
) -> dict[str, float]:
    """Run every case once per round, ``repeat`` rounds; return each one's best rate.

    A case returns how many items it moved; the rate is items per second. The cases take
    turns so that a noisy moment of the machine does not land on one case only; the
    garbage collector is off while timing, as in ``timeit``.
    """
    rounds = max(1, messages // batch)
    best = dict.fromkeys(cases, 0.0)
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for name, run in cases.items():
                t0 = time.perf_counter()
                done = run(rounds, batch)
                elapsed = time.perf_counter() - t0
                best[name] = max(best[name], done / elapsed)
    finally:
        if gc_was_on:
            gc.enable()
    return best


def floor(rounds: int, batch: int) -> int:
    """queue.SimpleQueue: put ``batch`` tuples, drain, call a receiver for each."""
    q: queue.SimpleQueue[tuple[SmdClass, float, bytes]] = queue.SimpleQueue()
    put, get, empty = q.put, q.get_nowait, queue.Empty
    cls, payload, stamp = SmdClass.NETWORK, PAYLOAD, 0.0
    got = 0

    def receiver(c: SmdClass, t: float, p: bytes) -> None:
        nonlocal got
        got += 1

    for _ in range(rounds):
        for _ in range(batch):
            put((cls, stamp, payload))
        while True:
            try:
                c, t, p = get()
            except empty:
                break
            receiver(c, t, p)
    return got


def blinker_run() -> Callable[[int, int], int] | None:
    """blinker's ``Signal.send`` to one receiver, or None when blinker is missing."""
    try:
        import blinker  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    signal = blinker.Signal()
    got = 0

    def receiver(sender: object, **kw: object) -> None:
        nonlocal got
        got += 1

    signal.connect(receiver, weak=False)
    send = signal.send

    def run(rounds: int, batch: int) -> int:
        nonlocal got
        got = 0
        for _ in range(rounds):
            for _ in range(batch):
                send(SmdClass.NETWORK, payload=PAYLOAD)
        return got

    return run


def smd_one(rounds: int, batch: int) -> int:
    """Smd: post ``batch`` messages, then one service() pass; one peer."""
    smd = Smd(queue_depth=batch)
    got = 0

    def receiver(c: SmdClass, t: float, p: bytes) -> None:
        nonlocal got
        got += 1

    smd.register(receiver, SmdClass.NETWORK)
    post, service, cls, payload = smd.post, smd.service, SmdClass.NETWORK, PAYLOAD
    for _ in range(rounds):
        for _ in range(batch):
            post(cls, payload)
        service()
    assert got == rounds * batch
    return got


USER = SmdClass(USER_BASE)
FILTERS = [
    SmdClass.NETWORK,
    SmdClass.NETWORK | SmdClass.SYSTEM_STATE,
    SmdClass.SYSTEM_STATE,
    SmdClass.METRICS,
    SmdClass.INTERACTION | SmdClass.NETWORK | SmdClass.SYSTEM_STATE | SmdClass.METRICS,
    SmdClass.INTERACTION,
    SmdClass.NETWORK | USER,
    USER,
]
CLASSES = [SmdClass.NETWORK, SmdClass.SYSTEM_STATE, SmdClass.METRICS, SmdClass.INTERACTION, USER]
# deliveries per message for each class, averaged over the cycle
FANOUT = sum(sum(1 for f in FILTERS if f & c) for c in CLASSES) / len(CLASSES)


def smd_eight(rounds: int, batch: int) -> int:
    """Smd: eight peers with mixed filters; returns deliveries (not messages)."""
    smd = Smd(queue_depth=batch)
    got = 0

    def receiver(c: SmdClass, t: float, p: bytes) -> None:
        nonlocal got
        got += 1

    for f in FILTERS:
        smd.register(receiver, f)
    post, service, payload = smd.post, smd.service, PAYLOAD
    cycle = [CLASSES[i % len(CLASSES)] for i in range(batch)]
    for _ in range(rounds):
        for cls in cycle:
            post(cls, payload)
        service()
    return got


FLOOR = "floor (SimpleQueue put+drain+call)"
BLINKER = "blinker Signal.send, 1 receiver"
ONE = "smd post+service, 1 peer"
EIGHT = "smd post+service, 8 peers"


def main(argv: list[str] | None = None) -> int:
    """Run every case and print rates and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000, help="messages per run")
    ap.add_argument("--batch", type=int, default=40, help="posts between two drains")
    ap.add_argument("--repeat", type=int, default=15, help="runs per case; the best is kept")
    args = ap.parse_args(argv)
    n, b, r = args.messages, args.batch, args.repeat

    print(f"python {platform.python_version()} ({sys.implementation.name}), {platform.machine()}")
    print(f"{n} messages per run, drained every {b}, best of {r}\n")

    cases: dict[str, Callable[[int, int], int]] = {FLOOR: floor}
    blinker = blinker_run()
    if blinker is not None:
        cases[BLINKER] = blinker
    cases[ONE] = smd_one
    cases[EIGHT] = smd_eight
    rates = best_rates(cases, n, b, r)
    deliveries = rates.pop(EIGHT)  # deliveries per second, not messages

    for name, rate in rates.items():
        print(f"{name:40s} {rate:12,.0f} msg/s  {1e9 / rate:7.0f} ns/msg")
    if blinker is None:
        print("blinker: not installed, skipped (pip install blinker to compare)")
    smd = rates[ONE]
    print()
    print(f"smd / floor   = {smd / rates[FLOOR]:.2f}")
    if blinker is not None:
        print(f"smd / blinker = {smd / rates[BLINKER]:.2f}")

    msg_rate = deliveries / FANOUT
    per_delivery = 1e9 / deliveries
    per_msg = 1e9 / msg_rate
    extra = (per_msg - 1e9 / smd) / (FANOUT - 1)
    print()
    print(f"smd 8 peers, mixed filters ({FANOUT:.1f} deliveries per message on average):")
    print(f"  {msg_rate:12,.0f} msg/s, {deliveries:12,.0f} deliveries/s")
    print(f"  {per_msg:7.0f} ns per message, {per_delivery:7.0f} ns per delivery (per peer)")
    print(f"  {extra:7.0f} ns for each delivery beyond the first (marginal per-peer cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
