"""A reset that comes before the handshake completed, yet reads ECONNRESET in SO_ERROR.

Linux's ``tcp_reset()`` says ECONNREFUSED only in SYN-SENT. A connecting socket that got a
bare SYN (a simultaneous open: the peer's SYN crossed ours, or anyone who guessed the
source port sent one) is in SYN-RECV, and a reset there reads ECONNRESET although the
connect never completed (RFC 9293 3.10.7.4: "connection refused"). Such an attempt must
fail, not win: no RAW_CONNECTED, no WON CAO the database would then put first, and the
race goes on to the next address at once.

The peer is made by hand in namespace "b": a packet socket on vb sees the client's SYN to
an address nobody holds (a static neighbour entry sends it there; "b" does not forward,
so its kernel drops it silently), answers with a bare SYN, waits for the client's
SYN-ACK (the client is in SYN-RECV) and resets it, all before the loop looks.
"""

from __future__ import annotations

import json
import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwspy import CaoResult, Context, Reason, Wsi, WsiState
from lwspy.net.cao import FAILURES
from tests.conftest import Recorder, service_until
from tests.netns.conftest import Lab
from tests.test_connect_reset import attempt_socket, reraise

pytestmark = pytest.mark.netns

FAKE = "198.51.100.77"  # on va's subnet, held by nobody: the hand-made peer answers for it
SYN, RST, ACK = 0x02, 0x04, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _segment(src: str, dst: str, sport: int, dport: int, seq: int, flags: int) -> bytes:
    """An IPv4 packet holding one TCP segment without options or data."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + tcp


def _mac(lab: Lab, ns: str, dev: str) -> bytes:
    link = json.loads(lab.ip(ns, "-j", "link", "show", dev))[0]
    return bytes.fromhex(link["address"].replace(":", ""))


class SynRecvResetter:
    """The hand-made peer for FAKE (see the module docstring)."""

    def __init__(self, lab: Lab) -> None:
        lab.sysctl("b", "net.ipv4.ip_forward", "0")
        self.mac_a, self.mac_b = _mac(lab, "a", "va"), _mac(lab, "b", "vb")
        lab.ip(
            "a",
            "neigh",
            "add",
            FAKE,
            "lladdr",
            self.mac_b.hex(":"),
            "dev",
            "va",
            "nud",
            "permanent",
        )
        with lab.inside("b"):
            self.pk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.pk.bind(("vb", 0))
        self.pk.settimeout(5)

    def _wait(self, flags: int) -> tuple[int, int]:
        """The (source port, destination port) of the next segment to FAKE with ``flags``."""
        while True:
            ip = self.pk.recv(2048)[14:]
            if ip[9] != 6 or socket.inet_ntoa(ip[16:20]) != FAKE:
                continue
            tcp = ip[(ip[0] & 15) * 4 :]
            if tcp[13] & (SYN | ACK | RST) == flags:
                sport, dport = struct.unpack("!HH", tcp[:4])
                return sport, dport

    def _send(self, packet: bytes) -> None:
        self.pk.send(self.mac_a + self.mac_b + b"\x08\x00" + packet)

    def reset_in_syn_recv(self, client: socket.socket) -> None:
        sport, dport = self._wait(SYN)
        self._send(_segment(FAKE, Lab.A_ADDR, dport, sport, 1000, SYN))  # crosses its SYN
        self._wait(SYN | ACK)  # the client is in SYN-RECV now
        info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        assert info[0] == 3  # TCP_SYN_RECV: the connect has not completed
        self._send(_segment(FAKE, Lab.A_ADDR, dport, sport, 1001, RST))
        poll = select.poll()
        poll.register(client, select.POLLOUT)
        for _ in range(500):
            if any(ev & select.POLLHUP for _, ev in poll.poll(10)):
                break
        else:
            raise AssertionError("the reset never arrived")
        # SO_ERROR is left for the loop to read (reading it here would take it).

    def close(self) -> None:
        self.pk.close()


@pytest.fixture
def resetter(lab: Lab) -> Iterator[SynRecvResetter]:
    r = SynRecvResetter(lab)
    try:
        yield r
    finally:
        r.close()


def test_a_reset_in_syn_recv_is_a_failed_attempt_and_the_race_goes_on(
    lab: Lab, resetter: SynRecvResetter, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{FAKE} sim.test\n{Lab.PEER} sim.test\n")
    with lab.inside("b"):
        lsock = socket.create_server((Lab.PEER, 0))
    port = lsock.getsockname()[1]
    rec = Recorder("p")
    try:
        with Context(
            protocols=[rec.protocol],
            netlink=False,
            hosts_file=hosts,
            happy_eyeballs_delay=5,  # the second address starts only when the first fails
            on_callback_error=reraise,
        ) as ctx:
            wsi: Wsi = ctx.connect("sim.test", port, protocol="p")
            resetter.reset_in_syn_recv(attempt_socket(ctx))
            service_until(
                ctx,
                lambda: Reason.RAW_CONNECTED in rec.reasons(wsi) or wsi.state is WsiState.CLOSED,
            )
            fake = [c for c in wsi.caos if c.address == FAKE]
            assert [c.result in FAILURES for c in fake] == [True]
            assert ctx.cao_db.stats(address=FAKE).wins == 0
            assert wsi.peer == (Lab.PEER, port)  # the next address, started at once, won
            assert wsi.caos[0].address == Lab.PEER and wsi.caos[0].result is CaoResult.WON
    finally:
        lsock.close()


def test_a_reset_in_syn_recv_is_one_connection_error(lab: Lab, resetter: SynRecvResetter) -> None:
    rec = Recorder("p")
    with Context(protocols=[rec.protocol], netlink=False, on_callback_error=reraise) as ctx:
        wsi = ctx.connect(FAKE, 4242, protocol="p")
        resetter.reset_in_syn_recv(attempt_socket(ctx))
        service_until(ctx, lambda: wsi.state is WsiState.CLOSED)
        got = rec.reasons(wsi)
        assert Reason.RAW_CONNECTED not in got
        assert got.count(Reason.CLIENT_CONNECTION_ERROR) == 1
        assert [c.result in FAILURES for c in wsi.caos] == [True]
        assert ctx.cao_db.stats(address=FAKE).wins == 0
        assert len(ctx.pt.fds) == 1
