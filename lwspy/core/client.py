"""Client connects: resolve, order, race; the I/O around the sans-I/O racer.

A connect's wsi moves ``PENDING`` (made by ``ctx.connect``) → the start timer fires:
WSI_CREATE, then one *try*: resolve (a literal or a hosts-file name at once, in the same
pass; any other name through the context's resolver), order the candidates
(:mod:`lwspy.net.sort`: RFC 6724, RFC 8305 interleaving, the CAO database's rerank) and
race them
(:class:`lwspy.net.connect.Racer`) → ``CONNECTING`` while attempts run → ``ESTABLISHED``
(RAW_CONNECTED) when one connects, or, when the try fails and no retry is left,
``CLOSED`` with CLIENT_CONNECTION_ERROR and the reason. With ``retry=`` a failed try is
followed, after ``policy.delay(n)``, by the next one, up to ``policy.conceal`` of them.

Each attempt is its own socket in the selector (an internal wsi of the
:data:`ATTEMPT` role) and its own :class:`~lwspy.net.cao.Cao`. The winner's socket moves
to the user's wsi; its CAO becomes the HEAD of ``wsi.caos``, the others follow in start
order. Every attempt that ended by itself (won, lost, refused, unreachable, timed out)
goes into ``ctx.cao_db``, which the next connect asks: which path to try first, and how
long to wait before the next one. The netlink role tells the database, through
:func:`forget_paths`, which history a routing change made stale, and gives the attempts
started during its cold plug (its table still empty) their path through
:func:`fill_paths` once the table is known.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import TYPE_CHECKING, Any, cast

from lwspy.core.protocol import INTERNAL, Reason
from lwspy.core.role import InternalRole
from lwspy.core.sul import Sul
from lwspy.core.wsi import (
    CLOSED,
    CLOSING,
    CONNECTING,
    ESTABLISHED,
    EV_WRITE,
    PENDING,
    Wsi,
    errno_reason,
)
from lwspy.net import sort
from lwspy.net.cao import Cao, CaoDb, CaoResult, Conmon, summarize
from lwspy.net.connect import GiveUp, Racer, Start, Won, attempt_delay
from lwspy.net.hosts import HOSTNAME

if TYPE_CHECKING:
    from collections.abc import Iterable

    from lwspy.core.context import Context
    from lwspy.core.resolver import DnsAnswer
    from lwspy.core.retry import RetryPolicy
    from lwspy.net.route import Route, RouteTable
    from lwspy.roles.netlink import RouteWatcher

__all__ = [
    "ATTEMPT",
    "AttemptRole",
    "ClientConnect",
    "fill_paths",
    "forget_paths",
    "literal_address",
]

_ERRNO_RESULT = {
    errno.ECONNREFUSED: CaoResult.REFUSED,
    errno.EHOSTUNREACH: CaoResult.UNREACHABLE,
    errno.ENETUNREACH: CaoResult.UNREACHABLE,
    errno.ETIMEDOUT: CaoResult.TIMED_OUT,
}
_TCP_INFO_LEN = 128  # struct tcp_info up to tcpi_bytes_acked and beyond
_TCPI_BYTES_ACKED = 120  # its offset (linux/tcp.h, since 4.1): SYN acknowledged -> >= 1
_U64 = struct.Struct("=Q")
_RESET_AFTER_CONNECT = (errno.ECONNRESET, errno.EPIPE)
"""A connect's SO_ERROR after a reset that may have come once it was established (Linux
``tcp_reset()``: ECONNRESET, also in SYN-RECV; EPIPE once the peer's FIN had come);
:func:`_answered_then_reset` tells a connection that was answered from the rest."""
_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
_STREAM_NONBLOCK = socket.SOCK_STREAM | _NONBLOCK  # one system call less than setblocking()
_V6 = int(socket.AF_INET6)
_V4 = int(socket.AF_INET)
# IFA_F_* flags of an address (linux/if_addr.h) that RFC 6724's source rules read
_IFA_F_TEMPORARY = 0x01
_IFA_F_DADFAILED = 0x08
_IFA_F_HOMEADDRESS = 0x10
_IFA_F_DEPRECATED = 0x20
_IFA_F_TENTATIVE = 0x40
_RTN_THROW = 9  # rtm_type of a throw route (linux/rtnetlink.h)
# Module-level aliases: a global lookup, where an enum member is a class attribute lookup
_PENDING = CaoResult.PENDING
_WON = CaoResult.WON
_LOST_RACE = CaoResult.LOST_RACE
_TIMED_OUT = CaoResult.TIMED_OUT
_ERROR = CaoResult.ERROR
_R_CONNECTING = Reason.CONNECTING
_R_RAW_CONNECTED = Reason.RAW_CONNECTED
_R_WSI_CREATE = Reason.WSI_CREATE
_RECENT = 8  # how many of an address's (or host's) newest records a connect looks at
_DNS_WORST = ("NXDOMAIN", "SERVER_UNREACHABLE", "NO_RESULT")  # which failure a DNS error names


_IFNAMSIZ = 16


def literal_address(host: str) -> str | None:
    """The canonical text of ``host`` if it is an IP literal (``[v6]`` allowed), else None.

    An IPv6 scope id must be an interface index or a name the kernel could have (at most
    15 printable ASCII characters): anything else is no address.
    """
    if ":" not in host and not host.replace(".", "").isdigit():
        return None  # a name: not worth two failed parses (every connect asks)
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


def _family(address: str) -> int:
    return _V6 if ":" in address else _V4


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)  # not int(): 0.03 s is 30,000 µs, not 29,999


_UNSET: Any = object()  # a source not looked for yet


class _Path:
    """What the route table says of one candidate at this try: its path and its source.

    ``early``: the netlink role's table was not filled yet (its cold plug), so it says
    nothing; the attempts that take it get their path when the table is known.
    """

    __slots__ = ("early", "gateway", "ifindex", "route", "route_id", "source")

    def __init__(
        self, route: Route | None, source: sort.Source | None = _UNSET, early: bool = False
    ) -> None:
        self.route = route
        self.ifindex = route.oif if route is not None else None
        self.gateway = route.gateway if route is not None else None
        self.route_id = route.id if route is not None else None
        # None: no route, or no source address for it; looked for only when sorting
        self.source = source
        self.early = early


class _Attempt:
    """One attempt of the current try: its CAO and the internal wsi that holds its socket."""

    __slots__ = ("cao", "n", "owner", "reset", "wsi")

    def __init__(self, owner: Wsi, n: int, cao: Cao, wsi: Wsi | None) -> None:
        self.owner = owner
        self.n = n
        self.cao = cao
        self.wsi = wsi
        self.reset = 0  # the reset SO_ERROR reported (and so took) for a connect that completed


class AttemptRole(InternalRole):
    """An attempt's connecting socket: writable means connected or failed."""

    name = "connect-attempt"

    def on_readable(self, wsi: Wsi) -> None:  # pragma: no cover - only write is watched
        _attempt_writable(wsi)

    def on_writable(self, wsi: Wsi) -> None:
        _attempt_writable(wsi)


