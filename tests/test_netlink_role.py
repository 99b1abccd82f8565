"""The netlink role without a lab: fallbacks, bad input, and what is (not) indexed."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lwspy.core.context as context_mod
import lwspy.roles.netlink as netlink_mod
from lwspy import Context, Reason, SmdClass, SystemState, Wsi
from lwspy.net.nlmsg import AF_UNSPEC, RTM_GETADDR, RTM_GETLINK, RTM_GETROUTE, decode, dump_request
from lwspy.roles.netlink import RouteWatcher, _Batch, open_netlink
from tests.conftest import Recorder, service_until
from tests.helpers import open_fds


def _refuse() -> socket.socket:
    raise PermissionError(1, "Operation not permitted")


def test_netlink_none_runs_without_it_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(netlink_mod, "open_netlink", _refuse)
    monkeypatch.setattr(context_mod, "_NETLINK_SAID", False)
    with caplog.at_level(logging.WARNING, logger="lwspy"):
        for _ in range(2):
            with Context() as ctx:
                assert ctx.routes is None
                ctx.service(0)
                assert ctx.system.state is SystemState.OPERATIONAL  # nothing holds cold plug
    said = [r for r in caplog.records if "without netlink" in r.getMessage()]
    assert len(said) == 1


def test_netlink_true_where_it_cannot_be_opened_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netlink_mod, "open_netlink", _refuse)
    before = open_fds()
    with pytest.raises(RuntimeError, match="netlink=True, but no netlink socket"):
        Context(netlink=True)
    assert open_fds() == before
    with pytest.raises(TypeError, match="netlink must be"):
        Context(netlink="yes")  # type: ignore[arg-type]


def test_loopback_connections_are_never_indexed() -> None:
    srv, cli = Recorder("srv"), Recorder("cli")
    with Context(protocols=[srv.protocol, cli.protocol], netlink=True) as ctx:
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        assert vh.port is not None
        ws = [ctx.connect("127.0.0.1", vh.port, protocol="cli") for _ in range(5)]
        service_until(ctx, lambda: all(Reason.RAW_CONNECTED in cli.reasons(w) for w in ws))
        watcher = ctx._netlink
        assert isinstance(watcher, RouteWatcher) and watcher.coldplug_done
        assert watcher.by_route == {} and watcher.by_local == {}
        assert all(w._route_id is None for w in ctx.wsis)


def _host_dump() -> bytes:
    """The host's own links, addresses and routes as the kernel sends them."""
    out = bytearray()
    sock = open_netlink()
    sock.settimeout(5)  # a kernel that never sends DONE fails the collection, not hangs it
    try:
        for seq, kind in enumerate((RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE), 1):
            sock.send(dump_request(kind, AF_UNSPEC, seq))
            while True:
                data = sock.recv(1 << 16)
                out += data
                if any(
                    getattr(r, "seq", None) == seq and type(r).__name__ == "DoneMsg"
                    for r in decode(data)
                ):
                    break
    finally:
        sock.close()
    return bytes(out)


_DUMP = _host_dump()


@pytest.fixture(scope="module")
def watcher_ctx() -> object:
    ctx = Context(protocols=[Recorder("p").protocol], netlink=True)
    service_until(ctx, lambda: ctx._netlink is not None and ctx._netlink.coldplug_done)
    yield ctx
    ctx.destroy()


@pytest.fixture(scope="module")
def tracked(watcher_ctx: Context) -> Iterator[list[Wsi]]:
    """Connections on the host's routes for the fuzzers to cull, made once."""
    made = [_tracked_wsi(watcher_ctx, f"203.0.113.{i}", "198.51.100.1") for i in range(1, 4)]
    yield [w for w, _ in made]
    for _, a in made:
        a.close()


@given(
    cut=st.integers(min_value=0, max_value=len(_DUMP)),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(_DUMP) - 1), st.integers(0, 255)),
        max_size=12,
    ),
)
def test_mangled_kernel_messages_never_raise_out_of_the_role(
    watcher_ctx: Context, tracked: list[Wsi], cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_DUMP[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    watcher = watcher_ctx._netlink
    assert watcher is not None
    batch = _Batch()
    for rec in decode(bytes(data)):
        watcher._record(rec, batch)
    watcher._settle(batch)


@given(st.binary(max_size=4096))
def test_random_bytes_never_raise_out_of_the_role(
    watcher_ctx: Context, tracked: list[Wsi], data: bytes
) -> None:
    watcher = watcher_ctx._netlink
    assert watcher is not None
    batch = _Batch()
    for rec in decode(data):
        watcher._record(rec, batch)
    watcher._settle(batch)


def test_destroy_during_cold_plug_still_reaches_context_destroying() -> None:
    seen: list[bytes] = []
    ctx = Context(netlink=True)
    ctx.smd.register(lambda c, ts, p: seen.append(p), SmdClass.SYSTEM_STATE)
    ctx._boot.cancel()
    ctx.system.transition(SystemState.OPERATIONAL)  # before any dump was read: held
    assert ctx.system.state is SystemState.IFACE_COLDPLUG and ctx.system.held
    ctx.destroy()
    assert ctx.system.state is SystemState.CONTEXT_DESTROYING


def _tracked_wsi(ctx: Context, peer: str, local: str) -> tuple[Wsi, socket.socket]:
    """A connection the watcher tracks as if its peer were ``peer`` (no traffic is sent)."""
    a, b = socket.socketpair()
    wsi = ctx.adopt_socket(b)
    wsi.peer, wsi.local = (peer, 443), (local, 50000)
    assert ctx._netlink is not None
    ctx._netlink.track(wsi)
    return wsi, a
