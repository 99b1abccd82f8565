"""The in-loop resolver (``ctx.resolver``): the hosts file, then DNS, AAAA and A in parallel.

The decisions are :mod:`lwspy.net.dns`'s (one :class:`~lwspy.net.dns.QueryMachine` per
family); this driver owns what they ask for: the sockets (internal wsi of
:mod:`lwspy.roles.udp`, connected UDP sockets that queries out at the same time share,
at most ``queries_per_socket`` each, every query with its own random id; a socket
closes as soon as no query waits on it, so a lookup made alone has a fresh random source
port), one timer per name, the cache and the callback::

    def on_answer(answer: DnsAnswer) -> None:   # once for AAAA, once for A
        print(answer.family, answer.addresses, answer.disposition, answer.detail)

    handle = ctx.resolver.resolve("lab.test", on_answer)
    handle.cancel()                             # no more callbacks; sockets closed

Answers always come from the loop, never from inside ``resolve()``: even a hosts-file,
literal or cached answer waits for the next pass. A name in the hosts file is not asked
of DNS (glibc ``hosts: files dns``): its families come from the file alone.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from lwspy.core.sul import Sul
from lwspy.core.wsi import CLOSED, Wsi
from lwspy.net.dns import (
    TYPE_A,
    TYPE_AAAA,
    DnsAnswer,
    DnsCache,
    Done,
    Labels,
    QState,
    QueryMachine,
    ResolvConf,
    Send,
    hosts_answers,
    parse_nameserver,
    parse_resolv_conf,
    search_names,
)
from lwspy.net.hosts import HOSTNAME
from lwspy.roles.udp import drain, open_tcp, open_udp

if TYPE_CHECKING:
    from lwspy.core.context import Context

__all__ = ["DnsAnswer", "ResolveHandle", "Resolver"]

OnAnswer = Callable[[DnsAnswer], None]


_FAMILIES = ((socket.AF_INET6, TYPE_AAAA), (socket.AF_INET, TYPE_A))

QUERIES_PER_SOCKET = 16
"""The most queries one UDP socket carries (8 names, AAAA and A each): lookups made
together share a few source ports, one made alone has its own (see :class:`_Port`)."""

DRAIN_READS = 64
"""The most datagrams read from a UDP socket that failed, for answers queued before the error."""

SERVER_ERRORS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
"""Socket errors that are the server's (or its route's), not one socket's: one of them on
any socket to a server moves every query waiting on every socket to it. The kernel rate-
limits ICMP errors (Linux: a burst of 6 per peer, then one a second), so in a burst of
lookups only a few of the sockets to a dead server would ever be told."""

LOCAL_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Errors opening a socket that are this host's, not the server's: a query then rides a
socket already open to its server, over that socket's share, or moves on without the
server being counted down."""

REFUSED_SECS = 1.0
"""After such an error, UDP sends to that server move on at once for this long, unsent
(the kernel's ICMP rate-limit interval: within it, it might not say so again)."""

DOWN_SECS = 30.0
"""A server that timed out or was unreachable is tried after the others for this long."""


class _Ids:
    """Query ids from the OS's CSPRNG, fetched 1,024 at a time (one syscall, not one per id)."""

    __slots__ = ("_it",)

    def __init__(self) -> None:
        self._it: Iterator[int] = iter(())

    def __call__(self) -> int:
        for qid in self._it:
            return qid
        self._it = iter(memoryview(secrets.token_bytes(2048)).cast("H"))
        return next(self._it)


_rand16 = _Ids()