ATTEMPT = AttemptRole()


class ClientConnect:
    """What a client wsi is connecting to, its tries, and the timers of that connect."""

    __slots__ = (
        "answers",
        "attempts",
        "caos",
        "db",
        "host",
        "iface",
        "paths",
        "port",
        "race_sul",
        "racer",
        "resolving",
        "retries",
        "retry",
        "start_sul",
        "started",
        "user_error",
        "want_conmon",
    )

    def __init__(
        self,
        wsi: Wsi,
        host: str,
        port: int,
        iface: str | None,
        conmon: bool,
        retry: RetryPolicy | None = None,
    ) -> None:
        suls = wsi.ctx.pt.suls
        self.host = host
        self.port = port
        self.iface = iface
        self.want_conmon = conmon
        self.retry = retry
        self.retries = 0
        self.user_error: Exception | None = None
        self.db = wsi.ctx.cao_db
        self.caos: list[Cao] = []  # every attempt of every try, in start order (wsi.caos)
        self.racer: Racer | None = None
        self.attempts: dict[int, _Attempt] = {}  # the current try's, by attempt number
        self.paths: dict[str, _Path] = {}
        self.answers: list[tuple[str, str]] = []  # (disposition, detail) per DNS answer
        self.resolving: Any = None  # the resolver's handle while a resolve is pending
        self.started = 0.0  # when the current try began (clock seconds)
        self.start_sul = Sul(suls, lambda: _start(wsi))
        self.race_sul = Sul(suls, lambda: _race_timer(wsi))
        suls.push(self.start_sul, suls.clock())  # schedule(0), less its argument checks

    def abandon(self, now: float) -> None:
        """The wsi closes (user, destroy, the outcome): stop every timer, socket, query.

        Attempts still pending end as ERROR and stay out of the database: their path did
        nothing wrong.
        """
        db = self.db
        self.start_sul.cancel()
        self.race_sul.cancel()
        if self.resolving is not None:
            handle, self.resolving = self.resolving, None
            handle.cancel()
        attempts, self.attempts = self.attempts, {}
        for att in attempts.values():
            if att.cao.result is _PENDING:
                att.cao.result = _ERROR
                att.cao.ended = now
            db.ended(att.cao)
            if att.wsi is not None:
                att.wsi._close_now("abandoned")


