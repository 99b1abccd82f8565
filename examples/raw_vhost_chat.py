"""A broadcast chat server on a raw vhost (lws minimal-raw-vhost): every line a client
sends goes to every other client connected to the vhost.

    python examples/raw_vhost_chat.py [--port PORT] [--for SECONDS]

Try it with two terminals running ``nc 127.0.0.1 PORT``. The server prints its port
first ("listening on 127.0.0.1 port N"), then one line per join and leave.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from lwspy import Context, Protocol, Reason, Wsi


class Member:
    """Per-connection state (made by the protocol's user_factory): the unfinished line."""

    def __init__(self) -> None:
        self.pending = b""


def chat(wsi: Wsi | None, reason: Reason, user: Member, data: Any) -> int:
    if wsi is None:
        return 0
    others = [w for w in wsi.ctx.wsis if w is not wsi and w.vhost is wsi.vhost]
    if reason is Reason.RAW_ADOPT:
        print(f"joined: {wsi.peer}, {len(others) + 1} in the room", flush=True)
        wsi.write(b"welcome\n")
    elif reason is Reason.RAW_RX:
        *lines, user.pending = (user.pending + data).split(b"\n")
        for line in lines:
            for other in others:
                other.write(line + b"\n")  # buffered per wsi, in order
    elif reason is Reason.RAW_CLOSE:
        print(f"left: {wsi.peer} ({wsi.close_reason})", flush=True)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    ap.add_argument("--for", dest="seconds", type=float, help="stop after SECONDS")
    args = ap.parse_args()
    with Context(protocols=[Protocol("chat", chat, user_factory=Member)], netlink=False) as ctx:
        vh = ctx.create_vhost("chat", port=args.port, iface="127.0.0.1")
        print(f"listening on 127.0.0.1 port {vh.listen_port}", flush=True)
        if args.seconds is not None:
            ctx.call_later(args.seconds, ctx.stop)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the server
            ctx.run()


if __name__ == "__main__":
    main()