class ResolveHandle:
    """One ``resolve()`` in progress; ``cancel()`` stops it (no more callbacks)."""

    __slots__ = (
        "_literal",
        "_on_answer",
        "_queries",
        "_resolver",
        "_waiting",
        "done",
        "name",
        "started",
    )

    def __init__(
        self,
        resolver: Resolver,
        name: str,
        on_answer: OnAnswer,
        started: float,
        literal: str | None = None,
    ):
        self._resolver = resolver
        self._literal = literal  # the name as an IP address, if it is one
        self._on_answer: OnAnswer | None = on_answer
        self._queries: list[_Query] = []
        self._waiting = True  # not begun yet (it begins on the loop's next pass)
        self.name = name
        self.started = started
        self.done = False  # both answers delivered, or cancelled

    def __repr__(self) -> str:
        state = "done" if self.done else f"{len(self._queries)} queries"
        return f"<ResolveHandle {self.name!r} {state}>"

    def cancel(self) -> None:
        """No more callbacks; every socket of this resolve is closed. Idempotent."""
        self.done = True
        self._on_answer = None
        self._waiting = False
        for q in self._queries:
            q.leave(self)
        self._queries.clear()
        self._resolver._handles.pop(self, None)

    def _deliver(self, answer: DnsAnswer) -> None:
        cb = self._on_answer
        if cb is None or self._resolver.closed:  # cancelled, or a callback destroyed the
            return  # context while answers given in the same step were being delivered
        self._resolver.answers += 1
        try:
            cb(answer)
        except Exception as exc:  # an application error: logged, the loop goes on
            self._resolver._ctx._callback_failed(None, None, exc)


class _Port:
    """A connected UDP socket to one server, shared by the queries out at the same time.

    A datagram goes to the query whose id it carries; one with an id no query here sent
    is shown to each of them (each counts it as an answer with a wrong id). A port takes
    at most ``Resolver.queries_per_socket`` queries, then no more (it is retired: the
    next query to that server opens a fresh port, so a fresh random source port), and it
    closes as soon as no query waits on it: a lookup made alone always has a port, and
    so a source port, of its own; lookups made together share a few.
    """

    __slots__ = ("by_id", "resolver", "server", "uses", "wsi")

    def __init__(self, resolver: Resolver, server: tuple[str, int]) -> None:
        self.resolver = resolver
        self.server = server
        self.by_id: dict[int, _Query] = {}  # query id -> the query waiting for it here
        self.uses = 0  # queries sent on it
        self.wsi = open_udp(resolver._ctx, server, self)
        resolver._open.setdefault(server, {})[self] = None

    def __repr__(self) -> str:
        return f"<_Port {self.server} {len(self.by_id)} waiting, {self.uses} sent>"

    def send(self, q: _Query, payload: bytes) -> None:
        """Send ``q``'s query; it waits here for the answer. OSError: the port failed."""
        qid = q.machine.query_id
        self.by_id[qid] = q
        q.port = self
        q.port_id = qid
        self.uses += 1
        resolver = self.resolver
        if self.uses >= resolver.queries_per_socket:
            self.retire()
        sock = self.wsi.sock
        assert sock is not None
        sock.send(payload)
        resolver.sent += 1

    def retire(self) -> None:
        """Take no more queries (those waiting here stay)."""
        ports = self.resolver._ports
        if ports.get(self.server) is self:
            del ports[self.server]

    def leave(self, q: _Query) -> None:
        """``q`` waits here no more; the last to leave closes the socket."""
        by_id = self.by_id
        if by_id.get(q.port_id) is q:
            del by_id[q.port_id]
        q.port = None
        if not by_id:
            self.retire()
            resolver = self.resolver
            open_ = resolver._open[self.server]
            del open_[self]
            if not open_:
                del resolver._open[self.server]
            if self.wsi.state is not CLOSED:
                self.wsi._close_now("resolver done")

    # -- DnsSink ------------------------------------------------------------------------

    def datagram(self, wsi: Wsi, data: bytes) -> None:
        qid = data[0] << 8 | data[1] if len(data) >= 2 else -1
        now = self.resolver._ctx._clock()
        q = self.by_id.get(qid)
        if q is not None:
            q.ask.act1(q, q.machine.receive(data, now))
            return
        for q in list(self.by_id.values()):
            if q.port is self:  # not moved on meanwhile
                q.ask.act1(q, q.machine.receive(data, now))

    def failed(self, wsi: Wsi, err: int) -> None:
        for ask, pairs in _by_ask(self.resolver._fail(self, err)).items():
            ask.act(pairs)

    def fail(self, why: str) -> list[tuple[_Query, Send | Done | None]]:
        """The socket failed (ICMP refused...): every query on it leaves, and what its
        machine makes of that is returned (for the caller to act on).

        The datagrams queued before the error are read first (Linux reports the error
        ahead of them): a query whose answer is among them takes it; only the others
        are unreachable.
        """
        self.retire()
        now = self.resolver._ctx.now()
        by_id = self.by_id
        waiting = list(by_id.values())
        decided: dict[_Query, Send | Done | None] = {}
        for data in drain(self.wsi, DRAIN_READS):
            q = by_id.get(data[0] << 8 | data[1] if len(data) >= 2 else -1)
            for t in waiting if q is None else (q,):
                if t not in decided:
                    action = t.machine.receive(data, now)
                    if action is not None or t.machine.state is not QState.UDP:
                        decided[t] = action  # answered (or moved on by what it read)
        pairs: list[tuple[_Query, Send | Done | None]] = []
        for q in waiting:
            q._close()
            pairs.append((q, decided[q] if q in decided else q.machine.unreachable(now, why)))
        return pairs


