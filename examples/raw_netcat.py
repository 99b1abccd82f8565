"""Raw netcat: stdin to a TCP connection, the connection to stdout (lws
minimal-raw-netcat).

    python examples/raw_netcat.py HOST PORT

stdin is adopted into the loop as a file wsi (a pipe or a terminal: a regular file cannot
be polled, so use ``cat file | ...``); every chunk read from it is written to the
connection, and what the peer sends is written to stdout. As netcat does, the end of
stdin stops the sending but not the reading: the reply to what was sent still arrives
(``printf 'ping' | python examples/raw_netcat.py HOST PORT``). The program ends when the
peer closes, ``LINGER`` seconds after stdin ended (the connection is then closed, after
what was written has been sent), or when the connect fails (exit status 1).
"""

from __future__ import annotations

import sys
from typing import Any

from lwspy import Context, Protocol, Reason, Wsi

LINGER = 2.0  # seconds the reply may take once stdin has ended

state: dict[str, Any] = {"conn": None, "status": 0}


def stdin_cb(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    conn: Wsi | None = state["conn"]
    if reason is Reason.RAW_RX_FILE and conn is not None:
        conn.write(data)
    elif reason is Reason.RAW_CLOSE_FILE and conn is not None:
        conn.set_timer(LINGER)  # keep reading the peer; TIMER closes
    return 0


def conn_cb(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is None:
        return 0
    if reason is Reason.RAW_CONNECTED:
        print(f"connected to {wsi.peer}", file=sys.stderr)
        wsi.ctx.adopt_file(sys.stdin.fileno(), protocol="stdin")
    elif reason is Reason.RAW_RX:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif reason is Reason.TIMER:
        wsi.close("stdin ended")  # sends what is buffered first
    elif reason is Reason.CLIENT_CONNECTION_ERROR:
        print(f"connect failed: {data}", file=sys.stderr)
        state["status"] = 1
        wsi.ctx.stop()
    elif reason is Reason.RAW_CLOSE:
        print(f"closed: {wsi.close_reason}", file=sys.stderr)
        wsi.ctx.stop()
    return 0


def main(host: str, port: int) -> int:
    protocols = [Protocol("conn", conn_cb), Protocol("stdin", stdin_cb)]
    with Context(protocols=protocols, netlink=False) as ctx:
        state["conn"] = ctx.connect(host, port, protocol="conn")
        ctx.run()
    return int(state["status"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
