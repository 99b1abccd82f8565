"""A client that keeps its connection up, with a RetryPolicy (lws
minimal-raw-client-reconnect, ``lws_retry_bo_t``).

    python examples/reconnect.py

The server is not up when the client starts: the first connects are refused, and the
policy retries them silently (``conceal``) after its delays (0.1 s, 0.2 s, then 0.4 s
again and again). The example starts the server 0.35 s in, so one connect succeeds after
a few attempts, all of them in ``wsi.caos``. The server then drops each connection; the
client reconnects, pacing itself with ``policy.delay(n)`` where ``n`` counts the drops
since the last session that lasted (``STABLE_SECS``: one that did starts the pacing
again from the first delay), and stops after three sessions.
"""

from __future__ import annotations

import socket
from typing import Any

from lwspy import Context, Protocol, Reason, RetryPolicy, Wsi

policy = RetryPolicy([0.1, 0.2, 0.4], conceal=20, jitter_percent=10)
STABLE_SECS = 5.0  # a session up this long was not a flap: back to the first delay
sessions = {"up": 0, "drops": 0}
since: dict[Wsi, float] = {}  # when each session came up


def server(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is not None and reason is Reason.RAW_ADOPT:
        wsi.write(b"hello, and goodbye\n")
        wsi.close("server drops it")
    return 0


def client(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is None:
        return 0
    if reason is Reason.RAW_CONNECTED:
        sessions["up"] += 1
        since[wsi] = wsi.ctx.now()
        results = [cao.result.name for cao in wsi.caos]
        print(f"session {sessions['up']}: up after {len(results)} attempt(s): {results}")
    elif reason is Reason.RAW_RX:
        print(f"  got {data!r}")
    elif reason is Reason.RAW_CLOSE:
        if wsi.ctx.now() - since.pop(wsi, wsi.ctx.now()) >= STABLE_SECS:
            sessions["drops"] = 0
        sessions["drops"] += 1
        if sessions["up"] == 3:
            wsi.ctx.stop()
            return 0
        delay = policy.delay(sessions["drops"])
        print(f"  closed ({wsi.close_reason}); reconnecting in {delay:.2f} s")
        wsi.ctx.call_later(delay, connect, wsi.ctx, wsi.peer[1] if wsi.peer else 0)
    elif reason is Reason.CLIENT_CONNECTION_ERROR:
        print(f"gave up: {data}")
        wsi.ctx.stop()
    return 0


def connect(ctx: Context, port: int) -> None:
    ctx.connect("127.0.0.1", port, protocol="client", retry=policy)


def main() -> None:
    protocols = [Protocol("server", server), Protocol("client", client)]
    with Context(protocols=protocols, netlink=False) as ctx:
        # Reserve a port without listening on it: connects to it are refused.
        reserved = socket.socket()
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]

        def server_up() -> None:
            reserved.close()
            ctx.create_vhost("server", port=port, iface="127.0.0.1")
            print(f"server up on port {port}")

        ctx.call_later(0.35, server_up)
        connect(ctx, port)
        ctx.call_later(20.0, ctx.stop)
        ctx.run()
        reserved.close()


if __name__ == "__main__":
    main()
