"""The listen backlog is the system's largest (``net.core.somaxconn``), not SOMAXCONN.

``net.core.somaxconn`` is per network namespace, so the test raises it in its own
namespace only and reads the listener's backlog back with ``ss`` (its Send-Q column).
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from lwspy import Context
from tests.conftest import Recorder
from tests.netns.conftest import Lab

pytestmark = pytest.mark.netns


def test_listeners_use_the_namespace_somaxconn(lab: Lab) -> None:
    largest = socket.SOMAXCONN * 4 + 1
    lab.sysctl("a", "net.core.somaxconn", str(largest))
    with Context(protocols=[Recorder("p").protocol], netlink=False) as ctx:
        vh = ctx.create_vhost("default", port=0, iface=lab.A_ADDR)
        out = subprocess.run(
            ["ip", "netns", "exec", lab.ns["a"], "ss", "-ltnH", f"sport = :{vh.port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    assert out[0] == "LISTEN" and int(out[2]) == largest
