"""The core's hook point: roles and subsystems follow connections through it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import lwspy.core.context as context_mod
from lwspy import Context, Reason, Wsi
from lwspy.core.hooks import Hooks
from tests.conftest import Recorder, service_until


def test_subscribers_run_in_order_and_unsubscribe_removes_exactly_theirs() -> None:
    hooks = Hooks()
    seen: list[tuple[str, object]] = []

    class Sub:
        def __init__(self, name: str) -> None:
            self.name = name

        def up(self, wsi: object) -> None:
            seen.append((self.name + " up", wsi))

        def down(self, wsi: object) -> None:
            seen.append((self.name + " down", wsi))

    a, b = Sub("a"), Sub("b")
    un_a = hooks.subscribe(established=a.up, closed=a.down)
    un_b = hooks.subscribe(established=b.up)
    hooks.established("w1")  # type: ignore[arg-type]
    hooks.closed("w1")  # type: ignore[arg-type]
    assert seen == [("a up", "w1"), ("b up", "w1"), ("a down", "w1")]
    un_a()
    un_a()  # twice is harmless
    seen.clear()
    hooks.established("w2")  # type: ignore[arg-type]
    hooks.closed("w2")  # type: ignore[arg-type]
    assert seen == [("b up", "w2")]
    un_b()
    hooks.established("w3")  # type: ignore[arg-type]
    assert seen == [("b up", "w2")]


def test_the_context_announces_connections_without_any_netlink() -> None:
    srv, cli = Recorder("srv"), Recorder("cli")
    ups: list[Wsi] = []
    downs: list[Wsi] = []
    with Context(protocols=[srv.protocol, cli.protocol], netlink=False) as ctx:
        ctx.hooks.subscribe(established=ups.append, closed=downs.append)
        vh = ctx.create_vhost("default", port=0, iface="127.0.0.1")
        assert vh.port is not None
        w = ctx.connect("127.0.0.1", vh.port, protocol="cli")
        service_until(ctx, lambda: Reason.RAW_CONNECTED in cli.reasons(w) and len(ups) == 2)
        accepted = next(x for x in ups if x is not w)
        assert w in ups and accepted.protocol is srv.protocol
        w.close()
        service_until(ctx, lambda: accepted in downs)
        assert w in downs


def test_the_core_knows_the_netlink_role_only_through_the_hook_point() -> None:
    code = "import sys, lwspy.core.context; print('lwspy.roles.netlink' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    source = inspect.getsource(context_mod)
    assert ".track(" not in source and ".untrack(" not in source
    assert "from lwspy.roles.netlink" not in source.split("class Context")[0]
