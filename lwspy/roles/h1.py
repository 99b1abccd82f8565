"""A small HTTP/1.1 client on a lwspy client wsi (lws ``roles/h1`` client side, GET only).

``ctx.http_get(url, on_response, timeout=...)`` connects with ``ctx.connect`` like any
client (the resolver, the race and the CAOs are the connect machinery's), sends one GET
with ``Connection: close``, parses the answer with h11 and calls ``on_response(resp)``
once, from the loop, with an :class:`HttpResponse`: the status, headers and body, or why
there is none. Captive portal detection probes with it; an application may make its own
probes the same way. h11 is imported on the first request, never by ``import lwspy``.

Whatever the server sends ends in a response, never in an exception in the loop: a
malformed answer, a head larger than ``max_head``, an end of stream in the middle of the
response each set ``error`` and ``bad_response``; a body longer than ``max_body`` ends the
request with the status and headers kept and ``error`` "body too large"; silence ends it
at ``timeout``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lwspy._record import Record
from lwspy.core.protocol import Protocol, Reason

if TYPE_CHECKING:
    import h11

    from lwspy.core.context import Context
    from lwspy.core.sul import Sul
    from lwspy.core.wsi import Wsi
    from lwspy.net.cao import Cao, Conmon

__all__ = ["HTTP_VHOST", "HttpRequest", "HttpResponse", "http_get", "split_url"]

HTTP_VHOST = "lwspy-http"
"""The vhost the HTTP client's connections are made on (made on the first request)."""

USER_AGENT = "lwspy/0.1"


