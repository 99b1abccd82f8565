"""The resolver's sockets: connected UDP sockets, and TCP for truncated answers.

Both are internal wsi (no user callbacks; ``ctx.destroy()`` closes them with the
resolver). ``wsi.user`` is the :class:`DnsSink` that gets each whole message and each
failure. A UDP socket is connected to its server, so the kernel hands it only datagrams
from that address and port, and an ICMP port unreachable comes back as ECONNREFUSED on
the next read. It is never bound, so Linux gives each a random source port; which
queries share one is the resolver's choice (:mod:`lwspy.core.resolver`). The TCP socket
frames the message with its two-byte length (RFC 1035 §4.2.2) and hands over the first
whole answer.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Protocol

from lwspy.core.protocol import INTERNAL
from lwspy.core.role import RoleOps
from lwspy.core.wsi import CLOSED, EV_READ, EV_WRITE, Wsi, WsiState

if TYPE_CHECKING:
    from lwspy.core.context import Context

__all__ = ["TCP_DNS", "UDP", "DnsSink", "TcpDnsRole", "UdpRole", "drain", "open_tcp", "open_udp"]

READS_PER_EVENT = 16
"""The most datagrams read per readable event (a flood of spoofs cannot starve the loop)."""

MAX_TCP_MESSAGE = 65535


class DnsSink(Protocol):
    """What a resolver socket reports to (the query that owns it)."""

    def datagram(self, wsi: Wsi, data: bytes) -> None:
        """A whole DNS message arrived on ``wsi``."""

    def failed(self, wsi: Wsi, err: int) -> None:
        """``wsi`` failed (ICMP refused, reset, closed early): errno ``err``."""


class _Tcp:
    """A TCP query's sink and the bytes read so far."""

    __slots__ = ("buf", "payload", "sink")

    def __init__(self, sink: DnsSink, payload: bytes) -> None:
        self.sink = sink
        self.payload = payload
        self.buf = bytearray()


class UdpRole(RoleOps):
    """A connected UDP socket: every datagram goes to the sink."""

    name = "udp"
    internal = True

    def on_readable(self, wsi: Wsi) -> None:
        sock = wsi.sock
        assert sock is not None
        sink: DnsSink = wsi.user
        for _ in range(READS_PER_EVENT):
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as e:
                sink.failed(wsi, e.errno or errno.EIO)
                return
            sink.datagram(wsi, data)
            if wsi.state is CLOSED:
                return

    def on_writable(self, wsi: Wsi) -> None:  # pragma: no cover - never asked for
        pass

    def close_fd(self, wsi: Wsi) -> None:
        if wsi.sock is not None:
            wsi.sock.close()


class TcpDnsRole(UdpRole):
    """A TCP connection that sends one length-framed query and reads one answer."""

    name = "tcp-dns"

    def on_readable(self, wsi: Wsi) -> None:
        sock = wsi.sock
        assert sock is not None
        tcp: _Tcp = wsi.user
        try:
            data = sock.recv(MAX_TCP_MESSAGE + 2)
        except BlockingIOError:
            return
        except OSError as e:
            tcp.sink.failed(wsi, e.errno or errno.EIO)
            return
        if not data:
            tcp.sink.failed(wsi, errno.ECONNRESET)  # closed before a whole answer
            return
        buf = tcp.buf
        buf += data
        while len(buf) >= 2:  # every whole message, in order (an ignored one is consumed)
            end = 2 + (buf[0] << 8 | buf[1])
            if len(buf) < end:
                return
            message = bytes(buf[2:end])
            del buf[:end]
            tcp.sink.datagram(wsi, message)
            if wsi.state is CLOSED:
                return

    def on_writable(self, wsi: Wsi) -> None:
        # Asked for only while connecting: then the whole query goes in one send (a
        # fresh socket's buffer takes a few hundred bytes), and only reads follow.
        sock = wsi.sock
        assert sock is not None
        tcp: _Tcp = wsi.user
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not err:
            frame = len(tcp.payload).to_bytes(2, "big") + tcp.payload
            try:
                if sock.send(frame) != len(frame):  # pragma: no cover - see above
                    err = errno.EMSGSIZE
            except OSError as e:  # pragma: no cover - reset between connect and send
                err = e.errno or errno.EIO
        if err:
            tcp.sink.failed(wsi, err)
            return
        wsi.state = WsiState.ESTABLISHED
        wsi._rx_on = True
        wsi._update_events()


UDP = UdpRole()
TCP_DNS = TcpDnsRole()


AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
_DGRAM_NONBLOCK = socket.SOCK_DGRAM | getattr(socket, "SOCK_NONBLOCK", 0)  # one syscall less


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def open_udp(ctx: Context, server: tuple[str, int], sink: DnsSink) -> Wsi:
    """A UDP socket connected to ``server``, in the loop; OSError if it cannot be."""
    sock = socket.socket(AF_INET6 if ":" in server[0] else AF_INET, _DGRAM_NONBLOCK)
    try:
        if _DGRAM_NONBLOCK == socket.SOCK_DGRAM:  # pragma: no cover - not Linux
            sock.setblocking(False)
        sock.connect(server)
        wsi = Wsi(ctx, UDP, None, INTERNAL, sock)
        wsi.user = sink
        wsi.state = WsiState.ESTABLISHED
        ctx.pt.add(wsi, EV_READ)
    except BaseException:
        sock.close()
        raise
    return wsi


def drain(wsi: Wsi, limit: int) -> list[bytes]:
    """Up to ``limit`` datagrams queued on ``wsi``'s UDP socket, read now, not handed on.

    For a socket that failed: Linux reports an ICMP error on the next read or send, ahead
    of the datagrams already queued, which came in before it (answers to keep).
    """
    out: list[bytes] = []
    sock = wsi.sock
    assert sock is not None
    for _ in range(limit):
        try:
            out.append(sock.recv(65535))
        except OSError:  # empty (BlockingIOError), or another error: the socket is done
            break
    return out


def open_tcp(ctx: Context, server: tuple[str, int], payload: bytes, sink: DnsSink) -> Wsi:
    """A TCP socket connecting to ``server``; it sends ``payload`` once connected."""
    if len(payload) > MAX_TCP_MESSAGE:  # pragma: no cover - queries are small
        raise ValueError("DNS message too long for TCP")
    sock = socket.socket(_family(server[0]), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(server)
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, errno.errorcode.get(err, str(err)))
        wsi = Wsi(ctx, TCP_DNS, None, INTERNAL, sock)
        wsi.user = _Tcp(sink, payload)
        wsi.state = WsiState.CONNECTING
        ctx.pt.add(wsi, EV_WRITE)
    except BaseException:
        sock.close()
        raise
    return wsi