# -- one try: resolve, then race --------------------------------------------------------


def _start(wsi: Wsi) -> None:
    """The start timer fired: the first try (announce the wsi first), or a retry."""
    cc = wsi._client
    assert cc is not None
    if not wsi._created:
        if cc.want_conmon:
            wsi.conmon = Conmon()
        if cc.user_error is not None:  # user_factory raised inside connect(): report it here
            wsi.ctx._callback_failed(wsi, _R_WSI_CREATE, cc.user_error)
            return
        wsi._created = True
        wsi._call(_R_WSI_CREATE)
        if wsi.state is not PENDING:  # the callback closed it
            return
    _begin_try(wsi, cc)


def _begin_try(wsi: Wsi, cc: ClientConnect) -> None:
    ctx = wsi.ctx
    now = ctx.pt.suls.clock()
    cc.paths = {}
    cc.answers = []
    cc.started = now
    if wsi.conmon is not None:
        cm = wsi.conmon
        cm.dns_us, cm.dns_disposition, cm.dns_results = 0, "OK", []
    literal = literal_address(cc.host)
    if literal is None and not HOSTNAME.match(cc.host):
        # No retry makes it valid: the error at once, from the loop like any outcome.
        host = cc.host
        kind = "IP address" if ":" in host else "host name"
        shown = host if len(host) <= 64 else host[:61] + "..."
        if wsi.conmon is not None:
            wsi.conmon.dns_disposition = "NO_RESULT"
        wsi._close_now(f"invalid {kind} {shown!r}")
        return
    bound = literal_address(cc.iface) if cc.iface is not None else None
    if literal is not None:
        families: tuple[int, ...] = (_family(literal),)
    elif bound is not None:  # bound to a source address: only its family can go
        families = (_family(bound),)
    else:
        families = (_V6, _V4)
    addrs = ctx._hosts_lookup(cc.host) if literal is None else []
    # Which family's answer may start the race alone: only DNS answers come one by one.
    prefer = _preferred_family(ctx.cao_db, cc.host) if literal is None and not addrs else _V6
    cc.racer = Racer(
        families,
        lambda pool, after: _order(ctx, cc, pool, after),
        lambda address: _delay(ctx, cc, address),
        now,
        ctx.connect_timeout_secs,
        prefer,
        lambda address: _source(ctx, cc, address) is not None,
    )
    if literal is not None:
        _answered(wsi, cc, _family(literal), [literal], "OK", "", 0.0)
        return
    if not addrs:
        # The whole connect is bounded from its start, DNS included: the racer's timer is
        # set by each of its actions, but a resolve that never answers gives it none.
        cc.race_sul.schedule(ctx.connect_timeout_secs)
        _resolve(wsi, cc)
        return
    # The hosts file has it (the resolver would answer from it too, a pass later): both
    # answers are here at once, and go to the racer as one.
    elapsed = ctx.pt.suls.clock() - now
    if wsi.conmon is not None:  # resolver order is the file's order (addrs is our copy)
        wsi.conmon.dns_results = addrs
    by_family: dict[int, list[str]] = {_V6: [], _V4: []}
    for a in addrs:  # one pass, in file order
        by_family[_V6 if ":" in a else _V4].append(a)
    together = []
    for fam in families:
        these = by_family[fam]
        if not these:
            cc.answers.append(("NO_RESULT", f"DNS NO_RESULT: {cc.host}"))
        together.append((fam, these))
    _conmon_dns(wsi, cc, [], elapsed)
    now = ctx.pt.suls.clock()
    _act(wsi, cc, cc.racer.answers(together, now), now)