class _Ask:
    """The queries of one name started together (AAAA and A), and the one timer they share.

    Every UDP send (a first try, a retry, the next search name, a CNAME followed) goes
    out on the server's :class:`_Port` taking queries then, with its own random id: the
    first tries of both families land on the same one, a retry may land on a port that
    other lookups still wait on. TCP after a truncated answer has a socket of its own.
    """

    __slots__ = ("armed", "pair", "queries", "resolver", "sul")

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.queries: list[_Query] = []  # those not finished or stopped
        self.sul = Sul(resolver._ctx.pt.suls, self._timer)
        self.armed: float | None = None  # the deadline the timer is set for
        # AAAA and A walking the search list in lockstep (glibc getaddrinfo): the first
        # name at which either family has records answers both, so one connect never
        # mixes two names' addresses. None: one family only, it walks alone.
        self.pair: tuple[_Query, _Query] | None = None

    def lockstep(self) -> None:
        """Both families are asked here: walk the search list together."""
        q1, q2 = self.queries
        self.pair = (q1, q2)
        q1.machine.lockstep = q2.machine.lockstep = True

    def _sync(self) -> None:
        """A family paused between names: go on, stop, or wait for the other."""
        pair = self.pair
        assert pair is not None
        now = self.resolver._ctx.now()
        moves: list[tuple[_Query, Send | Done | None]] = []
        states = {q: q.machine.state for q in pair}  # as they are: resume() moves them
        for me, other in (pair, pair[::-1]):
            machine = me.machine
            if not me.handles or states[me] is not QState.PAUSED:
                continue
            there = states[other]
            if there is QState.DONE:  # records at this name (or it gave up): ours too
                moves.append((me, machine.stop(now)))
            elif there is QState.PAUSED or not other.handles:
                # nothing here for either: both to the next name (or the other is gone)
                moves.append((me, machine.resume(now)))
        if moves:
            self.act(moves)

    def _timer(self) -> None:
        self.armed = None
        now = self.resolver._ctx.now()
        self.act([(q, q.machine.timer(now)) for q in list(self.queries)])

    def start(self, now: float) -> None:
        """Start every query (the first sends of a name: UDP, to the same server)."""
        sends = [(q, q.machine.start(now)) for q in self.queries]
        if len(sends) == 2:  # the common case, without act()'s generality
            (q1, s1), (q2, s2) = sends
            assert type(s1) is Send and type(s2) is Send  # a machine starts with a UDP send
            assert s1.server == s2.server  # to the first of the servers both were given
            later: list[tuple[_Query, Send | Done | None]] = []
            self._send_udp(s1.server, [(q1, s1), (q2, s2)], later)
            if later:
                self.act(later)
            else:
                self.rearm()
            return
        self.act(sends)

    def act1(self, q: _Query, action: Send | Done | None) -> None:
        """:meth:`act` for one query's action (an answer: the hot path)."""
        if type(action) is Done:
            if q.handles:
                q.stop()
                q._finish(action)
            # no rearm: the timer may fire early for the other query, which then rearms
        elif action is not None:
            self.act([(q, action)])
            return
        if self.pair is not None:
            self._sync()

    def act(self, pairs: list[tuple[_Query, Send | Done | None]]) -> None:
        """Carry out what the machines decided: open and send, or deliver; then the timer."""
        resolver = self.resolver
        ctx = resolver._ctx
        while pairs:
            later: list[tuple[_Query, Send | Done | None]] = []
            udp: dict[tuple[str, int], list[tuple[_Query, Send]]] | None = None
            for q, action in pairs:
                if action is None or not q.handles:  # nothing to do, or stopped meanwhile
                    continue
                if isinstance(action, Send):
                    q._close()
                    if not action.tcp:
                        if udp is None:
                            udp = {}
                        udp.setdefault(action.server, []).append((q, action))
                        continue
                    try:
                        q.wsi = open_tcp(ctx, action.server, action.payload, q)
                        resolver.sent += 1
                    except OSError as e:  # no route, no address of that family: next server
                        err = e.errno or 0
                        local = err in LOCAL_ERRORS
                        later.append((q, q.machine.unreachable(ctx.now(), _why(err), local=local)))
                else:
                    later.append((q, action))  # a Done: delivered after the sends
            if udp is not None:
                for server, sends in udp.items():
                    self._send_udp(server, sends, later)
            dones = [(q, a) for q, a in later if isinstance(a, Done)]
            pairs = [(q, a) for q, a in later if not isinstance(a, Done)]
            for q, done in dones:
                if q.handles:
                    q.stop()
                    q._finish(done)
        self.rearm()
        if self.pair is not None:
            self._sync()

    def _send_udp(
        self,
        server: tuple[str, int],
        sends: list[tuple[_Query, Send]],
        later: list[tuple[_Query, Send | Done | None]],
    ) -> None:
        resolver = self.resolver
        ports = resolver._ports
        for q, s in sends:
            if not q.handles:  # stopped by a failure of an earlier send of this batch
                continue
            if resolver._refused:
                why = resolver._refused_now(server)
                if why is not None:  # it said so a moment ago: do not ask it again now
                    later.append((q, q.machine.unreachable(resolver._ctx.now(), why)))
                    continue
            port = ports.get(server)
            if port is None or q.machine.query_id in port.by_id:
                if port is not None:  # once in 65,536: the same id twice, apart
                    port.retire()
                try:
                    port = _Port(resolver, server)
                    ports[server] = port
                except OSError as e:  # no route, no address of that family: next server
                    err = e.errno or 0
                    spare = resolver._spare(server, q.machine.query_id, err)
                    if spare is None:
                        why = resolver._refuse(server, err)
                        now = resolver._ctx.now()
                        local = err in LOCAL_ERRORS
                        later.append((q, q.machine.unreachable(now, why, local=local)))
                        continue
                    port = spare  # out of file descriptors: over the share of an open one
            try:
                port.send(q, s.payload)
            except OSError as e:
                # An error on send is the socket's (on loopback, the ICMP refusal of an
                # earlier send is already in): every query on it moves on, this one too.
                for ask, pairs in _by_ask(resolver._fail(port, e.errno or 0)).items():
                    if ask is self:
                        later.extend(pairs)
                    else:
                        ask.act(pairs)

    def rearm(self) -> None:
        """Set the timer for the earliest deadline of the queries still out (or none)."""
        due: float | None = None
        for q in self.queries:
            d = q.machine.deadline
            if d is not None and (due is None or d < due):
                due = d
        if due is None:
            self.sul.cancel()
            self.armed = None
        elif due != self.armed:
            self.armed = due
            self.sul.schedule(max(0.0, due - self.resolver._ctx._clock()))


