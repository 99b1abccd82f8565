"""Connect and report: the connection attempts (CAOs) and the CONMON figures (lws
minimal-http-client with ``LCCSCF_CONMON``).

    python examples/connect_conmon.py [HOST PORT]

Without arguments it starts a listener on 127.0.0.1 and connects to it by the name
"localhost", which the hosts file usually maps to ::1 and 127.0.0.1: if nothing answers
on ::1 that attempt fails and the IPv4 one wins, and both show in the table. Each row
is one Cao: its address and family, the source address it used, the result (WON for the
HEAD, the attempt that holds the socket; LOST_RACE, REFUSED, ... for the others) and its
connect time. Then the CONMON JSON, in lws's names.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from lwspy import Context, Protocol, Reason, Wsi

status = {"code": 1}


def client(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    if wsi is None:
        return 0
    if reason in (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR):
        if reason is Reason.CLIENT_CONNECTION_ERROR:
            print(f"connect failed: {data}")
        else:
            status["code"] = 0
        print(f"{'address':<28} {'family':<7} {'source':<28} {'result':<10} {'connect':>9}")
        for cao in wsi.caos:
            family = "IPv6" if cao.family == socket.AF_INET6 else "IPv4"
            local = f"{cao.local[0]}:{cao.local[1]}" if cao.local else "-"
            ms = "-" if cao.connect_us is None else f"{cao.connect_us / 1000:.2f} ms"
            print(f"{cao.address:<28} {family:<7} {local:<28} {cao.result.name:<10} {ms:>9}")
        conmon = wsi.conmon_take()
        if conmon is not None:
            print("CONMON", json.dumps(conmon.as_dict()))
        if reason is Reason.RAW_CONNECTED:
            wsi.close("done")
        else:
            wsi.ctx.stop()
    elif reason is Reason.RAW_CLOSE:
        wsi.ctx.stop()
    return 0


def main(argv: list[str]) -> int:
    def quiet(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        return 0

    protocols = [Protocol("client", client), Protocol("server", quiet)]
    with Context(protocols=protocols) as ctx:
        if argv:
            host, port = argv[0], int(argv[1])
        else:
            vh = ctx.create_vhost("server", port=0, iface="127.0.0.1")
            host, port = "localhost", vh.listen_port
        ctx.connect(host, port, protocol="client")
        ctx.call_later(30.0, ctx.stop)
        ctx.run()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