def _resolve(wsi: Wsi, cc: ClientConnect) -> None:
    """Ask the context's resolver (hosts file, then DNS); each family's answer comes back
    from the loop, the AAAA and A answers in the order they complete."""
    racer = cc.racer

    def on_answer(ans: DnsAnswer) -> None:
        if cc.racer is not racer or racer is None or wsi.state >= ESTABLISHED:
            return  # an answer for an earlier try, or after the outcome
        if ans.family not in racer.outstanding:  # not asked for (a bound source's family)
            _conmon_dns(wsi, cc, ans.addresses, ans.elapsed)
            return
        if racer.outstanding == {ans.family}:
            cc.resolving = None  # the last answer: the resolver is done with us
        _answered(wsi, cc, ans.family, ans.addresses, ans.disposition, ans.detail, ans.elapsed)

    try:
        cc.resolving = wsi.ctx.resolver.resolve(cc.host, on_answer)
    except ValueError as e:  # pragma: no cover - connect() checked the name already
        cc.answers.append(("NO_RESULT", f"DNS {e}"))
        _give_up(wsi, cc, None)


def _answered(
    wsi: Wsi,
    cc: ClientConnect,
    family: int,
    addrs: list[str],
    disposition: str,
    detail: str,
    elapsed: float,
) -> None:
    """One family's answer: into CONMON, then to the racer."""
    racer = cc.racer
    assert racer is not None
    if not addrs:
        cc.answers.append((disposition if disposition != "OK" else "NO_RESULT", detail))
    _conmon_dns(wsi, cc, addrs, elapsed)
    now = wsi.ctx.pt.suls.clock()
    _act(wsi, cc, racer.answer(family, addrs, now), now)


def _conmon_dns(wsi: Wsi, cc: ClientConnect, addrs: list[str], elapsed: float) -> None:
    """What the resolver said, into CONMON: every address, in answer order."""
    cm = wsi.conmon
    if cm is not None:
        cm.dns_us = _us(elapsed)
        for a in addrs:
            if a not in cm.dns_results:
                cm.dns_results.append(a)
        cm.dns_disposition = "OK" if cm.dns_results else _dns_failure(cc)[0]


def _dns_failure(cc: ClientConnect) -> tuple[str, str]:
    """The disposition and detail that name why there is no address."""
    for disp in _DNS_WORST:
        for d, detail in cc.answers:
            if d == disp:
                return d, detail or f"DNS {d}: {cc.host}"
    return "NO_RESULT", f"DNS NO_RESULT: {cc.host}"


# -- ordering and delays: what the route table and the CAO database say -----------------