class HttpResponse(Record):
    """The outcome of one request, handed to ``on_response``.

    ``status`` (int) and ``reason`` (the reason phrase) are set once a response head
    arrived, else ``status`` is None. ``headers`` are ``(name, value)`` pairs as sent,
    names lower-cased; ``body`` the bytes received (at most ``max_body``). ``error`` is
    None for a complete response, else why the request ended early: a connect error
    ("connect refused", "DNS NXDOMAIN: name", ...), "timed out", "peer reset", "body too
    large", "closed without a response", or "bad response: ..." . ``bad_response`` is
    True when the server sent something that is no valid HTTP/1.1 response (malformed,
    a head too large, an end of stream mid-response). ``conmon`` and ``caos`` are the
    connection's (:attr:`lwspy.Wsi.conmon`: its ``txn_resp_us`` is the time from the
    request to the response head, ``protocol_specific`` ``{"http": {"response": status}}``).
    """

    __slots__ = (  # noqa: RUF023 - declaration order is the repr order
        "url",
        "status",
        "reason",
        "headers",
        "body",
        "error",
        "bad_response",
        "conmon",
        "caos",
    )

    def __init__(
        self,
        url: str,
        status: int | None = None,
        reason: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        error: str | None = None,
        bad_response: bool = False,
        conmon: Conmon | None = None,
        caos: list[Cao] | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        self.headers: list[tuple[str, str]] = [] if headers is None else headers
        self.body = body
        self.error = error
        self.bad_response = bad_response
        self.conmon = conmon
        self.caos: list[Cao] = [] if caos is None else caos

    @property
    def ok(self) -> bool:
        """True for a complete response (any status); False when ``error`` says why not."""
        return self.error is None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def split_url(url: str) -> tuple[str, int, str]:
    """``(host, port, target)`` of an ``http://`` URL; ValueError for anything else.

    The one check of a URL to fetch: ``ctx.http_get`` and the context's ``cpd_url`` both
    use it, so a URL it takes is one the request can be made of. A URL is printable ASCII
    (RFC 3986: percent-encode the rest; a host name in its IDNA ``xn--`` form); the host
    is an IP literal or a host name, never a malformed dotted quad; the port is 1..65535
    (80 when absent). An IPv6 zone is written as RFC 6874 says, ``%25`` then the zone:
    ``host`` then carries it as ``connect`` takes it (``fe80::1%eth0``), the ``Host``
    header never does.

    >>> split_url("http://portal.test:8080/generate_204?x=1")
    ('portal.test', 8080, '/generate_204?x=1')
    >>> split_url("http://[2001:db8::1]/")
    ('2001:db8::1', 80, '/')
    >>> split_url("http://[fe80::1%25eth0]/")
    ('fe80::1%eth0', 80, '/')
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    for c in url:
        if not "!" <= c <= "~":  # RFC 3986 §2: a URI is printable ASCII, no space
            what = "a non-ASCII character" if c > "\x7f" else "a space or control character"
            raise ValueError(
                f"bad URL {url!r}: {what} {c!r} (percent-encode it; a host name: its xn-- form)"
            )
    # Not at import: `import lwspy` stays cheap.
    from urllib.parse import unquote, urlsplit

    from lwspy.core.client import literal_address
    from lwspy.net.hosts import HOSTNAME

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # a bad port, an unclosed or bad [...]
        raise ValueError(f"bad URL {url!r}: {e}") from None
    if parts.scheme.lower() != "http":
        raise ValueError(f"only http:// URLs can be fetched, not {url!r}")
    if port == 0:
        raise ValueError(f"bad URL {url!r}: port 0 is no port to connect to")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"bad URL {url!r}: no user information is sent")
    hostinfo = parts.netloc.rpartition("@")[2]
    if hostinfo.startswith("["):  # an IPv6 literal; parts.hostname would lower-case a zone
        addr, pct, zone = hostinfo[1 : hostinfo.index("]")].partition("%")
        if pct and (not zone.startswith("25") or len(zone) == 2):
            raise ValueError(f"bad URL {url!r}: an IPv6 zone is written %25zone (RFC 6874)")
        host = addr.lower() + ("%" + unquote(zone[2:]) if pct else "")
        if ":" not in addr or literal_address(host) is None:
            raise ValueError(f"bad URL {url!r}: {host!r} in [...] is no IPv6 address")
    else:
        host = parts.hostname or ""
        literal = literal_address(host)
        if literal is None and host.rstrip(".").rpartition(".")[2].isdigit():
            # WHATWG URL: a host whose last label is a number is an IPv4 address or an error
            raise ValueError(f"bad URL {url!r}: {host!r} looks like an IPv4 address but is none")
        if literal is None and not HOSTNAME.match(host):
            raise ValueError(f"bad URL {url!r}: {host!r} is neither an IP address nor a host name")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, 80 if port is None else port, target


class HttpRequest:
    """One GET in flight (``ctx.http_get`` returns it). ``cancel()`` ends it quietly.

    ``wsi`` is its client connection, ``done`` True once ``on_response`` was called (or
    the request was cancelled).
    """

    __slots__ = (
        "_body",
        "_conn",
        "_max_body",
        "_max_head",
        "_on_response",
        "_received",
        "_request",
        "_response",
        "_sent_at",
        "_timer",
        "ctx",
        "done",
        "url",
        "wsi",
    )

    def __init__(
        self,
        ctx: Context,
        url: str,
        on_response: Callable[[HttpResponse], object],
        timeout: float,
        max_head: int,
        max_body: int,
        headers: list[tuple[str, str]],
        iface: str | None,
    ) -> None:
        import h11  # the first request pays for it, not `import lwspy`

        host, port, target = split_url(url)
        self.ctx = ctx
        self.url = url
        self.done = False
        self._on_response = on_response
        self._max_body = max_body
        self._body = bytearray()
        self._received = 0
        self._sent_at = 0.0
        self._response = HttpResponse(url)
        self._max_head = max_head
        # h11 bounds a head only while it is incomplete; _events bounds a whole one.
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        name = host.partition("%")[0]  # RFC 6874 §4: the Host header has no zone
        if ":" in name:
            name = f"[{name}]"
        hostport = name if port == 80 else f"{name}:{port}"
        names = {k.lower() for k, _ in headers}
        base = [("Host", hostport), ("User-Agent", USER_AGENT), ("Accept", "*/*")]
        head = [(k, v) for k, v in base if k.lower() not in names]
        head += [(k, v) for k, v in headers if k.lower() != "connection"]
        head.append(("Connection", "close"))  # one request per connection, always
        # Made (and so validated: bad header text raises here, not in the loop) now, sent
        # on RAW_CONNECTED.
        self._request = h11.Request(method="GET", target=target, headers=head)
        vh = ctx.vhosts.get(HTTP_VHOST) or ctx.create_vhost(HTTP_VHOST, protocols=[PROTOCOL])
        self.wsi: Wsi = ctx.connect(host, port, protocol=PROTOCOL, vhost=vh, iface=iface)
        self.wsi.user = self
        self._timer: Sul = ctx.call_later(timeout, self._timed_out)

    @property
    def response(self) -> HttpResponse:
        """The response as far as it has come (the object ``on_response`` will get)."""
        return self._response

    def cancel(self) -> None:
        """End the request without calling ``on_response``; closes its connection."""
        if self.done:
            return
        self.done = True
        self._timer.cancel()
        self.wsi._close_now("cancelled")

    # -- driven by the protocol callback -------------------------------------------------

    def _connected(self) -> None:
        import h11

        conn = self._conn
        data = conn.send(self._request)
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        self._sent_at = self.ctx.now()
        self.wsi.write(data)

    def _rx(self, data: bytes) -> None:
        import h11

        self._received += len(data)
        try:
            self._conn.receive_data(data)
            self._events(h11)
        except h11.RemoteProtocolError as e:
            # 431: h11's own bound on a head still incomplete (max_incomplete_event_size)
            why = "head too large" if e.error_status_hint == 431 else str(e)
            self._finish(f"bad response: {why}", bad=True)

    def _events(self, h11: Any) -> None:
        """Take every event h11 has; finish on the end of the message or the body limit."""
        conn: h11.Connection = self._conn
        while not self.done:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                # The bytes h11 took so far are the heads (1xx ones too), whole.
                head = self._received - len(conn.trailing_data[0])
                if head > self._max_head:
                    self._finish(f"bad response: head too large ({head} bytes)", bad=True)
                    return
                self._head(event)
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body:
                    del self._body[self._max_body :]
                    self._finish("body too large", bad=False)
            elif isinstance(event, h11.EndOfMessage):
                self._finish(None, bad=False)
            elif isinstance(event, h11.ConnectionClosed):
                bad = self._received > 0
                self._finish("closed mid-response" if bad else "closed without a response", bad)
            # InformationalResponse (1xx): the final response follows

    def _head(self, event: h11.Response) -> None:
        resp = self._response
        resp.status = event.status_code
        resp.reason = event.reason.decode("latin-1")
        resp.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        conmon = self.wsi.conmon
        if conmon is not None:
            conmon.txn_resp_us = round((self.ctx.now() - self._sent_at) * 1_000_000)
            conmon.protocol_specific = {"http": {"response": event.status_code}}

    def _closed(self, reason: str | None) -> None:
        """The connection closed before the response was complete."""
        if reason != "peer closed":  # a reset, a route lost, the context destroyed, ...
            self._finish(reason or "closed", bad=False)
            return
        if self._received:
            import h11

            try:  # the end of stream: it ends a body delimited by the close
                self._conn.receive_data(b"")
                self._events(h11)
            except h11.RemoteProtocolError:
                pass
        if not self.done:
            bad = self._received > 0
            self._finish("closed mid-response" if bad else "closed without a response", bad)

    def _timed_out(self) -> None:
        if not self.done:
            self._finish("timed out", bad=False)

    def _finish(self, error: str | None, bad: bool) -> None:
        """Deliver the response once; close the connection first (its callbacks see done)."""
        if self.done:
            return
        self.done = True
        self._timer.cancel()
        wsi = self.wsi
        resp = self._response
        resp.error = error
        resp.bad_response = bad
        resp.body = bytes(self._body)
        resp.conmon = wsi.conmon
        resp.caos = wsi.caos
        if error is None:
            wsi.close("done")
        else:  # abandoned: what the server still sends is not wanted (no drain, a reset)
            wsi._close_now(error)
        self._on_response(resp)

    def __repr__(self) -> str:
        state = "done" if self.done else "in flight"
        return f"<HttpRequest GET {self.url} {state}>"


def _callback(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
    """The client protocol: the request's wsi events, passed to its :class:`HttpRequest`."""
    if not isinstance(user, HttpRequest) or user.done:
        return 0
    if reason is Reason.RAW_RX:
        user._rx(data)
    elif reason is Reason.RAW_CONNECTED:
        user._connected()
    elif reason is Reason.CLIENT_CONNECTION_ERROR:
        user._finish(str(data), bad=False)
    elif reason is Reason.RAW_CLOSE:
        assert wsi is not None
        user._closed(wsi.close_reason)
    return 0


PROTOCOL = Protocol("lwspy-http-client", _callback)
"""The protocol of the HTTP client's connections (on the :data:`HTTP_VHOST` vhost)."""


def http_get(
    ctx: Context,
    url: str,
    on_response: Callable[[HttpResponse], object],
    *,
    timeout: float = 10.0,
    max_head: int = 16384,
    max_body: int = 1 << 20,
    headers: Iterable[tuple[str, str]] = (),
    iface: str | None = None,
) -> HttpRequest:
    """Start a GET of ``url`` (``http://`` only); ``on_response(resp)`` follows, once.

    The body of :meth:`lwspy.Context.http_get`, which documents it.
    """
    if not callable(on_response):
        raise TypeError(f"on_response must be callable, not {on_response!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a finite number of seconds > 0, not {timeout!r}")
    for name, limit in (("max_head", max_head), ("max_body", max_body)):
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"{name} must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"{name} must be >= 0, not {limit}")
    pairs = list(headers)
    for pair in pairs:
        if not (
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        ):
            raise TypeError(f"headers must be (name, value) pairs of str, not {pair!r}")
    import h11

    try:
        return HttpRequest(ctx, url, on_response, timeout, max(max_head, 1), max_body, pairs, iface)
    except (h11.LocalProtocolError, UnicodeEncodeError) as e:  # UnicodeEncodeError: non-ASCII
        raise ValueError(f"bad request header: {e}") from None
