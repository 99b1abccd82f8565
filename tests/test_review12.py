"""Regression tests for what review r12 found in the loop's speed work (p10)."""

from __future__ import annotations

import select
import socket

import pytest

from lwspy import Context
from lwspy.roles import raw_skt
from tests.conftest import Recorder, service_until
from tests.helpers import tcp_pair

# -- a close with the peer's urgent byte unread is a FIN, not a reset ----------------------
# SIOCINQ counts only the bytes ahead of the urgent mark: with the mark at the head it is 0
# though the urgent byte (and whatever came behind it) is queued, and Linux answers the
# close of such a socket with a reset. The peer then reads ECONNRESET, not our end of
# stream (and a peer that is not Linux drops what it had not read yet).


@pytest.mark.parametrize("behind", [b"", b"more"])
def test_unread_urgent_data_is_not_idle(behind: bytes) -> None:
    ours, peer = tcp_pair()
    with ours, peer:
        peer.send(b"!", socket.MSG_OOB)
        if behind:
            peer.sendall(behind)
        select.select([ours], [], [ours], 1.0)
        assert not raw_skt._idle(ours)
        assert ours.recv(1, socket.MSG_OOB) == b"!"  # read out of band: still in the stream
        assert not raw_skt._idle(ours)


@pytest.mark.parametrize("behind", [b"", b"more"])
def test_close_with_unread_urgent_data_ends_in_a_fin(behind: bytes) -> None:
    ours, peer = tcp_pair()
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx, peer:
        peer.send(b"!", socket.MSG_OOB)
        if behind:
            peer.sendall(behind)
        select.select([ours], [], [ours], 1.0)
        wsi = ctx.adopt_socket(ours)
        wsi.write(b"last words")
        select.select([peer], [], [], 1.0)  # arrived (and so acknowledged: loopback)
        wsi.close()
        assert peer.recv(100) == b"last words"
        assert peer.recv(100) == b""  # a FIN, not a reset
        peer.shutdown(socket.SHUT_WR)
        service_until(ctx, lambda: len(ctx.pt.fds) == 1)


def test_idle_of_sockets_without_urgent_data() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert raw_skt._idle(a)  # AF_UNIX: no urgent mark to ask about
        b.send(b"x")
        assert not raw_skt._idle(a)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        assert raw_skt._idle(a)  # EOPNOTSUPP for the mark
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert raw_skt._idle(udp)  # ENOTTY for the mark