def _path(ctx: Context, cc: ClientConnect, address: str) -> _Path:
    """The route, interface, gateway and source for ``address`` (cached for the try; an
    early one only until the table is known)."""
    watcher = _watcher(ctx)
    path = cc.paths.get(address)
    if path is not None and not (path.early and watcher is not None and watcher.table_ready):
        return path
    if watcher is None:
        path = _Path(None)  # no table: the kernel decides, asked when a source is needed
    elif not watcher.table_ready:
        path = _Path(None, early=True)
    else:
        path = _table_path(watcher.table, address)
    if cc.iface is not None and literal_address(cc.iface) is None:
        # Bound to a device: the connection leaves by it, whatever the table's route.
        ifindex = _ifindex(cc.iface)
        if ifindex is not None and path.ifindex != ifindex:
            path = _Path(None, early=path.early)
            path.ifindex = ifindex
    cc.paths[address] = path
    return path


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _table_path(table: RouteTable, address: str) -> _Path:
    """What ``table`` says of the path to ``address``."""
    route = table.lookup(address)
    if route is None or route.type == _RTN_THROW:
        # Tables local and main pass it on (policy rules, table default): the kernel
        # decides, asked when a source is needed.
        return _Path(None)
    if table.forwards(route):
        return _Path(route)
    return _Path(None, None)  # blackhole, unreachable, prohibit, a blackhole nexthop


def _watcher(ctx: Context) -> RouteWatcher | None:
    """The netlink role (its address list and cold-plug state, besides the table)."""
    return cast("RouteWatcher | None", ctx._netlink)


def _source(ctx: Context, cc: ClientConnect, address: str) -> sort.Source | None:
    """The source address RFC 6724 §5 (or the kernel) picks for ``address``; None: none."""
    path = _path(ctx, cc, address)
    if path.source is _UNSET:
        watcher = _watcher(ctx)
        if path.route is not None and watcher is not None:
            path.source = _netlink_source(watcher, path.route, address)
        else:
            path.source = _kernel_source(address)
    src: sort.Source | None = path.source
    return src


def _netlink_source(watcher: RouteWatcher, route: Route, address: str) -> sort.Source | None:
    """RFC 6724 §5 over the host's addresses (the netlink role's list)."""
    if route.prefsrc is not None:  # the route names its source: that is what the kernel uses
        return sort.Source(route.prefsrc, route.oif)
    fam = _family(address)
    cands = [
        sort.Source(
            a.local,
            a.index,
            a.prefixlen,
            deprecated=bool(a.flags & _IFA_F_DEPRECATED),
            temporary=bool(a.flags & _IFA_F_TEMPORARY),
            home=bool(a.flags & _IFA_F_HOMEADDRESS),
        )
        for a in watcher.addrs.values()
        if a.family == fam and not a.flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED)
    ]
    return sort.select_source(address, cands, route.oif)


def _kernel_source(address: str) -> sort.Source | None:
    """Without netlink: the source the kernel would pick (a connected UDP socket's name)."""
    fam = _family(address)
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))
            return sort.Source(s.getsockname()[0])
    except OSError:  # no route, or no address of that family
        return None


def _preferred_family(db: CaoDb, host: str) -> int:
    """The family of the host's latest win (IPv6 without one): its answer starts the race."""
    for cao in db.query(host=host, limit=_RECENT):
        if cao.result is _WON:
            return cao.family
    return _V6


def _same_path(cao: Cao, path: _Path) -> bool:
    return cao.ifindex == path.ifindex and cao.gateway == path.gateway


def _order(ctx: Context, cc: ClientConnect, pool: list[str], after: int | None) -> list[str]:
    """The racer's candidates, best first (see :func:`lwspy.net.sort.order`); ``after``:
    the family of the attempt started last (mid-race), whose other family goes next."""
    if len(pool) < 2:
        return list(pool)
    db = ctx.cao_db

    def rank(address: str) -> int:
        if _source(ctx, cc, address) is None:
            return sort.RANK_NO_ROUTE
        path = _path(ctx, cc, address)
        for cao in db.query(address=address, limit=_RECENT):  # newest first: the latest word
            if _same_path(cao, path):
                return sort.RANK_WON if cao.result is _WON else sort.RANK_DEMOTED
        return sort.RANK_UNKNOWN

    return sort.order(pool, lambda a: _source(ctx, cc, a), rank, after)


