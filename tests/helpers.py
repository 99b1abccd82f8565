"""Helpers shared by the socket-level tests: a hang watchdog, loopback TCP pairs made
without lwspy, a thread that reads a socket to its end, and the fds this process holds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

LOOP4 = "127.0.0.1"


class Hung(BaseException):
    """Raised by the watchdog: a BaseException, so no ``except Exception`` in lwspy eats it."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Turn a hang (a regression) into a failure instead of a stuck suite."""

    def expired(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s: hung")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def open_fds() -> set[str]:
    """The fds this process has open (the listing's own fd shows up in both snapshots)."""
    return set(os.listdir("/proc/self/fd"))


def tcp_pair(
    *, our_sndbuf: int | None = None, peer_rcvbuf: int | None = None
) -> tuple[socket.socket, socket.socket]:
    """A connected loopback TCP pair (ours, peer), made without lwspy."""
    with socket.create_server((LOOP4, 0)) as lst:
        peer = socket.socket()
        try:
            if peer_rcvbuf is not None:
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, peer_rcvbuf)
            peer.connect(lst.getsockname())
            ours, _ = lst.accept()
        except BaseException:
            peer.close()
            raise
    if our_sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, our_sndbuf)
    return ours, peer


def reset(peer: socket.socket) -> None:
    """Close ``peer`` with a reset (SO_LINGER 0)."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


class Reader(threading.Thread):
    """Reads a socket to its end in a thread; records the bytes and how the stream ended."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = bytearray()
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 20):
                self.data += chunk
        except OSError as e:
            self.error = e


def pattern(n: int) -> bytes:
    """``n`` bytes that show a loss or a reordering."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def in_thread(fn: Callable[[], Any]) -> BaseException | None:
    """Run ``fn`` in another thread (and wait for it); the exception it raised, or None."""
    caught: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as e:
            caught.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return caught[0] if caught else None
