"""Client connects: a small state machine per connect, driven from the loop.

``PENDING`` (made by ``ctx.connect``) → the start timer fires: resolve, make the socket →
``CONNECTING`` → the socket turns writable → ``ESTABLISHED`` (RAW_CONNECTED), or any
failure → ``CLOSED`` (CLIENT_CONNECTION_ERROR with a reason). Every attempt is recorded
as a :class:`~lwspy.net.cao.Cao` on ``wsi.caos``. This issue makes one attempt to the
first address; the resolver and the Happy Eyeballs race will replace ``_resolve`` and
``_attempt`` without changing the states.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import TYPE_CHECKING

from lwspy.core.protocol import Reason
from lwspy.core.sul import Sul
from lwspy.core.wsi import EV_WRITE, WsiState, errno_reason
from lwspy.net.cao import Cao, CaoResult, Conmon

if TYPE_CHECKING:
    from lwspy.core.wsi import Wsi

__all__ = ["ClientConnect", "connect_finished", "literal_address"]

_ERRNO_RESULT = {
    errno.ECONNREFUSED: CaoResult.REFUSED,
    errno.EHOSTUNREACH: CaoResult.UNREACHABLE,
    errno.ENETUNREACH: CaoResult.UNREACHABLE,
    errno.ETIMEDOUT: CaoResult.TIMED_OUT,
}


_IFNAMSIZ = 16


def literal_address(host: str) -> str | None:
    """The canonical text of ``host`` if it is an IP literal (``[v6]`` allowed), else None.

    An IPv6 scope id must be an interface index or a name the kernel could have (at most
    15 printable ASCII characters): anything else is no address.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    scope = getattr(addr, "scope_id", None)
    if scope is not None and not _good_scope(scope):
        return None
    return str(addr)


def _good_scope(scope: str) -> bool:
    if scope.isascii() and scope.isdigit():
        return int(scope) < 2**32
    return (
        0 < len(scope) < _IFNAMSIZ
        and scope.isascii()
        and scope.isprintable()
        and not any(c.isspace() or c == "/" for c in scope)
    )


def os_error_reason(e: OSError) -> str:
    """The close or error reason for an OSError; resolver errors (gaierror) by their text."""
    if isinstance(e, socket.gaierror):
        return (e.strerror or str(e)).lower()
    return errno_reason(e.errno) if e.errno else str(e)


class ClientConnect:
    """What a client wsi is connecting to, and the timers of that connect."""

    __slots__ = (
        "caos",
        "host",
        "iface",
        "port",
        "start_sul",
        "started",
        "timeout_sul",
        "user_error",
        "want_conmon",
    )

    def __init__(self, wsi: Wsi, host: str, port: int, iface: str | None, conmon: bool) -> None:
        suls = wsi.ctx.pt.suls
        self.host = host
        self.port = port
        self.iface = iface
        self.want_conmon = conmon
        self.user_error: Exception | None = None
        self.caos: list[Cao] = []  # every attempt, in start order (wsi.caos)
        self.started = suls.clock()
        self.start_sul = Sul(suls, lambda: _start(wsi))
        self.timeout_sul = Sul(suls, lambda: _fail(wsi, errno.ETIMEDOUT, "timed out"))
        self.start_sul.schedule(0)
        self.timeout_sul.schedule(wsi.ctx.connect_timeout_secs)


def _state(wsi: Wsi) -> WsiState:
    """The state now (after a callback that may have closed the wsi)."""
    return wsi.state


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _resolve(wsi: Wsi, cc: ClientConnect) -> list[str]:
    """The candidate addresses for the host: a literal, or the hosts file's entries."""
    clock = wsi.ctx.pt.suls.clock
    t0 = clock()
    literal = literal_address(cc.host)
    addrs = [literal] if literal is not None else wsi.ctx._hosts_lookup(cc.host)
    if wsi.conmon is not None:
        wsi.conmon.dns_us = 0 if literal is not None else _us(clock() - t0)
        wsi.conmon.dns_disposition = "OK" if addrs else "NO_RESULT"
        wsi.conmon.dns_results = list(addrs)
    return addrs