def _delay(ctx: Context, cc: ClientConnect, address: str) -> float:
    """RFC 8305 §5: the Connection Attempt Delay after starting ``address``, from the
    measured connect times of its path (the default until there are some)."""
    path = _path(ctx, cc, address)
    caos = [c for c in ctx.cao_db.query(address=address, limit=_RECENT) if _same_path(c, path)]
    return attempt_delay(summarize(caos).median_connect_us, ctx.happy_eyeballs_delay)


# -- the racer's actions ----------------------------------------------------------------


def _act(wsi: Wsi, cc: ClientConnect, actions: list[Any], now: float) -> None:
    """Carry out what the racer said at ``now``, then set its timer."""
    for act in actions:
        if wsi.state >= CLOSING:  # a callback closed it
            return
        if type(act) is Start:
            more = _start_attempt(wsi, cc, act.n, act.address, now)
            if more:
                _act(wsi, cc, more, now)
                return  # the nested call set the timer
        elif type(act) is Won:
            _won(wsi, cc, act)
            return
        elif type(act) is GiveUp:
            _gave_up(wsi, cc, act)
            return
    racer = cc.racer
    due = racer.deadline if racer is not None else None
    if due is None or wsi.state >= CLOSING:  # pragma: no cover - ended above
        cc.race_sul.cancel()
    else:
        # schedule(max(0, due - now)), less its argument checks: a due time passed already
        # fires on the next pass all the same
        wsi.ctx.pt.suls.push(cc.race_sul, due)


def _race_timer(wsi: Wsi) -> None:
    cc = wsi._client
    assert cc is not None
    if cc.racer is not None and wsi.state < CLOSING:
        now = wsi.ctx.pt.suls.clock()
        _act(wsi, cc, cc.racer.timer(now), now)


def _start_attempt(wsi: Wsi, cc: ClientConnect, n: int, address: str, now: float) -> list[Any]:
    """One non-blocking connect to one address, recorded as a CAO. Returns the racer's
    next actions when the attempt failed at once (no route, bind refused, ...)."""
    ctx = wsi.ctx
    family = _family(address)
    cao = Cao(cc.host, cc.port, address, family, started=now)  # when the racer said so
    path = _path(ctx, cc, address)
    cao.ifindex, cao.gateway, cao.route_id = path.ifindex, path.gateway, path.route_id
    if path.early:  # the netlink role fills its path in when its table is known
        watcher = _watcher(ctx)
        assert watcher is not None
        watcher.early_caos.append(cao)
    cc.caos.append(cao)
    cc.db.started(cao)  # a forget() of its path from now on keeps it out of the database
    att = _Attempt(wsi, n, cao, None)
    cc.attempts[n] = att
    if wsi.state is PENDING:
        wsi.state = CONNECTING
        wsi._call(_R_CONNECTING)  # once per connect, before its first socket
        if wsi.state >= CLOSING:
            return []
    try:
        sock = socket.socket(family, _STREAM_NONBLOCK)
    except OSError as e:  # pragma: no cover - out of fds (EMFILE), or no such family here
        return _attempt_failed(att, e.errno or errno.EINVAL, str(e), now, record=False)
    if not _NONBLOCK:  # pragma: no cover - Linux makes it non-blocking in socket(2)
        sock.setblocking(False)
    aw = Wsi(ctx, ATTEMPT, None, INTERNAL, sock)
    aw.user = att
    aw.state = CONNECTING
    att.wsi = aw
    try:
        if cc.iface is not None:
            _bind_iface(sock, family, cc.iface)
    except OSError as e:
        err = errno.EINVAL if isinstance(e, socket.gaierror) else e.errno or errno.EINVAL
        return _attempt_failed(
            att, err, f"bind to {cc.iface}: {os_error_reason(e)}", now, record=False
        )
    try:
        err = sock.connect_ex((address, cc.port))  # numeric: no lookup ("%scope" taken too)
    except socket.gaierror as e:  # a scope id that names no interface here
        reason = f"bad address {address}: {os_error_reason(e)}"
        return _attempt_failed(att, errno.EINVAL, reason, now, record=False)
    if err not in (0, errno.EINPROGRESS):
        return _attempt_failed(att, err, errno_reason(err), now)
    ctx.pt.add(aw, EV_WRITE)
    return []


