"""The connect path's shortcuts keep the behaviour of what they replace: the epoll poller
(selectors' EpollSelector), the socket type/family getters, accept(2) without
socket.accept() and the listener's shared local name."""

from __future__ import annotations

import os
import select
import selectors
import socket

import pytest

from lwspy import Context, Reason, Wsi
from lwspy.core.pt import Poller
from lwspy.core.wsi import sock_family, sock_type
from tests.conftest import Recorder, service_until

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


def test_poller_reports_what_selectors_reports() -> None:
    a, b = socket.socketpair()
    with a, b:
        p = Poller()
        sel = selectors.DefaultSelector()
        try:
            for s in (p, sel):
                s.register(a.fileno(), R | W, "a")
            assert p.select(0) == [("a", W)]
            assert [(k.data, m) for k, m in sel.select(0)] == [("a", W)]
            b.send(b"x")
            for s in (p, sel):
                s.modify(a.fileno(), R, "a2")
            assert p.select(0.0001) == [("a2", R)]  # rounded up to 1 ms, not 0: no busy wait
            assert [(k.data, m) for k, m in sel.select(0)] == [("a2", R)]
            p.retarget(a.fileno(), "a3")  # same events, new owner: no system call needed
            assert p.select(None) == [("a3", R)]
            assert p.get_map() == {a.fileno(): ("a3", R)}
            p.modify(a.fileno(), R, "a3b")  # the same events: only the owner changes
            assert p.select(0) == [("a3b", R)]
            b.shutdown(socket.SHUT_WR)  # a hang-up is reported to the events asked for
            p.modify(a.fileno(), W, "a4")
            assert p.select(0) == [("a4", W)]
            p.unregister(a.fileno())
            assert p.select(0) == [] and p.get_map() == {}
        finally:
            p.close()
            sel.close()


def test_poller_refuses_a_second_registration_and_unhooks_a_failed_modify() -> None:
    a, b = socket.socketpair()
    with a, b:
        p = Poller()
        try:
            p.register(a.fileno(), R, "a")
            with pytest.raises(KeyError):
                p.register(a.fileno(), W, "again")
            with pytest.raises(OSError):
                p.register(p.fileno(), R, "itself")  # epoll cannot watch itself
            assert p.get_map() == {a.fileno(): ("a", R)}
            fd = os.dup(a.fileno())
            p.register(fd, R, "dup")
            os.close(fd)  # closed before it is unregistered: epoll forgot it already
            with pytest.raises(OSError):
                p.modify(fd, W, "dup")
            assert fd not in p.get_map()  # as selectors: a failed modify unregisters
            p.unregister(a.fileno())
        finally:
            p.close()


def test_poller_ignores_an_fd_it_no_longer_knows() -> None:
    # A registration the kernel keeps (the file lives on in a dup) after the fd was closed
    # and unregistered: its events name an fd that is nobody's now, and are dropped.
    a, b = socket.socketpair()
    with b:
        keep = os.dup(a.fileno())
        p = Poller()
        try:
            fd = a.fileno()
            p.register(fd, R, "a")
            a.close()
            p.unregister(fd)  # EBADF, swallowed: the fd is gone, the file is not
            b.send(b"x")
            assert select.select([keep], [], [], 1.0)[0] == [keep]
            assert p.select(0) == []
        finally:
            p.close()
            os.close(keep)


def test_socket_getters_give_the_plain_ints() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        assert sock_type(s) == socket.SOCK_DGRAM == s.type
        assert sock_family(s) == socket.AF_INET6 == s.family
        assert type(sock_type(s)) is int and type(sock_family(s)) is int


# ::ffff:0.0.0.0 is a wildcard too: an IPv6 socket bound there takes every IPv4 address
@pytest.mark.parametrize("iface", ["127.0.0.1", "::1", None, "0.0.0.0", "::", "::ffff:0.0.0.0"])
def test_accepted_wsis_have_the_local_and_peer_names_of_their_socket(iface: str | None) -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=iface)
        host = "::1" if iface == "::1" else "127.0.0.1"
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam) as c:
            c.connect((host, vh.listen_port))

            def adopted() -> list[Wsi]:
                return [w for w, r, _ in rec.events if r is Reason.RAW_ADOPT and w is not None]

            service_until(ctx, lambda: len(adopted()) == 1)
            wsi = adopted()[0]
            assert wsi.sock is not None and not wsi.sock.getblocking()
            name, peer = wsi.sock.getsockname(), wsi.sock.getpeername()
            assert wsi.local == (name[0], name[1]) and wsi.peer == (peer[0], peer[1])
            assert name[1] == c.getpeername()[1] and peer[1] == c.getsockname()[1]
            if iface in ("127.0.0.1", "::1"):  # bound to that address: the client's names
                assert wsi.local == c.getpeername()[:2] and wsi.peer == c.getsockname()[:2]
            listener = vh.listener
            assert listener is not None and listener.sock is not None
            assert wsi.sock.family == listener.sock.family and wsi.sock.type == socket.SOCK_STREAM
