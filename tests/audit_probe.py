"""Run lwspy's main paths under an audit hook (sys.addaudithook) and report, as JSON,
every file it opened, every process it started and every socket it left listening.

Run by tests/test_security.py in a process of its own (an audit hook cannot be
removed): ``python -m tests.audit_probe TMPDIR``. CPD is on, probing a local server.
Everything lwspy imports is imported before the hook records, so the opens left are the
library's own. The harness (the fake DNS and HTTP servers, reading /proc to list
listeners) runs with recording off or opens no file.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import socket
import sys
from pathlib import Path
from typing import Any

import lwspy
from lwspy import Context, CpdResult, Protocol, Reason, SmdClass, Wsi
from tests.dnsfake import FakeDns
from tests.httpfake import HttpFake, answer

PROCESS_EVENTS = (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
)

recording = False
opened: list[str] = []
processes: list[str] = []
binds: list[str] = []


def hook(event: str, args: tuple[Any, ...]) -> None:
    """Record what the library does while ``recording`` is on."""
    if not recording:
        return
    if event == "open":
        opened.append(str(args[0]))
    elif event.startswith(PROCESS_EVENTS):
        processes.append(f"{event} {args!r}"[:300])
    elif event == "socket.bind":
        binds.append(repr(args[1]))


def listeners() -> list[str]:
    """This process's TCP sockets in LISTEN and its unconnected UDP sockets, as text."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{table}") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
                if inode not in inodes:
                    continue
                unconnected = set(remote.split(":")[1]) == {"0"}
                if (table.startswith("tcp") and state == "0A") or (
                    table.startswith("udp") and unconnected
                ):
                    found.append(f"{table} {local} inode {inode}")
    return found


def main() -> None:
    """Run the paths and print the report."""
    global recording
    tmp = Path(sys.argv[1])
    for mod in pkgutil.walk_packages(lwspy.__path__, "lwspy."):
        if mod.name != "lwspy.__main__":  # that one runs the CLI
            importlib.import_module(mod.name)
    sys.addaudithook(hook)
    dns_srv = FakeDns()
    dns_srv.zone["a.test"] = [("A", "127.0.0.1")]
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 h.test\n")
    conf = tmp / "resolv.conf"
    conf.write_text(f"nameserver [127.0.0.1]:{dns_srv.port}\noptions timeout:1\n")
    http = HttpFake(answer(b"HTTP/1.1 204 No Content\r\n\r\n"))  # the CPD probe's server
    harness = {inode.split()[-1] for inode in listeners()}
    outcomes: dict[str, str] = {}
    rx: dict[str, bytes] = {}
    smd_got: list[bytes] = []

    def echo(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if reason is Reason.RAW_RX and wsi is not None and isinstance(data, bytes):
            wsi.write(data)
        return 0

    def client(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if wsi is None:
            return 0
        tag = str(wsi.user)
        if reason is Reason.RAW_CONNECTED:
            outcomes[tag] = "connected"
            wsi.write(b"ping " + tag.encode())
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            outcomes[tag] = f"error: {data}"
        elif reason is Reason.RAW_RX and isinstance(data, bytes):
            rx[tag] = rx.get(tag, b"") + data
            return 1  # close: one round trip is enough
        return 0

    names = ["h.test", "a.test", "127.0.0.1", "nx.test"]
    tags = iter([*names, "refused"])
    recording = True
    ctx = Context(
        protocols=[
            Protocol("echo", echo),
            Protocol("client", client, user_factory=lambda: next(tags)),
        ],
        hosts_file=hosts,
        resolv_conf=conf,
        cpd_url=http.url(),
    )
    vh = ctx.create_vhost("default", port=0, iface="127.0.0.1", accept_protocol="echo")
    for name in names:
        ctx.connect(name, vh.port, protocol="client")
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    refused_port = spare.getsockname()[1]
    spare.close()
    ctx.connect("127.0.0.1", refused_port, protocol="client")
    ctx.smd.register(lambda cls, ts, payload: smd_got.append(payload), SmdClass.INTERACTION)
    ctx.smd.post(SmdClass.INTERACTION, {"hello": 1})
    fired: list[int] = []
    ctx.call_later(0.01, fired.append, 1)

    def cpd_done() -> bool:  # a probe started and ended (started alone is not a result)
        return ctx.cpd.probes > 0 and ctx.cpd.result is not CpdResult.UNKNOWN

    for _ in range(400):
        if len(outcomes) == 5 and len(rx) == 3 and fired and smd_got and cpd_done():
            break
        ctx.service(10)
        recording = False
        dns_srv.pump()
        recording = True
    recording = False
    left = [entry for entry in listeners() if entry.split()[-1] not in harness]
    cpd = ctx.cpd.result.name
    recording = True
    ctx.destroy()
    # The defaults: /etc/resolv.conf and /etc/hosts (a literal: no query leaves the host).
    with Context(protocols=[Protocol("echo", echo)]) as ctx2:
        ctx2.connect("127.0.0.1", refused_port, protocol="echo")
        for _ in range(20):
            ctx2.service(10)
    recording = False
    dns_srv.close()
    http.close()
    own = [p for p in opened if not p.endswith((".py", ".pyc", ".so")) and "__pycache__" not in p]
    print(
        json.dumps(
            {
                "opened": own,
                "imports_opened": len(opened) - len(own),
                "processes": processes,
                "binds": binds,
                "listeners": left,
                "vhost_port": vh.port,
                "outcomes": outcomes,
                "rx": {k: v.decode() for k, v in rx.items()},
                "smd": len(smd_got),
                "timer": fired,
                "cpd": cpd,
            }
        )
    )


if __name__ == "__main__":
    main()
