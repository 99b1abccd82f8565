"""The stress tests' load peer: a plain ``selectors`` client in a process of its own.

``python -m tests.stress.peer PORT CONNS BYTES [--hold] [--reset-after N]`` opens CONNS
connections to 127.0.0.1:PORT, all at once; each sends BYTES bytes of a pseudo-random
stream (a 1 MiB random block, read from an offset of its own) and reads the echo back,
comparing every byte with what it sent, and keeps a CRC-32 of each direction. With
``--hold`` no connection is closed before every echo is complete, so all CONNS are open
together. With ``--reset-after N`` each connection is reset (RST: SO_LINGER 0) after
sending N bytes, without reading. Prints one JSON line: counts, mismatches, CRCs, times.
RLIMIT_NOFILE's soft limit is raised to the hard one; the run ends itself after
``--deadline`` seconds (default 300).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import socket
import struct
import sys
import time
import zlib

BLOCK = random.Random(13).randbytes(1 << 20)
DOUBLE = BLOCK + BLOCK  # a slice of up to 1 MiB from any offset, without wrapping


class Conn:
    """One connection's progress."""

    __slots__ = ("crc_rx", "crc_tx", "off", "received", "sent", "size", "sock")

    def __init__(self, sock: socket.socket, size: int, off: int) -> None:
        self.sock = sock
        self.size = size
        self.off = off
        self.sent = 0
        self.received = 0
        self.crc_tx = 0
        self.crc_rx = 0


def main() -> None:
    """Run the load and print the report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("conns", type=int)
    ap.add_argument("nbytes", type=int)
    ap.add_argument("--hold", action="store_true")
    ap.add_argument("--reset-after", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=300.0)
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    conns = []
    for i in range(args.conns):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", args.port))
        c = Conn(s, args.nbytes, (i * 4099) % len(BLOCK))
        conns.append(c)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    mismatches = errors = resets = done = 0
    chunk = 1 << 16
    while done < len(conns) and time.monotonic() - start < args.deadline:
        for key, events in sel.select(1.0):
            c = key.data
            if events & selectors.EVENT_WRITE:
                at = (c.off + c.sent) % len(BLOCK)
                piece = DOUBLE[at : at + min(chunk, c.size - c.sent)]
                try:
                    n = c.sock.send(piece)
                except BlockingIOError:
                    n = 0
                except OSError:
                    errors += 1
                    sel.unregister(c.sock)
                    done += 1
                    continue
                c.crc_tx = zlib.crc32(piece[:n], c.crc_tx)
                c.sent += n
                if args.reset_after and c.sent >= args.reset_after:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sel.unregister(c.sock)
                    c.sock.close()
                    resets += 1
                    done += 1
                    continue
                if c.sent == c.size:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if events & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(chunk)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    errors += 1
                    sel.unregister(c.sock)
                    done += 1
                    continue
                at = (c.off + c.received) % len(BLOCK)
                if data != DOUBLE[at : at + len(data)]:
                    mismatches += 1
                c.crc_rx = zlib.crc32(data, c.crc_rx)
                c.received += len(data)
                if c.received >= c.size:
                    sel.unregister(c.sock)
                    done += 1
                    if not args.hold:
                        c.sock.close()
    echoed = time.monotonic() - start
    for c in conns:
        c.sock.close()
    report = {
        "conns": len(conns),
        "complete": sum(c.received == c.size for c in conns),
        "mismatches": mismatches,
        "errors": errors,
        "resets": resets,
        "crc_equal": sum(c.crc_rx == c.crc_tx for c in conns if c.received == c.size),
        "bytes_echoed": sum(c.received for c in conns),
        "seconds": round(echoed, 3),
        "timed_out": done < len(conns),
    }
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
