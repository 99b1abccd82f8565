"""The context (lws ``struct lws_context``): options, vhosts, the service thread and its loop."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from threading import get_ident
from typing import TYPE_CHECKING, Any

from lwspy.core import client
from lwspy.core.hooks import Hooks, RouteService
from lwspy.core.log import log
from lwspy.core.protocol import INTERNAL, Protocol, Reason
from lwspy.core.pt import Pt
from lwspy.core.retry import RetryPolicy
from lwspy.core.role import RoleOps
from lwspy.core.sul import Sul
from lwspy.core.vhost import Vhost
from lwspy.core.wsi import (
    CLOSED,
    ESTABLISHED,
    EV_READ,
    EV_WRITE,
    Wsi,
    WsiState,
    sock_family,
    sock_type,
)
from lwspy.net.cao import CaoDb
from lwspy.net.hosts import parse_hosts
from lwspy.roles.listen import LISTEN
from lwspy.roles.pipe import PIPE
from lwspy.roles.raw_file import RAW_FILE, byte_stream
from lwspy.roles.raw_skt import RAW_SKT, RAW_SKT_SHUTDOWN
from lwspy.system.smd import Smd
from lwspy.system.state import LwsSystem, SystemState

if TYPE_CHECKING:
    from lwspy.core.cpd import CpdService
    from lwspy.core.resolver import Resolver
    from lwspy.net.route import RouteTable
    from lwspy.roles.h1 import HttpRequest, HttpResponse

__all__ = ["CallbackErrorHandler", "Context"]


_NETLINK_SAID = False  # "running without netlink" is said once per process

CallbackErrorHandler = Callable[["Wsi | None", "Reason | None", BaseException], None]
"""The ``on_callback_error(wsi, reason, exc)`` option, told of every exception a callback raised.