def _start(wsi: Wsi) -> None:
    """The start timer fired: announce the wsi, resolve, start the attempt."""
    if wsi.state is not WsiState.PENDING:
        return
    cc = wsi._client
    assert cc is not None
    if cc.want_conmon:
        wsi.conmon = Conmon()
    if cc.user_error is not None:  # user_factory raised inside connect(): report it here
        wsi.ctx._callback_failed(wsi, Reason.WSI_CREATE, cc.user_error)
        return
    wsi._created = True
    wsi._call(Reason.WSI_CREATE)
    if _state(wsi) is not WsiState.PENDING:  # the callback closed it
        return
    addrs = _resolve(wsi, cc)
    if not addrs:
        wsi._close_now(f"DNS NO_RESULT: {cc.host}")
        return
    _attempt(wsi, cc, addrs[0])


def _attempt(wsi: Wsi, cc: ClientConnect, address: str) -> None:
    """One non-blocking connect to one address, recorded as a CAO."""
    ctx = wsi.ctx
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    cao = Cao(cc.host, cc.port, address, int(family), started=ctx.pt.suls.clock())
    routes = ctx.routes
    if routes is not None:  # the path the route table gives at attempt time
        route = routes.lookup(address)
        if route is not None:
            cao.ifindex, cao.gateway, cao.route_id = route.oif, route.gateway, route.id
    cc.caos.append(cao)
    try:
        info = socket.getaddrinfo(
            address, cc.port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )
        sock = socket.socket(family, socket.SOCK_STREAM)
    except socket.gaierror as e:  # its errno is an EAI_* code, not an errno
        _fail(wsi, errno.EINVAL, f"bad address {address}: {os_error_reason(e)}")
        return
    except OSError as e:
        _fail(wsi, e.errno or errno.EINVAL, os_error_reason(e))
        return
    wsi.sock = sock
    wsi.fd = sock.fileno()
    sock.setblocking(False)
    try:
        if cc.iface is not None:
            _bind_iface(sock, family, cc.iface)
        ctx.pt.add(wsi, 0)
    except OSError as e:
        err = errno.EINVAL if isinstance(e, socket.gaierror) else e.errno or errno.EINVAL
        _fail(wsi, err, f"bind to {cc.iface}: {os_error_reason(e)}")
        return
    wsi._call(Reason.CONNECTING)
    if _state(wsi) is not WsiState.PENDING:
        return
    err = sock.connect_ex(info[0][4])
    if err not in (0, errno.EINPROGRESS):
        _fail(wsi, err, errno_reason(err))
        return
    wsi.state = WsiState.CONNECTING
    ctx.pt.set_events(wsi, EV_WRITE)


def _bind_iface(sock: socket.socket, family: int, iface: str) -> None:
    """Bind the source: an IP literal is the source address, anything else a device name."""
    literal = literal_address(iface)
    if literal is not None:
        sock.bind((literal, 0))
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())


def connect_finished(wsi: Wsi) -> None:
    """The connecting socket turned writable: it connected, or it failed."""
    sock = wsi.sock
    assert sock is not None
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        _fail(wsi, err, errno_reason(err))
        return
    try:
        peer = sock.getpeername()
        local = sock.getsockname()
    except OSError as e:  # reset between the writable event and here
        _fail(wsi, e.errno or errno.ECONNRESET, errno_reason(e.errno or errno.ECONNRESET))
        return
    cc = wsi._client
    assert cc is not None
    cc.timeout_sul.cancel()
    now = wsi.ctx.pt.suls.clock()
    wsi.peer = (peer[0], peer[1])
    wsi.local = (local[0], local[1])
    cao = wsi.caos[-1]
    cao.ended = now
    cao.result = CaoResult.WON
    cao.local = wsi.local
    cao.connect_us = _us(now - cao.started)
    if wsi.conmon is not None:
        wsi.conmon.peer = wsi.peer
        wsi.conmon.sockconn_us = cao.connect_us
        cao.conmon = wsi.conmon
    wsi.state = WsiState.ESTABLISHED
    wsi._rx_on = True
    wsi._announced = True
    wsi._update_events()
    wsi.ctx._established(wsi)
    wsi._call(Reason.RAW_CONNECTED)


def _fail(wsi: Wsi, err: int, reason: str) -> None:
    """The attempt (and, with one attempt, the connect) failed."""
    if wsi.state >= WsiState.ESTABLISHED:
        return
    if wsi.caos:
        cao = wsi.caos[-1]
        cao.ended = wsi.ctx.pt.suls.clock()
        cao.result = _ERRNO_RESULT.get(err, CaoResult.ERROR)
        cao.errno = err
        cao.connect_us = _us(cao.ended - cao.started)
    wsi._close_now(reason)