def _answered_then_reset(sock: socket.socket) -> bool:
    """A socket whose SO_ERROR said reset: did its handshake complete (TCP_INFO's
    ``tcpi_bytes_acked`` counts our SYN once it is acknowledged) and is there data from
    the peer to read? Only then was it a connection, answered, before the reset."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        if len(info) >= _TCPI_BYTES_ACKED + 8 and not _U64.unpack_from(info, _TCPI_BYTES_ACKED)[0]:
            return False
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


def _bind_iface(sock: socket.socket, family: int, iface: str) -> None:
    """Bind the source: an IP literal is the source address, anything else a device name."""
    literal = literal_address(iface)
    if literal is not None:
        sock.bind((literal, 0))
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())


def _attempt_writable(aw: Wsi) -> None:
    """An attempt's socket turned writable: it connected, or it failed."""
    att = aw.user
    assert isinstance(att, _Attempt)
    wsi = att.owner
    cc = wsi._client
    sock = aw.sock
    assert sock is not None and cc is not None and cc.racer is not None
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err in _RESET_AFTER_CONNECT and _answered_then_reset(sock):
        # The connect completed, the peer sent something and reset it at once: it won.
        # What the peer sent is still queued; the wsi reads it, then closes with the
        # reset that SO_ERROR took. A reset with nothing sent, or before the handshake
        # ended (SYN-RECV after a simultaneous open also reads ECONNRESET), is a failed
        # attempt: the race goes on to the next address.
        att.reset, err = err, 0
    now = wsi.ctx.pt.suls.clock()
    if err:
        _act(wsi, cc, _attempt_failed(att, err, errno_reason(err), now), now)
        return
    att.cao.connect_us = _us(now - att.cao.started)
    _act(wsi, cc, cc.racer.connected(att.n, now), now)


def _attempt_failed(
    att: _Attempt, err: int, reason: str, now: float, record: bool = True
) -> list[Any]:
    """Close the attempt, record how it ended at ``now``; the racer's next actions."""
    wsi = att.owner
    cc = wsi._client
    assert cc is not None and cc.racer is not None
    _end(att, _ERRNO_RESULT.get(err, _ERROR), now, err)
    if record:
        cc.db.add(att.cao)
    else:
        cc.db.ended(att.cao)
    cc.attempts.pop(att.n, None)
    if att.wsi is not None:
        att.wsi._close_now(reason)
    return cc.racer.failed(att.n, reason, now)


def _end(att: _Attempt, result: CaoResult, now: float, err: int = 0) -> None:
    cao = att.cao
    cao.ended = now
    cao.result = result
    cao.errno = err
    if result is not _WON:
        cao.connect_us = _us(now - cao.started)


def _won(wsi: Wsi, cc: ClientConnect, act: Won) -> None:
    """The race has a winner: close the losers, move its socket to the user's wsi."""
    ctx = wsi.ctx
    now = ctx.pt.suls.clock()
    cc.race_sul.cancel()
    if cc.resolving is not None:  # the other family's answer is not needed any more
        handle, cc.resolving = cc.resolving, None
        handle.cancel()
    db = ctx.cao_db
    for n in act.losers:
        loser = cc.attempts.pop(n)
        _end(loser, _LOST_RACE, now)
        db.add(loser.cao)
        if loser.wsi is not None:
            loser.wsi._close_now("lost the race")
    att = cc.attempts.pop(act.n)
    cc.attempts = {}
    aw = att.wsi
    assert aw is not None and aw.sock is not None
    sock = aw.sock
    wsi.fd = sock.fileno()
    ctx.pt.hand_over(aw, wsi)  # the socket changes hands: open, still in the selector
    aw.sock = None
    aw.state = CLOSED
    cao = att.cao
    cao.ended = now
    cao.result = _WON
    cc.caos.remove(cao)
    cc.caos.insert(0, cao)  # the HEAD; the others stay in start order behind it
    wsi.sock = sock
    wsi._reset = att.reset
    try:
        peer = sock.getpeername()
    except OSError:  # reset since it connected: it connected to the address it was given
        peer = (cao.address, cc.port)
    try:
        local = sock.getsockname()  # kept by a socket that was reset
    except OSError as e:  # pragma: no cover - a socket that is open has a name
        wsi._close_now(errno_reason(e.errno or errno.ECONNRESET))
        return
    wsi.peer = (peer[0], peer[1])
    wsi.local = (local[0], local[1])
    cao.local = wsi.local
    watcher = _watcher(ctx)
    if watcher is not None and not watcher.table_ready:
        # Connected during the cold plug: the kernel says which way the connection goes
        # now; the route id (the table's) comes when the table is known.
        cao.ifindex, cao.gateway = watcher.ask_path(sock) or (None, None)
    db.add(cao)
    if wsi.conmon is not None:
        wsi.conmon.peer = wsi.peer
        wsi.conmon.sockconn_us = cao.connect_us
        cao.conmon = wsi.conmon
    wsi.state = ESTABLISHED
    wsi._rx_on = True
    wsi._announced = True
    wsi._update_events()
    ctx._established(wsi)
    wsi._call(_R_RAW_CONNECTED)


