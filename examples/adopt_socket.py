"""Adopt a foreign socket (lws minimal-raw-adopt-tcp): a socket made elsewhere (here one
end of a socketpair, the other end driven by a plain thread) is handed to the loop with
``ctx.adopt_socket``, gets RAW_ADOPT, and from then on is a wsi like any other. The loop
answers each line in upper case; the thread sends three lines, prints the answers and
closes its end, which ends the wsi (RAW_CLOSE, "peer closed") and the example.

    python examples/adopt_socket.py
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from lwspy import Context, Protocol, Reason, Wsi


def upper(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is None:
        return 0
    if reason is Reason.RAW_ADOPT:
        print("loop: adopted a socket")
    elif reason is Reason.RAW_RX:
        wsi.write(data.upper())
    elif reason is Reason.RAW_CLOSE:
        print(f"loop: closed ({wsi.close_reason})")
        wsi.ctx.stop()
    return 0


def foreign(sock: socket.socket) -> None:
    """Code that knows nothing of lwspy, on its own thread and its own socket end."""
    with sock, sock.makefile("rwb") as f:
        for word in (b"hello", b"adopted", b"socket"):
            f.write(word + b"\n")
            f.flush()
            print("thread: got", f.readline().decode().strip())


def main() -> None:
    mine, theirs = socket.socketpair()
    with Context(protocols=[Protocol("upper", upper)], netlink=False) as ctx:
        ctx.adopt_socket(mine, protocol="upper")  # the context owns and closes it now
        t = threading.Thread(target=foreign, args=(theirs,))
        t.start()
        ctx.call_later(10.0, ctx.stop)  # a bound, should the thread never finish
        ctx.run()
        t.join()


if __name__ == "__main__":
    main()