class _Query:
    """One family of a name being asked: its machine and its current socket.

    Resolves of the same name made while it is out share it (``handles``); it stops when
    the last of them is cancelled. Its timer is its :class:`_Ask`'s.
    """

    __slots__ = ("ask", "handles", "key", "machine", "port", "port_id", "resolver", "wsi")

    def __init__(
        self, resolver: Resolver, machine: QueryMachine, key: tuple[str, int], ask: _Ask
    ) -> None:
        self.resolver = resolver
        self.handles: list[ResolveHandle] = []
        self.machine = machine
        self.key = key  # (cache name, qtype)
        self.wsi: Wsi | None = None  # its TCP socket, if it asks over TCP
        self.port: _Port | None = None  # the UDP port it waits on, if any
        self.port_id = -1  # the id it waits for there
        self.ask = ask
        ask.queries.append(self)

    def join(self, handle: ResolveHandle) -> None:
        self.handles.append(handle)
        handle._queries.append(self)

    def leave(self, handle: ResolveHandle) -> None:
        if handle in self.handles:
            self.handles.remove(handle)
        if not self.handles:
            self.stop()

    def stop(self) -> None:
        ask = self.ask
        if self in ask.queries:
            ask.queries.remove(self)
            if not ask.queries:
                ask.sul.cancel()
                ask.armed = None
        self._close()
        if self.resolver._asking.get(self.key) is self:
            del self.resolver._asking[self.key]

    def _close(self) -> None:
        port = self.port
        if port is not None:
            port.leave(self)
        wsi, self.wsi = self.wsi, None
        if wsi is not None and wsi.state is not CLOSED:
            wsi._close_now("resolver done")

    # -- DnsSink: what its TCP socket reports --------------------------------------------

    def datagram(self, wsi: Wsi, data: bytes) -> None:
        if wsi is self.wsi:
            self.ask.act1(self, self.machine.receive(data, self.resolver._ctx._clock()))

    def failed(self, wsi: Wsi, err: int) -> None:
        if wsi is self.wsi:
            self._close()
            action = self.machine.unreachable(self.resolver._ctx.now(), _why(err))
            self.ask.act([(self, action)])

    def _finish(self, done: Done) -> None:
        resolver = self.resolver
        machine = self.machine
        now = resolver._ctx._clock()
        down = resolver._down
        for i in machine.down:
            down[machine.servers[i]] = now + DOWN_SECS
        if down:
            for i in machine.alive:
                down.pop(machine.servers[i], None)
        if done.ttl is not None:
            resolver.cache.put(self.key[0], machine.qtype, done.answer, done.ttl, now)
        handles, self.handles = self.handles, []
        for handle in handles:
            handle._queries.remove(self)
            if not handle._queries and not handle._waiting:
                handle.done = True
                resolver._handles.pop(handle, None)
        a = done.answer
        if len(handles) == 1 and handles[0].started == machine.started:
            handles[0]._deliver(a)  # its own answer: no copy needed
            return
        for handle in handles:  # each with its own copy and its own elapsed time
            handle._deliver(
                DnsAnswer(
                    a.family, list(a.addresses), a.disposition, a.detail, now - handle.started
                )
            )


