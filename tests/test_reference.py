"""The API reference's table of the callbacks each kind of wsi gets holds, row by row."""

from __future__ import annotations

import os
import socket
from typing import Any

from lwspy import Context, Protocol, Reason, Wsi
from tests.conftest import Recorder, service_until

R = Reason


def _refused_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: connects to it are refused
    return s, s.getsockname()[1]


def test_client_connection_reasons_in_order() -> None:
    def on(wsi: Wsi | None, reason: Reason, data: Any) -> int:
        if wsi is not None and reason is R.RAW_CONNECTED:
            assert wsi.peer is not None and wsi.local is not None and wsi.conmon is not None
            wsi.set_timer(0)
        elif wsi is not None and reason is R.TIMER:
            wsi.close("done")
        return 0

    cli, srv = Recorder("cli", on), Recorder("srv")
    with Context(protocols=[srv.protocol, cli.protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        wsi = ctx.connect("127.0.0.1", vh.listen_port, protocol="cli")
        assert cli.reasons(wsi) == []  # nothing from inside connect()
        service_until(ctx, lambda: R.WSI_DESTROY in cli.reasons(wsi))
        assert cli.reasons(wsi) == [
            R.WSI_CREATE,
            R.CONNECTING,
            R.RAW_CONNECTED,
            R.TIMER,
            R.RAW_CLOSE,
            R.WSI_DESTROY,
        ]
        assert all(d is None for w, _, d in cli.events if w is wsi)
        assert wsi.close_reason == "done"
        # the accepted side: bound to the vhost's first protocol
        accepted = [w for w, r, _ in srv.events if r is R.RAW_ADOPT and w is not None]
        assert len(accepted) == 1
        peer = accepted[0]
        assert peer is not None
        service_until(ctx, lambda: R.WSI_DESTROY in srv.reasons(peer))
        assert srv.reasons(peer) == [R.WSI_CREATE, R.RAW_ADOPT, R.RAW_CLOSE, R.WSI_DESTROY]
        assert peer.close_reason == "peer closed"


def test_failed_connect_reasons_and_data() -> None:
    cli = Recorder("cli")
    sock, port = _refused_port()
    with sock, Context(protocols=[cli.protocol], netlink=False) as ctx:
        wsi = ctx.connect("127.0.0.1", port)
        service_until(ctx, lambda: R.WSI_DESTROY in cli.reasons(wsi))
        assert cli.reasons(wsi) == [
            R.WSI_CREATE,
            R.CONNECTING,
            R.CLIENT_CONNECTION_ERROR,
            R.WSI_DESTROY,
        ]
        assert cli.data(R.CLIENT_CONNECTION_ERROR, wsi) == ["connect refused"]
        assert wsi.close_reason == "connect refused"


def test_connect_pending_at_destroy_and_user_factory_that_raises() -> None:
    cli = Recorder("cli")
    users: list[Any] = []

    def bad_factory() -> object:
        raise ValueError("no user")

    def bad(wsi: Wsi | None, reason: Reason, user: Any, data: Any) -> int:
        if wsi is not None:
            users.append((reason, user, data))
        return 0

    errors: list[BaseException] = []
    ctx = Context(
        protocols=[cli.protocol, Protocol("bad", bad, user_factory=bad_factory)],
        netlink=False,
        on_callback_error=lambda w, r, e: errors.append(e),
    )
    with ctx:
        broken = ctx.connect("127.0.0.1", 9, protocol="bad")
        service_until(ctx, lambda: broken.close_reason is not None)
        assert users == [(R.CLIENT_CONNECTION_ERROR, None, "callback error")]
        assert [type(e) for e in errors] == [ValueError]
        wsi = ctx.connect("127.0.0.1", 9, protocol="cli")  # never serviced
    assert cli.reasons(wsi) == [R.CLIENT_CONNECTION_ERROR]
    assert cli.data(R.CLIENT_CONNECTION_ERROR, wsi) == ["context destroyed"]


def test_adopted_socket_and_file_reasons_in_order() -> None:
    rec = Recorder("p")
    a, b = socket.socketpair()
    r, w = os.pipe()
    with b, Context(protocols=[rec.protocol], netlink=False) as ctx:
        skt = ctx.adopt_socket(a)
        assert rec.reasons(skt) == [R.WSI_CREATE, R.RAW_ADOPT]  # inside adopt_socket()
        f = ctx.adopt_file(r)
        assert rec.reasons(f) == [R.WSI_CREATE, R.RAW_ADOPT_FILE]
        b.send(b"x")
        os.write(w, b"y")
        os.close(w)
        service_until(ctx, lambda: R.WSI_DESTROY in rec.reasons(f))
        assert rec.reasons(f) == [
            R.WSI_CREATE,
            R.RAW_ADOPT_FILE,
            R.RAW_RX_FILE,
            R.RAW_CLOSE_FILE,
            R.WSI_DESTROY,
        ]
        assert rec.data(R.RAW_RX_FILE, f) == [b"y"] and f.close_reason == "end of file"
        service_until(ctx, lambda: R.RAW_RX in rec.reasons(skt))
    assert rec.reasons(skt) == [R.WSI_CREATE, R.RAW_ADOPT, R.RAW_RX, R.RAW_CLOSE, R.WSI_DESTROY]
    assert skt.close_reason == "context destroyed"


def test_context_level_reasons_come_without_wsi_user_or_data() -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False) as ctx:
        assert rec.reasons() == [R.PROTOCOL_INIT]  # inside Context()
        ctx.create_vhost("other")
        assert rec.reasons() == [R.PROTOCOL_INIT, R.PROTOCOL_INIT]  # inside create_vhost()
        ctx.cancel_service()
        ctx.cancel_service()  # two before the pass make one per protocol per vhost
        ctx.service(1000)
        assert rec.reasons().count(R.EVENT_WAIT_CANCELLED) == 2
        listener = ctx.create_vhost("default", port=0, iface="127.0.0.1").listener
        assert listener is not None and listener not in ctx.wsis
    assert rec.reasons()[-2:] == [R.PROTOCOL_DESTROY, R.PROTOCOL_DESTROY]
    assert all(w is None and d is None for w, _, d in rec.events)
