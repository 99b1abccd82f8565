"""The ``lwspy`` console script.

``lwspy demo`` runs a loopback echo server and clients in one loop and prints what
happened: the callbacks, each client's connection attempt (CAO) and the bytes echoed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from lwspy import Context, Protocol, Reason, SmdClass, Wsi, __version__


def _demo(clients: int, size: int, out: TextIO) -> int:
    """Echo ``size`` bytes from each of ``clients`` clients through a loopback server."""
    payload = bytes(i % 251 for i in range(size))
    done = {"echoed": 0, "closed": 0, "errors": 0}

    def say(text: str) -> None:
        print(text, file=out)

    def server(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        if reason is Reason.RAW_ADOPT and wsi is not None:
            say(f"server: accepted {wsi.peer[0]}:{wsi.peer[1]}" if wsi.peer else "server: accepted")
        elif reason is Reason.RAW_RX and wsi is not None:
            wsi.write(data)
        return 0

    def client(wsi: Wsi | None, reason: Reason, user: dict[str, Any], data: Any) -> int:
        if wsi is None:
            return 0
        if reason is Reason.RAW_CONNECTED:
            cao = wsi.caos[0]
            say(
                f"client {user['n']}: connected {wsi.local} -> {wsi.peer} "
                f"in {cao.connect_us} us ({cao.result.name})"
            )
            wsi.write(payload)
        elif reason is Reason.RAW_RX:
            user["got"] += len(data)
            if user["got"] >= size:
                done["echoed"] += user["got"]
                wsi.close("echo complete")
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            say(f"client {user['n']}: connection error: {data}")
            done["errors"] += 1
            _finish(wsi.ctx)
        elif reason is Reason.RAW_CLOSE:
            say(f"client {user['n']}: closed ({wsi.close_reason}), {user['got']} bytes echoed")
            _finish(wsi.ctx)
        return 0

    def _finish(ctx: Context) -> None:
        done["closed"] += 1
        if done["closed"] == clients:
            ctx.stop()

    counter = iter(range(1, clients + 1))
    protocols = [
        Protocol("echo-server", server),
        Protocol("echo-client", client, user_factory=lambda: {"n": next(counter), "got": 0}),
    ]
    with Context(protocols=protocols, connect_timeout_secs=5) as ctx:
        ctx.smd.register(
            lambda cls, ts, payload: say(f"smd {cls.name}: {payload.decode()}"),
            SmdClass.SYSTEM_STATE | SmdClass.NETWORK,
        )
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        say(f"lwspy {__version__}: echo server listening on 127.0.0.1:{vh.listen_port}")
        for _ in range(clients):
            ctx.connect("127.0.0.1", vh.listen_port, protocol="echo-client")
        ctx.call_later(10.0, ctx.stop)
        ctx.run()
        routes = ctx.routes
        say(
            f"system state {ctx.system.state.name}; "
            + (f"netlink follows {len(routes)} routes" if routes is not None else "no netlink")
            + f"; SMD delivered {ctx.smd.stats.delivered} messages"
        )
    ok = done["errors"] == 0 and done["echoed"] == clients * size
    say(f"demo {'ok' if ok else 'FAILED'}: {done['echoed']} of {clients * size} bytes echoed")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``lwspy`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="lwspy",
        description="lwspy, a selectors-based event loop in the style of libwebsockets.",
        epilog="Also runs as: python -m lwspy. Documentation: the docs/ folder of the source.",
    )
    parser.add_argument("--version", action="version", version=f"lwspy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run a loopback echo server and clients, print events",
        description="Echo --size bytes from each of --clients clients through a loopback "
        "server in one loop, and print the callbacks, each connection attempt and the "
        "SMD messages. Exit status 0 when every byte came back.",
    )
    demo.add_argument("--clients", type=int, default=3, help="number of clients (default 3)")
    demo.add_argument("--size", type=int, default=65536, help="bytes each client echoes")
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.clients < 1 or args.size < 1:
        parser.error("--clients and --size must be >= 1")
    return _demo(args.clients, args.size, stream)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