def _gave_up(wsi: Wsi, cc: ClientConnect, act: GiveUp) -> None:
    """The try failed: attempts still in flight timed out; retry, or report."""
    now = wsi.ctx.pt.suls.clock()
    cc.race_sul.cancel()
    db = wsi.ctx.cao_db
    for n in act.pending:
        att = cc.attempts.pop(n)
        _end(att, _TIMED_OUT, now, errno.ETIMEDOUT)
        db.add(att.cao)
        if att.wsi is not None:
            att.wsi._close_now("timed out")
    cm = wsi.conmon
    if cm is not None and cc.resolving is not None and not cm.dns_results:
        # The bound came while DNS had given nothing yet: CONMON says so (no answer in
        # time), so that this is told apart from a dead path.
        cm.dns_disposition = "SERVER_UNREACHABLE"
        cm.dns_us = _us(now - cc.started)
    _give_up(wsi, cc, act.reason)


def _give_up(wsi: Wsi, cc: ClientConnect, reason: str | None) -> None:
    if cc.resolving is not None:
        handle, cc.resolving = cc.resolving, None
        handle.cancel()
    if reason is None:
        reason = _dns_failure(cc)[1]
    policy = cc.retry
    if policy is not None and cc.retries < policy.conceal:
        cc.retries += 1
        cc.racer = None
        cc.start_sul.schedule(policy.delay(cc.retries))
        return
    wsi._close_now(reason)


# -- what the netlink role calls --------------------------------------------------------


def fill_paths(db: CaoDb, table: RouteTable, caos: Iterable[Cao]) -> None:
    """The route table is known at last: give the attempts started before it (during the
    netlink cold plug) the interface, gateway and route id it has for their address, as
    an attempt started now gets them (what the kernel said of a connection made
    meanwhile stays where the table has no route for it)."""
    for cao in caos:
        path = _table_path(table, cao.address)
        # not over what the kernel said of a connection that went another way (bound
        # to a device, or policy routing)
        if path.route is not None and cao.ifindex in (None, path.ifindex):
            db.set_path(cao, path.ifindex, path.gateway, path.route_id)


def forget_paths(db: CaoDb, removed: Iterable[Route], links_down: Iterable[int]) -> None:
    """A routing change made some history stale: a route deleted or replaced forgets the
    attempts that took it (and, with a gateway, every attempt via that gateway; a
    link-local gateway only on the route's own link, where alone it means that router);
    a link down or deleted forgets every attempt over it."""
    for route in removed:
        db.forget(route_id=route.id)
        gateway = route.gateway
        if gateway is not None:
            if ipaddress.ip_address(gateway.partition("%")[0]).is_link_local:
                db.forget(gateway=gateway, ifindex=route.oif)
            else:
                db.forget(gateway=gateway)
    for ifindex in links_down:
        db.forget(ifindex=ifindex)
