"""SMD publisher and subscribers across threads (lws minimal-lws-smd): a worker thread
posts messages with ``ctx.smd.post`` (one of the few calls allowed off the loop's
thread); the subscribers run in the loop, each receiving only the classes it asked for.

    python examples/smd_threads.py

One subscriber takes INTERACTION messages, one a user class (``USER_BASE``), and one
both. The worker posts four of each, then a last INTERACTION "bye", which stops the
loop.
"""

from __future__ import annotations

import threading

from lwspy import USER_BASE, Context, SmdClass

TICKS = SmdClass(USER_BASE)  # the first class free for the application


def main() -> None:
    with Context(netlink=False) as ctx:
        got: dict[str, int] = {"buttons": 0, "ticks": 0, "both": 0}

        def buttons(cls: SmdClass, ts: float, payload: bytes) -> None:
            got["buttons"] += 1
            print(f"buttons: {payload.decode()}")
            if payload == b'{"event":"bye"}':
                ctx.stop()

        def ticks(cls: SmdClass, ts: float, payload: bytes) -> None:
            got["ticks"] += 1
            print(f"ticks:   {payload.decode()}")

        def both(cls: SmdClass, ts: float, payload: bytes) -> None:
            got["both"] += 1

        ctx.smd.register(buttons, SmdClass.INTERACTION)
        ctx.smd.register(ticks, TICKS)
        ctx.smd.register(both, SmdClass.INTERACTION | TICKS)

        def worker() -> None:  # runs on its own thread
            for n in range(4):
                ctx.smd.post(SmdClass.INTERACTION, {"button": n})
                ctx.smd.post(TICKS, f"tick {n}")
            ctx.smd.post(SmdClass.INTERACTION, {"event": "bye"})

        threading.Thread(target=worker).start()
        ctx.call_later(10.0, ctx.stop)  # a bound, should a message be lost
        ctx.run()
        print(f"delivered: {got}, stats: {ctx.smd.stats}")


if __name__ == "__main__":
    main()
