"""A scripted HTTP server for the tests: a real TCP listener, one behaviour per connection.

Each accepted connection runs ``behaviour(conn)`` in the server's thread; the behaviours
below are the answers a captive portal detector meets: a good answer, a malformed one, a
huge head, an endless body, silence, a close or a reset in the middle.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

Behaviour = Callable[[socket.socket], None]


def read_request(conn: socket.socket) -> bytes:
    """Read up to the end of the request head (or the client's close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer(raw: bytes) -> Behaviour:
    """Read the request, send ``raw``, close."""

    def run(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(raw)

    return run


def close_after(raw: bytes) -> Behaviour:
    """Send ``raw`` (possibly part of a head), then close: an end of stream mid-response."""
    return answer(raw)


def stall_after(raw: bytes) -> Behaviour:
    """Send ``raw``, then hold the connection open, sending nothing, until the client closes."""

    def run(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(raw)
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass

    return run


def reset(conn: socket.socket) -> None:
    """Read the request, then close with a reset (SO_LINGER 0)."""
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def huge_headers(conn: socket.socket) -> None:
    """A response head far larger than any client should take."""
    read_request(conn)
    with contextlib.suppress(OSError):  # the client gives up first: that is the point
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 200_000 + b"\r\n")


def endless_body(conn: socket.socket) -> None:
    """A 200 with a chunked body that never ends (until the client closes)."""
    read_request(conn)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            conn.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
    except OSError:
        pass


class HttpFake:
    """A listener on 127.0.0.1 (or ``host``); ``behaviours`` are used in turn, the last repeated.

    ``silent`` connections (behaviour None) are held open, unanswered, until :meth:`close`.
    """

    def __init__(self, *behaviours: Behaviour | None, host: str = "127.0.0.1", port: int = 0):
        self.behaviours = list(behaviours)
        self.sock = socket.create_server((host, port))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._held: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/generate_204") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        n = 0
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            behaviour = self.behaviours[min(n, len(self.behaviours) - 1)]
            n += 1
            if behaviour is None:
                self._held.append(conn)
                continue
            try:
                behaviour(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):  # wake accept()
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self._thread.join(5)
        self.sock.close()
        for conn in self._held:
            conn.close()