class Resolver:
    """The context's resolver (``ctx.resolver``): hosts file, cache, then DNS in the loop.

    ``nameservers`` (IP literals, ``[v6]:port`` or ``v4:port``) replace the servers of
    ``resolv_conf``, which is re-read when it changes; with explicit nameservers there is
    no search list and glibc's defaults apply (ndots 1, timeout 5 s, attempts 2).
    ``cache_entries`` bounds the cache (names x families); ``queries_per_socket`` bounds
    how many queries share one UDP socket (the context's ``dns_queries_per_socket``).
    """

    __slots__ = (
        "_asking",
        "_conf",
        "_conf_stamp",
        "_ctx",
        "_down",
        "_explicit",
        "_handles",
        "_open",
        "_ports",
        "_refused",
        "_start",
        "_starting",
        "answers",
        "cache",
        "closed",
        "queries_per_socket",
        "resolv_conf",
        "sent",
    )

    def __init__(
        self,
        ctx: Context,
        nameservers: Iterable[str] | None = None,
        resolv_conf: str | os.PathLike[str] = "/etc/resolv.conf",
        cache_entries: int = 1024,
        queries_per_socket: int = QUERIES_PER_SOCKET,
    ) -> None:
        if type(queries_per_socket) is not int or queries_per_socket < 1:
            raise ValueError(f"queries_per_socket must be an int >= 1, not {queries_per_socket!r}")
        self.queries_per_socket = queries_per_socket
        self._ctx = ctx
        self.resolv_conf = os.fspath(resolv_conf)
        self._explicit: ResolvConf | None = None
        if nameservers is not None:
            if isinstance(nameservers, (str, bytes)):
                raise TypeError("nameservers must be an iterable of addresses, not one str")
            servers = []
            for ns in list(nameservers):
                if not isinstance(ns, str):
                    raise TypeError(f"a nameserver must be a str, not {type(ns).__name__}")
                servers.append(parse_nameserver(ns))
            self._explicit = ResolvConf(servers, source="the nameservers option")
        self._conf: ResolvConf | None = None
        self._conf_stamp: tuple[float, int] | None = None
        self._handles: dict[ResolveHandle, None] = {}
        self._down: dict[tuple[str, int], float] = {}  # server -> tried last until then
        self._ports: dict[tuple[str, int], _Port] = {}  # server -> the port taking queries
        self._open: dict[tuple[str, int], dict[_Port, None]] = {}  # server -> its open ports
        self._refused: dict[tuple[str, int], tuple[float, str]] = {}  # server -> when, why
        self._asking: dict[tuple[str, int], _Query] = {}  # (cache name, qtype) -> query out
        self._starting: list[ResolveHandle] = []  # resolves to begin on the next pass
        self._start: Sul | None = None  # made on the first resolve (ctx.pt may not exist yet)
        self.cache = DnsCache(cache_entries)
        self.closed = False
        self.sent = 0  # queries sent (UDP and TCP)
        self.answers = 0  # answers delivered

    def __repr__(self) -> str:
        return f"<Resolver {len(self._handles)} pending, {len(self.cache)} cached>"

    @property
    def conf(self) -> ResolvConf:
        """The configuration in force: explicit nameservers, or resolv.conf as it is now."""
        if self._explicit is not None:
            return self._explicit
        path = self.resolv_conf
        try:
            st = os.stat(path)
            stamp = (st.st_mtime, st.st_size)
            if self._conf is None or self._conf_stamp != stamp:
                with open(path, encoding="utf-8", errors="replace") as f:
                    self._conf = parse_resolv_conf(f.read(), source=path)
                self._conf_stamp = stamp
                self.cache.clear()  # other servers or search list: earlier answers may not hold
        except OSError as e:
            if self._conf_stamp is not None:
                self.cache.clear()
            self._conf_stamp = None
            self._conf = ResolvConf(source=f"{path}: {e.strerror or e}")
        return self._conf

    def resolve(self, name: str, on_answer: OnAnswer) -> ResolveHandle:
        """Look ``name`` up: ``on_answer(DnsAnswer)`` once for AAAA and once for A, in the
        order they complete, always from the loop. ValueError for a name that is not a
        valid host name (or IP literal); RuntimeError once the context is being destroyed
        (and, as for every loop-only call, from another thread).
        """
        self._ctx._check_alive()  # a loop-only call, like connect()
        if self.closed:
            raise RuntimeError("the resolver is closed (the context is destroyed)")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not callable(on_answer):
            raise TypeError("on_answer must be callable")
        literal = _literal(name)
        if literal is None and not HOSTNAME.match(name):
            raise ValueError(f"{name!r} is not a valid host name")
        handle = ResolveHandle(self, name, on_answer, self._ctx._clock(), literal)
        self._starting.append(handle)
        if len(self._starting) == 1:  # one timer begins every resolve of this pass
            if self._start is None:
                self._start = Sul(self._ctx.pt.suls, self._begin_all)
            self._start.schedule(0)
        self._handles[handle] = None
        return handle

    def close(self) -> None:
        """Cancel every resolve (no callbacks) and close every socket: the context ends."""
        self.closed = True
        for handle in list(self._handles):
            handle.cancel()

    def _fail(self, port: _Port, err: int) -> list[tuple[_Query, Send | Done | None]]:
        """``port`` failed with errno ``err``: its queries leave it, and those of every
        other port to its server too when the error is the server's (SERVER_ERRORS);
        what their machines make of that is returned, for the caller to act on."""
        why = self._refuse(port.server, err)
        if err not in SERVER_ERRORS:
            return port.fail(why)
        pairs: list[tuple[_Query, Send | Done | None]] = []
        for other in list(self._open.get(port.server, ())):
            pairs += other.fail(why)
        return pairs

    def _spare(self, server: tuple[str, int], qid: int, err: int) -> _Port | None:
        """A socket already open to ``server`` that can take query id ``qid`` although it
        may have carried its share, when a new one could not be opened for a reason of
        this host's (``err`` in LOCAL_ERRORS); None if there is none."""
        if err not in LOCAL_ERRORS:
            return None
        ports = [p for p in self._open.get(server, ()) if qid not in p.by_id]
        return min(ports, key=lambda p: len(p.by_id)) if ports else None

    def _refuse(self, server: tuple[str, int], err: int) -> str:
        """Errno ``err`` came from a socket to ``server``: if it is the server's, sends
        to it move on unsent for REFUSED_SECS. Returns the error as text."""
        why = _why(err)
        if err in SERVER_ERRORS:
            self._refused[server] = (self._ctx._clock(), why)
        return why

    def _refused_now(self, server: tuple[str, int]) -> str | None:
        """Why ``server`` is not to be asked now (it refused a moment ago), or None."""
        got = self._refused.get(server)
        if got is None:
            return None
        if self._ctx._clock() - got[0] < REFUSED_SECS:
            return got[1]
        del self._refused[server]
        return None

    # -- one resolve ---------------------------------------------------------------------

    def _begin_all(self) -> None:
        batch, self._starting = self._starting, []
        hosts: dict[str, list[str]] | None = None  # the files as they are for this pass
        conf: ResolvConf | None = None
        for handle in batch:
            if handle._waiting:  # not cancelled meanwhile
                if hosts is None or conf is None:
                    hosts = self._ctx._hosts_table()
                    conf = self.conf
                self._begin(handle, hosts, conf)

    def _begin(self, handle: ResolveHandle, hosts: dict[str, list[str]], conf: ResolvConf) -> None:
        handle._waiting = False
        now = self._ctx._clock()
        name = handle.name
        literal = handle._literal
        if literal is not None:
            addresses: list[str] | None = [literal]
        else:
            addresses = hosts.get(name.lower().rstrip("."))
        if addresses:
            handle.done = True
            self._handles.pop(handle, None)
            for answer in hosts_answers(addresses, now - handle.started):
                if literal is not None:
                    answer.detail = (
                        "IP literal"
                        if answer.addresses
                        else f"DNS NO_RESULT ({name} is an IP literal)"
                    )
                handle._deliver(answer)
            return
        # "name." is "name" unless a search list could make "name" mean something else
        cache_name = (name if conf.search else name.rstrip(".")).lower()
        servers = conf.nameservers
        if self._down:
            for server, until in list(self._down.items()):
                if until <= now:
                    del self._down[server]
            servers = sorted(servers, key=lambda s: s in self._down)  # stable: down ones last
        ready: list[DnsAnswer] = []
        ask: _Ask | None = None
        candidates: list[Labels] | None = None
        for family, qtype in _FAMILIES:
            asking = self._asking.get((cache_name, qtype))
            if asking is not None:  # the same name is being asked already: wait for it
                asking.join(handle)
                continue
            cached = self.cache.get(cache_name, qtype, now)
            if cached is not None:
                addrs, disposition, detail = cached
                ready.append(DnsAnswer(family, addrs, disposition, detail, now - handle.started))
            elif not conf.nameservers:
                ready.append(
                    DnsAnswer(
                        family,
                        [],
                        "SERVER_UNREACHABLE",
                        f"DNS SERVER_UNREACHABLE (no nameserver in {conf.source})",
                        now - handle.started,
                    )
                )
            else:
                if candidates is None:
                    candidates = search_names(name, conf)
                machine = QueryMachine(
                    candidates,
                    qtype,
                    servers,
                    timeout=conf.timeout,
                    attempts=conf.attempts,
                    rand16=_rand16,
                    started=handle.started,
                )
                if ask is None:
                    ask = _Ask(self)
                q = _Query(self, machine, (cache_name, qtype), ask)
                q.handles.append(handle)  # q.join(handle)
                handle._queries.append(q)
                self._asking[q.key] = q
        if not handle._queries:
            handle.done = True
            self._handles.pop(handle, None)
        for answer in ready:
            handle._deliver(answer)
        if ask is not None:  # both families start together: one socket, one timer
            if len(ask.queries) == 2 and len(candidates or ()) > 1:
                ask.lockstep()
            ask.start(now)


def _by_ask(
    pairs: list[tuple[_Query, Send | Done | None]],
) -> dict[_Ask, list[tuple[_Query, Send | Done | None]]]:
    by_ask: dict[_Ask, list[tuple[_Query, Send | Done | None]]] = {}
    for pair in pairs:
        by_ask.setdefault(pair[0].ask, []).append(pair)
    return by_ask


def _why(err: int) -> str:
    return os.strerror(err).lower() if err else "socket error"


def _literal(name: str) -> str | None:
    if ":" not in name and not name[-1:].isdigit():  # a host name: skip the exception
        return None
    try:
        return str(ipaddress.ip_address(name[1:-1] if name.startswith("[") else name))
    except ValueError:
        return None