``wsi`` and ``reason`` are None for a timer or a ``call_from_thread`` function."""

_INET = (int(socket.AF_INET), int(socket.AF_INET6))
_WSI_CREATE = Reason.WSI_CREATE  # a global lookup, not an enum class attribute
_MAX_WAIT = 86400.0
"""The longest one select() waits, in seconds: epoll and poll take at most 2**31-1 ms."""


def _seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")
    return float(value)


def _port(value: object, *, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"port must be an int, not {type(value).__name__}")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ValueError(f"port must be in {low}..65535, not {value}")
    return value


class Context:
    """An lwspy context: the loop, its vhosts, protocols and timers.

    A context manager; leaving the ``with`` block (or ``destroy()``) closes every wsi, each
    with its close callback, and releases every fd the context opened::

        from typing import Any

        from lwspy import Context, Protocol, Reason, Wsi


        def hello(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
            if wsi is None:
                return 0  # context-level reasons (PROTOCOL_INIT, ...) have no wsi
            if reason is Reason.RAW_CONNECTED:
                print("connected to", wsi.peer)
                return 1  # non-zero closes the wsi
            if reason in (Reason.CLIENT_CONNECTION_ERROR, Reason.RAW_CLOSE):
                wsi.ctx.stop()  # each way a connection ends stops the loop
            return 0


        with Context(protocols=[Protocol("hello", hello)]) as ctx:
            vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
            ctx.connect("127.0.0.1", vh.listen_port, protocol="hello")
            ctx.run()  # until ctx.stop()

    Options (all keyword-only):

    * ``protocols``: the protocols of the "default" vhost, and of every vhost made
      without its own (default: none).
    * ``hosts_file``: names for ``connect``, asked before DNS (default ``/etc/hosts``;
      re-read when it changes).
    * ``nameservers``: DNS servers, e.g. ``["198.51.100.53", "[2001:db8::53]:5353"]``;
      None (the default): those of ``resolv_conf``.
    * ``resolv_conf``: the resolver configuration read when ``nameservers`` is None
      (default ``/etc/resolv.conf``: ``nameserver``, ``search``, ``ndots``,
      ``options timeout:/attempts:``).
    * ``dns_queries_per_socket`` (16): the most DNS queries one UDP socket (one random
      source port) carries. A lookup made alone always has a socket of its own; lookups
      made at the same time share a few sockets, up to this many queries each (AAAA and A
      count as two). 2: a socket per name, as glibc; 1: a socket per query.
    * ``netlink``: follow the kernel's routing table (``ctx.routes``). None (the
      default): where a netlink socket can be opened, else without it, said once in the
      log; True: required (RuntimeError if it cannot be opened); False: off.
    * ``smd_queue_depth`` (40): the most SMD messages waiting for the loop; a ``post``
      beyond it returns False.
    * ``smd_ttl`` (2.0 s): an SMD message older than this when the loop gets to it is
      dropped.
    * ``timeout_secs`` (15): bounds the flush of a closing wsi, and then the reading to the
      peer's end of stream after the shutdown (see the guide's "Closing").
    * ``connect_timeout_secs`` (20): bounds each try of a client connect ("timed out").
    * ``happy_eyeballs_delay`` (0.25 s): the RFC 8305 Connection Attempt Delay while
      ``cao_db`` has no connect times for a path (then it is derived from them).
    * ``cao_history`` (1024) and ``cao_history_ttl`` (600 s): how many connect attempts
      ``cao_db`` keeps, and for how long.
    * ``cpd_url``: the captive portal detection probe, an ``http://`` URL whose server
      answers 204 (e.g. ``"http://connectivity-check.test/generate_204"``); None (the
      default): CPD is off. See ``ctx.cpd`` and the docs page "HTTP client and captive
      portal detection".
    * ``cpd_timeout_secs`` (3): bounds each CPD probe (and so the CPD_PRE_TIME hold).
    * ``on_callback_error``: told ``fn(wsi, reason, exc)`` of each exception a callback
      raised, after it was logged and its wsi closed; it may re-raise, which ends
      ``service()`` with that exception (for tests).
    * ``clock``: a monotonic clock in seconds (default ``time.monotonic``); inject a
      fake one to test timing logic.

    Attributes: ``vhosts`` (dict of name to :class:`Vhost`; "default" always exists),
    ``wsis`` (the open connections and adopted fds), ``smd`` (the context's
    :class:`~lwspy.Smd` queue), ``system`` (the :class:`~lwspy.LwsSystem` state
    machine), ``routes`` (the live :class:`~lwspy.RouteTable`, None without netlink),
    ``resolver`` (the in-loop DNS resolver, made on first use), ``cao_db`` (the
    :class:`~lwspy.CaoDb` of recent connect attempts), ``cpd`` (the
    :class:`~lwspy.CpdService`: captive portal detection),
    ``protocols``, ``hosts_file``, ``timeout_secs``, ``connect_timeout_secs`` (as
    given), ``destroyed``.

    Threads: the context belongs to one thread, the one that made it or, from then on,
    the one that last ran ``service()``/``run()``. Only ``cancel_service()``,
    ``call_from_thread()``, ``stop()`` and ``smd.post()`` may be called from another
    thread; the loop-only calls (``connect``, ``create_vhost``, ``adopt_socket``,
    ``adopt_file``, ``sul``, ``call_later``, ``destroy``) raise RuntimeError there
    (``destroy`` only while the loop's thread is alive).
    """

    def __init__(
        self,
        *,
        protocols: Iterable[Protocol] = (),
        hosts_file: str | os.PathLike[str] = "/etc/hosts",
        nameservers: Iterable[str] | None = None,
        resolv_conf: str | os.PathLike[str] = "/etc/resolv.conf",
        dns_queries_per_socket: int = 16,
        netlink: bool | None = None,
        smd_queue_depth: int = 40,
        smd_ttl: float = 2.0,
        timeout_secs: float = 15,
        connect_timeout_secs: float = 20,
        happy_eyeballs_delay: float = 0.25,
        cao_history: int = 1024,
        cao_history_ttl: float = 600,
        cpd_url: str | None = None,
        cpd_timeout_secs: float = 3.0,
        on_callback_error: CallbackErrorHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(protocols, (str, bytes, Protocol)) or not isinstance(protocols, Iterable):
            raise TypeError("protocols must be an iterable of Protocol")
        protos = list(protocols)
        names: set[str] = set()
        for p in protos:
            if not isinstance(p, Protocol):
                raise TypeError(f"protocols must hold Protocol objects, not {type(p).__name__}")
            if p.name in names:
                raise ValueError(f"two protocols are named {p.name!r}")
            names.add(p.name)
        if on_callback_error is not None and not callable(on_callback_error):
            raise TypeError("on_callback_error must be callable")
        if not callable(clock):
            raise TypeError("clock must be callable")
        if netlink is not None and not isinstance(netlink, bool):
            raise TypeError("netlink must be None, True or False")
        self.protocols = protos
        self.hosts_file = os.fspath(hosts_file)
        self.timeout_secs = _seconds("timeout_secs", timeout_secs)
        self.connect_timeout_secs = _seconds("connect_timeout_secs", connect_timeout_secs)
        self.happy_eyeballs_delay = _seconds(
            "happy_eyeballs_delay", happy_eyeballs_delay, allow_zero=True
        )
        if isinstance(cao_history, bool) or not isinstance(cao_history, int):
            raise TypeError(f"cao_history must be an int, not {type(cao_history).__name__}")
        self.cao_db = CaoDb(cao_history, _seconds("cao_history_ttl", cao_history_ttl), clock)
        """The database of recent connection attempts (:class:`~lwspy.CaoDb`)."""
        cpd_timeout = _seconds("cpd_timeout_secs", cpd_timeout_secs)
        if cpd_url is not None:
            _check_url(cpd_url)
        self._on_callback_error = on_callback_error
        self._clock = clock
        self._hosts: tuple[float, dict[str, list[str]]] | None = None
        self._wsis: dict[Wsi, None] = {}
        self._paused_vhosts: set[Vhost] = set()
        self._cancel_pending = False
        self._stopping = False
        self._in_service = False
        self._destroying = False
        self._destroyed = False
        self._thread = get_ident()  # the loop's thread: this one, or the last to run service()
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._escalated: BaseException | None = None  # what on_callback_error raised
        self._netlink: RouteService | None = None
        # The hook point: roles and subsystems follow connections through it, never by name.
        self.hooks = Hooks()
        self._resolver: Resolver | None = None
        if type(dns_queries_per_socket) is not int:
            kind = type(dns_queries_per_socket).__name__
            raise TypeError(f"dns_queries_per_socket must be an int, not {kind}")
        if dns_queries_per_socket < 1:
            raise ValueError(f"dns_queries_per_socket must be >= 1, not {dns_queries_per_socket}")
        self._resolver_args = (nameservers, os.fspath(resolv_conf), dns_queries_per_socket)
        if nameservers is not None:  # bad addresses raise here, not at the first connect
            self._new_resolver()
        self._names: dict[tuple[str, int], tuple[str, int]] = {}  # shared local names
        self.smd = Smd(queue_depth=smd_queue_depth, ttl=smd_ttl, clock=clock, wake=self._wake)
        self.system = LwsSystem(self.smd.post)
        self.pt = Pt(clock)
        # lws steps a new context to OPERATIONAL from its first service passes; a role that
        # needs time (netlink cold plug) holds the machine with a notifier until it is ready.
        self._boot = Sul(self.pt.suls, lambda: self.system.transition(SystemState.OPERATIONAL))
        self._boot.schedule(0)
        self._cpd: CpdService | None = None
        self._cpd_timeout = cpd_timeout
        if cpd_url is not None:  # its start-up probe is scheduled now
            self._new_cpd(cpd_url)
        self.vhosts: dict[str, Vhost] = {}
        wake = Wsi(self, PIPE, None, INTERNAL, fd=self.pt.wake_r)
        wake.state = WsiState.ESTABLISHED
        self.pt.add(wake, EV_READ)
        self._wake_wsi = wake
        try:
            if netlink is not False:
                self._netlink = self._open_netlink(required=netlink is True)
            self._add_vhost(Vhost(self, "default", list(protos), protos[0] if protos else None))
        except BaseException:  # on_callback_error re-raised from PROTOCOL_INIT: free our fds
            if self._netlink is not None:
                self._netlink.close()
            self.pt.close()
            self._destroyed = True
            raise

    def _open_netlink(self, required: bool) -> RouteService | None:
        # Imported here, not at module level: `import lwspy` stays cheap, a context without
        # netlink never loads the decoder, and the core does not depend on a role. The
        # watcher follows connections through self.hooks.
        from lwspy.roles.netlink import RouteWatcher, open_netlink

        try:
            sock = open_netlink()
        except (OSError, AttributeError) as e:  # not Linux, or not allowed here
            if required:
                raise RuntimeError(f"netlink=True, but no netlink socket can be opened: {e}") from e
            global _NETLINK_SAID
            if not _NETLINK_SAID:
                _NETLINK_SAID = True
                log.warning("lwspy: running without netlink (%s): routes are not followed", e)
            return None
        try:
            return RouteWatcher(self, sock)
        except BaseException:
            sock.close()
            raise

    def _new_resolver(self) -> Resolver:
        # Imported on first use: a context that never resolves a name never loads DNS.
        from lwspy.core.resolver import Resolver

        nameservers, resolv_conf, per_socket = self._resolver_args
        self._resolver = Resolver(self, nameservers, resolv_conf, queries_per_socket=per_socket)
        return self._resolver

    @property
    def resolver(self) -> Resolver:
        """The context's in-loop DNS resolver (made on first use)."""
        if self._resolver is None:
            self._check_alive()
            return self._new_resolver()
        return self._resolver

    def _new_cpd(self, url: str | None) -> CpdService:
        # Imported on first use: a context without CPD never loads it.
        from lwspy.core.cpd import CpdService

        self._cpd = CpdService(self, url, self._cpd_timeout)
        return self._cpd

    @property
    def cpd(self) -> CpdService:
        """Captive portal detection (:class:`~lwspy.CpdService`); off without ``cpd_url``."""
        return self._cpd if self._cpd is not None else self._new_cpd(None)

    @property
    def routes(self) -> RouteTable | None:
        """The host's routing table, kept live by the netlink role (None without netlink)."""
        return self._netlink.table if self._netlink is not None else None

    # -- lifetime ------------------------------------------------------------------------

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else f"{len(self._wsis)} wsi"
        return f"<lwspy.Context {state}>"

    @property
    def destroyed(self) -> bool:
        """True once ``destroy()`` has run."""
        return self._destroyed

    @property
    def destroying(self) -> bool:
        """True from the moment ``destroy()`` starts, before any close callback (and after).

        The close callbacks that ``destroy()`` delivers see it True: the place to decide
        not to reconnect. Timers made or scheduled then (``sul``, ``call_later``,
        ``set_timer``) are accepted quietly and never fire.
        """
        return self._destroying

    def destroy(self) -> None:
        """Close every wsi (each gets its close callback), every listener and fd. Idempotent.

        A connect still in progress ends with CLIENT_CONNECTION_ERROR "context destroyed".
        ``destroying`` is True from the start; it may be called from a callback (a close
        callback included), and nothing else runs in the pass that called it. What is
        still buffered in a wsi is dropped; before a connected stream socket is closed
        (one shut down by ``close()`` included), what is queued for reading is read and
        discarded, so the close is a FIN and the kernel still sends what it holds (the
        guide's "Closing" says what that guarantees). An exception a callback raises
        here, ``SystemExit`` and ``KeyboardInterrupt`` included, does not stop the rest:
        every wsi is still closed and every fd released, then the first one is raised.

        Loop thread only, like ``connect``: while the loop's thread is alive, a call from
        another thread raises RuntimeError; use ``ctx.call_from_thread(ctx.destroy)``, or
        ``ctx.stop()``, join the loop's thread, then destroy. Once the loop's thread has
        ended, any thread may destroy the context (so leaving a ``with`` block after
        joining the worker that ran the loop is fine).
        """
        if self._destroyed:
            return
        self._check_destroy_thread()
        if self._destroying:
            return
        self._destroying = True
        # Every step runs even if a callback raises (SystemExit included) or
        # on_callback_error re-raises; the first error is raised once every fd is closed.
        errors: list[BaseException] = []
        try:
            self._boot.cancel()
            if self._cpd is not None:
                self._keep_going(errors, self._cpd.close)
            self._keep_going(errors, self.system.transition, SystemState.CONTEXT_DESTROYING)
            wsis = self._wsis
            while wsis:  # a closing wsi leaves _wsis before its callbacks run
                wsi = next(iter(wsis))
                del wsis[wsi]  # so that this loop ends whatever _close_now does
                self._keep_going(errors, wsi._close_now, "context destroyed")
            for vh in self.vhosts.values():
                if vh._backoff_sul is not None:
                    vh._backoff_sul.cancel()
                if vh.listener is not None:
                    self._keep_going(errors, vh.listener._close_now, "context destroyed")
                for p in vh.protocols:
                    self._keep_going(errors, self._call_protocol, p, Reason.PROTOCOL_DESTROY)
        finally:
            for w in [w for w in self.pt.fds.values() if w.role is RAW_SKT_SHUTDOWN]:
                self._keep_going(errors, w._close_now, "context destroyed", True)
            if self._netlink is not None:
                self._keep_going(errors, self._netlink.close)
            if self._resolver is not None:
                self._keep_going(errors, self._resolver.close)
            self.pt.suls.clear()  # user timers too: none fires on a destroyed context
            self._calls.clear()  # nor a call_from_thread function queued before
            self._cancel_pending = False
            self._wake_wsi._close_now("context destroyed")
            self.pt.close()
            self.smd.close()
            self._destroyed = True
            self._escalated = None
        if errors:
            raise errors[0]

    @staticmethod
    def _keep_going(errors: list[BaseException], fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: raised at the end
            errors.append(exc)

    def _wake(self) -> None:
        if not self._destroyed:
            self.pt.wake()

    def _check_thread(self) -> None:
        """Guard of the loop-only calls: this is the loop's thread."""
        if get_ident() != self._thread:
            raise RuntimeError(
                "this call belongs to the context's loop thread; from another thread, "
                "use ctx.call_from_thread(fn, *args) to run it in the loop"
            )

    def _check_destroy_thread(self) -> None:
        """Guard of ``destroy()``: the loop's thread, or any once that thread has ended."""
        me = get_ident()
        if me == self._thread:
            return
        if any(t.ident == self._thread for t in threading.enumerate()):
            raise RuntimeError(
                "destroy() belongs to the context's loop thread; from another thread, use "
                "ctx.call_from_thread(ctx.destroy), or ctx.stop(), join the loop's thread "
                "and then destroy it"
            )
        self._thread = me  # the loop's thread has ended (joined): this one takes over

    def _check_alive(self) -> None:
        """Guard of the loop-only calls: the loop's thread, and the context is alive."""
        self._check_thread()
        if self._destroyed or self._destroying:
            raise RuntimeError("the context is destroyed")

    # -- the loop ------------------------------------------------------------------------

    def now(self) -> float:
        """The context's monotonic clock, in seconds."""
        return self._clock()

    def service(self, timeout_ms: float | None = None) -> int:
        """Run one pass of the loop: wait for fds or the next timer, then dispatch.

        ``timeout_ms`` bounds the wait (0: do not wait; None: until an fd, a timer or a
        wake-up). Returns how many fd events and timers were handled.
        """
        if self._in_service or self._destroyed or self._destroying:
            self._check_alive()
            raise RuntimeError("service() cannot be called from inside a callback")
        if timeout_ms is None:
            timeout: float | None = None
        else:
            timeout = min(_MAX_WAIT, _seconds("timeout_ms", timeout_ms, allow_zero=True) / 1000)
        pt = self.pt
        suls = pt.suls
        if suls.heap:
            due = suls.next_due()
            if due is not None:
                wait = max(0.0, due - self._clock())
                if timeout is None or wait < timeout:
                    timeout = wait if wait < _MAX_WAIT else _MAX_WAIT  # a pass, then wait on
        smd = self.smd
        if smd.pending:
            timeout = 0.0
        self._thread = get_ident()  # whoever services the loop is its thread
        self._in_service = True
        try:
            events = pt.sel.select(timeout)
            for wsi, mask in events:
                if wsi.state is CLOSED:
                    continue  # closed by an earlier callback of this pass; its fd may be reused
                if mask & EV_READ:
                    wsi.role.on_readable(wsi)
                    if mask & EV_WRITE and wsi.state is not CLOSED:
                        wsi.role.on_writable(wsi)
                else:
                    wsi.role.on_writable(wsi)
            n = len(events)
            if suls.heap:
                n += suls.run_due(self._clock(), self._run_sul)
            if smd.pending:
                n += smd.service()
            return n
        except BaseException:
            self._escalated = None  # it leaves here; keep no traceback alive
            raise
        finally:
            self._in_service = False

    def run(self) -> None:
        """Service the loop until ``stop()`` (or until the context is destroyed).

        A ``stop()`` made before ``run()`` (e.g. by a callback during ``service()``) is
        not forgotten: ``run()`` returns at once.
        """
        try:
            while not self._stopping and not self._destroyed:
                self.service()
        finally:
            self._stopping = False

    def stop(self) -> None:
        """Make ``run()`` return after the current pass (or at once, if it is not running).

        Safe from any thread (it sets a flag and wakes the loop), and the way to end a
        loop that another thread runs: ``ctx.stop()``, join that thread, then
        ``ctx.destroy()`` (or leave the ``with`` block).
        """
        self._stopping = True
        self._wake()

    def cancel_service(self) -> None:
        """Wake the loop from any thread; every protocol gets EVENT_WAIT_CANCELLED.

        This, ``call_from_thread``, ``stop`` and ``smd.post`` are the only calls safe from
        another thread.
        """
        self._cancel_pending = True
        self._wake()

    def call_from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the loop soon; safe from any thread, and wakes the loop.

        The way for another thread to use the loop-only calls (``connect``,
        ``create_vhost``, ``adopt_*``, ``sul``, ``call_later``, and every Wsi method),
        as asyncio's ``call_soon_threadsafe``: calls run in the order they were made, on
        the loop's next pass. An exception ``fn`` raises is handled as a callback's
        (logged with its traceback, then ``on_callback_error``). RuntimeError once the
        context is being destroyed; a call queued just before that never runs.
        ``fn``'s return value is ignored. From a worker thread, for example:
        ``ctx.call_from_thread(ctx.connect, "127.0.0.1", 7681)``.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        if self._destroyed or self._destroying:
            raise RuntimeError("the context is destroyed")
        self._calls.append((fn, args))  # deque.append is atomic: no lock needed
        self._wake()

    def _woken(self) -> None:
        calls = self._calls
        # Only what was queued before this pass: a call that queues another one (it also
        # woke the loop) leaves it for the next pass, so the fds are not starved.
        try:
            for _ in range(len(calls)):
                fn, args = calls.popleft()
                try:
                    fn(*args)
                except Exception as exc:
                    log.error("lwspy: call_from_thread function %r raised", fn, exc_info=exc)
                    if self._on_callback_error is not None:
                        self._on_callback_error(None, None, exc)
                if self._destroying:  # fn destroyed the context: nothing more runs
                    return
        finally:
            if self._destroying:
                calls.clear()
            elif calls:  # on_callback_error re-raised: the rest run on the next pass
                self._wake()
        if self._cancel_pending:
            self._cancel_pending = False
            for vh in list(self.vhosts.values()):
                for p in vh.protocols:
                    if self._destroying:  # an EVENT_WAIT_CANCELLED callback destroyed it
                        return
                    self._call_protocol(p, Reason.EVENT_WAIT_CANCELLED)

    # -- timers --------------------------------------------------------------------------

    def sul(self, callback: Callable[[], Any]) -> Sul:
        """A reusable timer that calls ``callback()`` from the loop once per ``schedule()``.

        While ``destroying`` it is accepted and never fires (a close callback scheduling a
        reconnect stays quiet); once ``destroyed`` it raises RuntimeError.
        """
        self._check_thread()
        if self._destroyed:
            raise RuntimeError("the context is destroyed")
        return Sul(self.pt.suls, callback)

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Sul:
        """Call ``fn(*args)`` from the loop ``seconds`` from now; returns the (cancellable) Sul."""
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        sul = self.sul(lambda: fn(*args))
        sul.schedule(seconds)
        return sul

    def _run_sul(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            self._callback_failed(None, None, exc)

    # -- vhosts --------------------------------------------------------------------------

    def create_vhost(
        self,
        name: str,
        port: int | None = None,
        iface: str | None = None,
        protocols: Iterable[Protocol | str] | None = None,
        accept_protocol: str | None = None,
    ) -> Vhost:
        """Make a vhost; with ``port`` (0: an ephemeral port) it listens on ``iface``.

        ``iface`` is an address to bind (default: every address, IPv6 and IPv4) or an
        interface name. Accepted connections are bound to ``accept_protocol`` (default:
        the vhost's first protocol) and get RAW_ADOPT. Creating "default" gives the
        always-present default vhost a listener.
        """
        self._check_alive()
        if not isinstance(name, str) or not name:
            raise TypeError("vhost name must be a non-empty str")
        existing = self.vhosts.get(name)
        if existing is not None and (existing._explicit or name != "default"):
            raise ValueError(f"there is already a vhost named {name!r}")
        if port is not None:
            port = _port(port, allow_zero=True)
        if iface is not None and not isinstance(iface, str):
            raise TypeError(f"iface must be a str, not {type(iface).__name__}")
        protos = self._vhost_protocols(protocols)
        if existing is not None:  # SPEC: the default vhost holds the context's protocols
            given = {p.name for p in protos}
            protos += [p for p in self.protocols if p.name not in given]
        accept: Protocol | None
        if accept_protocol is not None:
            if not isinstance(accept_protocol, str):
                raise TypeError("accept_protocol must be a protocol name")
            found = [p for p in protos if p.name == accept_protocol]
            if not found:
                raise ValueError(
                    f"unknown protocol {accept_protocol!r} on vhost {name!r} "
                    f"(has: {', '.join(p.name for p in protos) or 'none'})"
                )
            accept = found[0]
        else:
            accept = protos[0] if protos else None
        if port is not None and accept is None:
            raise ValueError(f"vhost {name!r} listens but has no protocol to bind connections to")
        sock = _listen_socket(port, iface) if port is not None else None
        if existing is not None:  # the implicit default vhost becomes the user's, in place
            vh, before = existing, existing.protocols
            vh.protocols = protos
            for p in before:
                if p not in protos:
                    self._call_protocol(p, Reason.PROTOCOL_DESTROY)
        else:
            vh, before = Vhost(self, name, protos, accept), []
        vh.accept_protocol = accept
        vh.iface = iface
        vh._explicit = True
        if sock is not None:
            vh.port = sock.getsockname()[1]
            vh._accept_kind = (sock_family(sock), sock_type(sock), sock.proto)
            vh._accept_local = _one_local_name(sock)
            listener = Wsi(self, LISTEN, vh, accept or INTERNAL, sock)
            listener.state = WsiState.LISTENING
            self.pt.add(listener, EV_READ)
            vh.listener = listener
        if existing is None:
            self._add_vhost(vh)
        else:
            for p in protos:
                if p not in before:
                    self._call_protocol(p, Reason.PROTOCOL_INIT)
        return vh

    def get_vhost(self, name: str) -> Vhost:
        """The vhost called ``name``; ValueError if there is none."""
        vh = self.vhosts.get(name)
        if vh is None:
            raise ValueError(f"unknown vhost {name!r} (has: {', '.join(self.vhosts)})")
        return vh

    def _vhost_protocols(self, protocols: Iterable[Protocol | str] | None) -> list[Protocol]:
        if protocols is None:
            return list(self.protocols)
        if isinstance(protocols, (str, Protocol)) or not isinstance(protocols, Iterable):
            raise TypeError("protocols must be an iterable of Protocol objects or names")
        out: list[Protocol] = []
        for item in protocols:
            if isinstance(item, str):
                found = [q for q in self.protocols if q.name == item]
                if not found:
                    raise ValueError(f"unknown protocol {item!r}: not a protocol of the context")
                p = found[0]
            elif isinstance(item, Protocol):
                p = item
            else:
                raise TypeError(f"protocols must hold Protocol objects, not {type(item).__name__}")
            if any(q.name == p.name for q in out):
                raise ValueError(f"two protocols are named {p.name!r}")
            out.append(p)
        return out

    def _add_vhost(self, vh: Vhost) -> None:
        self.vhosts[vh.name] = vh
        for p in vh.protocols:
            self._call_protocol(p, Reason.PROTOCOL_INIT)

    def _resolve_vhost(self, vhost: str | Vhost | None) -> Vhost:
        if vhost is None:
            return self.vhosts["default"]
        if isinstance(vhost, Vhost):
            if self.vhosts.get(vhost.name) is not vhost:
                raise ValueError(f"{vhost!r} is not a vhost of this context")
            return vhost
        if isinstance(vhost, str):
            return self.get_vhost(vhost)
        raise TypeError(f"vhost must be a name or a Vhost, not {type(vhost).__name__}")

    # -- wsis ----------------------------------------------------------------------------

    @property
    def wsis(self) -> list[Wsi]:
        """Every open connection and adopted fd of the context (not listeners)."""
        return list(self._wsis)

    def connect(
        self,
        host: str,
        port: int,
        protocol: str | Protocol | None = None,
        vhost: str | Vhost | None = None,
        iface: str | None = None,
        conmon: bool = True,
        retry: RetryPolicy | None = None,
    ) -> Wsi:
        """Start a client connection; returns its Wsi at once.

        The outcome comes from the loop, never from inside this call: exactly one of
        RAW_CONNECTED or CLIENT_CONNECTION_ERROR (data: the reason, e.g. "connect
        refused", "timed out", "DNS NO_RESULT: name", "invalid host name 'a..b'").
        Raises only for bad arguments (TypeError for a host that is no str; a host that
        is neither an IP literal nor a valid host name is a connect error, like a name
        that does not resolve).
        ``host`` is an IP literal or a name; ``iface`` a source address or an interface
        name to bind to. The candidates are raced (RFC 8305) in RFC 6724 order, re-ranked
        by ``ctx.cao_db``; ``wsi.caos`` gets every attempt, the winner first. With
        ``retry`` (a :class:`~lwspy.RetryPolicy`) a failed connect is tried again, up to
        ``retry.conceal`` times, before the error is reported.
        """
        self._check_alive()
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        port = _port(port, allow_zero=False)
        vh = self._resolve_vhost(vhost)
        if protocol is None:
            if not vh.protocols:
                raise ValueError(f"vhost {vh.name!r} has no protocol for the connection")
            proto = vh.protocols[0]
        else:
            proto = vh.protocol(protocol)
        if iface is not None:
            if not isinstance(iface, str):
                raise TypeError(f"iface must be a str, not {type(iface).__name__}")
            if client.literal_address(iface) is None:
                try:
                    socket.if_nametoindex(iface)
                except OSError:
                    raise ValueError(f"no interface named {iface!r}") from None
        if not isinstance(conmon, bool):
            raise TypeError("conmon must be a bool")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        wsi = Wsi(self, RAW_SKT, vh, proto)
        wsi.is_client = True
        self._wsis[wsi] = None
        cc = client.ClientConnect(wsi, host, port, iface, conmon, retry)
        wsi._client = cc
        try:  # the user exists from the start, so even "context destroyed" carries it
            wsi.user = proto.user_factory()
        except Exception as exc:  # reported from the loop, like every connect outcome
            cc.user_error = exc
        return wsi

    def http_get(
        self,
        url: str,
        on_response: Callable[[HttpResponse], object],
        *,
        timeout: float = 10.0,
        max_head: int = 16384,
        max_body: int = 1 << 20,
        headers: Iterable[tuple[str, str]] = (),
        iface: str | None = None,
    ) -> HttpRequest:
        """GET an ``http://`` URL; ``on_response(resp)`` is called once, from the loop.

        A small HTTP/1.1 client (h11 parses; it is imported on the first call) on a
        client wsi made by :meth:`connect`, so the name is resolved in the loop and the
        connect is raced and recorded like any other. ``resp`` is an
        :class:`~lwspy.HttpResponse`: ``status``, ``headers``, ``body``, or ``error`` and
        ``bad_response`` saying why it ended early (a connect error, "timed out" after
        ``timeout`` seconds from this call, "body too large" beyond ``max_body`` bytes, a
        malformed answer or one whose head exceeds ``max_head`` bytes). Redirects are
        not followed. Returns the :class:`~lwspy.HttpRequest` (``cancel()`` ends it
        without a callback). Raises only for bad arguments::

            from lwspy import Context, HttpResponse

            with Context(netlink=False) as ctx:

                def done(resp: HttpResponse) -> None:
                    print(resp.status, resp.error)  # None connect refused
                    ctx.stop()

                ctx.http_get("http://127.0.0.1:9/", done, timeout=2)
                ctx.run()

        The connections are made on a vhost of their own, "lwspy-http".
        """
        self._check_alive()
        from lwspy.roles.h1 import http_get

        return http_get(
            self,
            url,
            on_response,
            timeout=timeout,
            max_head=max_head,
            max_body=max_body,
            headers=headers,
            iface=iface,
        )

    def adopt_socket(
        self,
        sock: socket.socket,
        protocol: str | Protocol | None = None,
        vhost: str | Vhost | None = None,
    ) -> Wsi:
        """Adopt a connected socket as a raw_skt wsi; it gets RAW_ADOPT now.

        The context owns the socket from here on and closes it with the wsi.
        """
        self._check_alive()
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        if sock.fileno() < 0:
            raise ValueError("the socket is closed")
        if sock.fileno() in self.pt.fds:
            raise ValueError(f"fd {sock.fileno()} is already in this context")
        if sock.type == socket.SOCK_STREAM and sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            raise ValueError("a listening socket cannot be adopted as a connection")
        vh = self._resolve_vhost(vhost)
        proto = self._adopt_protocol(vh, protocol)
        return self._adopt(sock, vh, proto, RAW_SKT)

    def adopt_file(
        self, fd: int, protocol: str | Protocol | None = None, vhost: str | Vhost | None = None
    ) -> Wsi:
        """Adopt a pollable fd (pipe, tty, char device) as a raw_file wsi (RAW_ADOPT_FILE).

        Reads arrive as RAW_RX_FILE, ``write`` buffers as for sockets (on a packet fd,
        such as a datagram socket or a tun device, each write stays one packet), and the
        context closes the fd with the wsi. A regular file cannot be polled: ValueError.
        """
        self._check_alive()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fd must be >= 0, not {fd}")
        if fd in self.pt.fds:
            raise ValueError(f"fd {fd} is already in this context")
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            raise ValueError(f"fd {fd} is not open") from None
        vh = self._resolve_vhost(vhost)
        proto = self._adopt_protocol(vh, protocol)
        wsi = Wsi(self, RAW_FILE, vh, proto, fd=fd)
        wsi._stream = byte_stream(fd, mode)
        try:
            self.pt.add(wsi, EV_READ)
        except PermissionError:
            raise ValueError(f"fd {fd} cannot be polled (a regular file?)") from None
        except OSError as e:  # e.g. the selector's own fd
            raise ValueError(f"fd {fd} cannot be polled: {e.strerror}") from None
        os.set_blocking(fd, False)
        return self._adopted(wsi)

    def _adopt_protocol(self, vh: Vhost, protocol: str | Protocol | None) -> Protocol:
        if protocol is not None:
            return vh.protocol(protocol)
        if vh.accept_protocol is None:
            raise ValueError(f"vhost {vh.name!r} has no protocol to bind the wsi to")
        return vh.accept_protocol

    def _adopt(
        self,
        sock: socket.socket,
        vh: Vhost,
        proto: Protocol,
        role: RoleOps,
        local: tuple[str, int] | None = None,
    ) -> Wsi:
        """Take a connected socket into the loop (accepted, or given by the user);
        ``local``: its local name when the caller knows it (the listener's)."""
        sock.setblocking(False)
        wsi = Wsi(self, role, vh, proto, sock)
        if sock_family(sock) in _INET:
            try:
                # Memory per idle wsi: the accepted sockets of a listener share one local
                # name, and the peer's host text is interned (many come from one host).
                if local is None:
                    name = sock.getsockname()
                    local = name if len(name) == 2 else (name[0], name[1])
                    names = self._names
                    if len(names) > 256:  # adopted client sockets: ephemeral ports, no sharing
                        names.clear()
                    local = names.setdefault(local, local)
                wsi.local = local
                peer = sock.getpeername()
                wsi.peer = (sys.intern(peer[0]), peer[1])
            except OSError:
                pass  # not connected (a datagram socket) or already reset: reads will say
        self.pt.add(wsi, 0)
        return self._adopted(wsi)

    def _adopted(self, wsi: Wsi) -> Wsi:
        wsi.state = ESTABLISHED
        self._wsis[wsi] = None
        try:
            wsi.user = wsi.protocol.user_factory()
        except Exception as exc:
            self._callback_failed(wsi, _WSI_CREATE, exc)
            return wsi
        wsi._created = True
        wsi._call(_WSI_CREATE)
        if wsi.state is not ESTABLISHED:
            return wsi
        wsi._rx_on = True
        wsi._announced = True
        if wsi.peer is not None:
            self._established(wsi)
        wsi._call(wsi.role.adopt_reason)
        wsi._update_events()
        return wsi

    def _established(self, wsi: Wsi) -> None:
        """A connection with a peer is up: announce it on the hook point."""
        self.hooks.established(wsi)

    def _wsi_closed(self, wsi: Wsi) -> None:
        self._wsis.pop(wsi, None)
        self.hooks.closed(wsi)
        if self._paused_vhosts and not self._destroying:
            for vh in list(self._paused_vhosts):  # an fd was freed: try accept() again
                vh._resume_accept()

    def _hosts_table(self) -> dict[str, list[str]]:
        """The hosts file as it is now (name -> addresses); re-read when it changes."""
        try:
            mtime = os.stat(self.hosts_file).st_mtime
            if self._hosts is None or self._hosts[0] != mtime:
                with open(self.hosts_file, encoding="utf-8", errors="replace") as f:
                    self._hosts = (mtime, parse_hosts(f.read()))
        except OSError:
            return {}
        return self._hosts[1]

    def _hosts_lookup(self, name: str) -> list[str]:
        """The hosts file's addresses for ``name``; re-read when the file changes."""
        return list(self._hosts_table().get(name.lower().rstrip("."), ()))

    # -- callbacks -----------------------------------------------------------------------

    def _call_protocol(self, proto: Protocol, reason: Reason) -> None:
        """A context-level callback: ``wsi=None, user=None``."""
        try:
            proto.callback(None, reason, None, None)
        except Exception as exc:
            self._callback_failed(None, reason, exc)

    def _callback_failed(self, wsi: Wsi | None, reason: Reason | None, exc: Exception) -> None:
        """Log a callback's exception with its traceback, close its wsi, go on.

        What ``on_callback_error`` raises ends ``service()``: every outer catch of a
        callback's exception passes it on instead of reporting it again.
        """
        if exc is self._escalated:
            raise exc
        where = reason.name if reason is not None else "timer"
        log.error("lwspy: %s callback of %r raised", where, wsi, exc_info=exc)
        if wsi is not None and wsi.state is not WsiState.CLOSED:
            wsi._close_now("callback error")
        if self._on_callback_error is not None:
            try:
                self._on_callback_error(wsi, reason, exc)
            except BaseException as e:
                self._escalated = e
                raise


def _check_url(url: object) -> None:
    """A ``cpd_url`` must be a URL ``http_get`` takes: the same check, made up front."""
    if not isinstance(url, str):
        raise TypeError(f"cpd_url must be a str, not {type(url).__name__}")
    from lwspy.roles.h1 import split_url

    try:
        split_url(url)  # the one URL check: what it accepts, a probe can fetch
    except ValueError as e:
        raise ValueError(f"cpd_url: {e}") from None


_LISTEN_BACKLOG = 0x7FFFFFFF
"""Asked of listen(2): Linux cuts a larger backlog to ``net.core.somaxconn`` (per
namespace), so this gets the system's largest without reading /proc (the library reads
no file but resolv.conf and the hosts file)."""


def _one_local_name(sock: socket.socket) -> tuple[str, int] | None:
    """The local name every socket a listener accepts has: the listener's own, when it is
    bound to one address; None for a wildcard (``0.0.0.0``, ``::``, and ``::ffff:0.0.0.0``,
    which takes every IPv4 address), whose accepted sockets each have their own."""
    here = sock.getsockname()
    addr = ipaddress.ip_address(here[0].partition("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    if addr.is_unspecified or (mapped is not None and mapped.is_unspecified):
        return None
    return (here[0], here[1])


def _listen_socket(port: int, iface: str | None) -> socket.socket:
    """A bound, listening, non-blocking socket with the system's largest backlog."""
    literal = client.literal_address(iface) if iface is not None else None
    if iface is not None and literal is None:
        try:
            socket.if_nametoindex(iface)
        except OSError:
            raise ValueError(f"no interface named {iface!r}") from None
    if literal is not None:
        family = socket.AF_INET6 if ipaddress.ip_address(literal).version == 6 else socket.AF_INET
        addr = literal
    else:
        family, addr = socket.AF_INET6, "::"
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:  # no IPv6 here: every IPv4 address instead
        family, addr = socket.AF_INET, "0.0.0.0"
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and literal is None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if iface is not None and literal is None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind((addr, port))
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
