"""Write the fuzzing seed corpus (tests/fuzz/corpus/<target>/).

Run as root from the repository root: ``python -m tests.fuzz.make_corpus``. DNS seeds are
built with dnspython (the reference encoder) plus hand-made hostile messages; netlink
seeds are real kernel dumps, taken inside a fresh network namespace (``unshare -n``) that
holds only documentation addresses, plus hostile messages; HTTP seeds are server answers,
whole and byte by byte. Each seed's file name says
what it is. The DNS, resolv.conf and HTTP seeds come out the same on every run; the
kernel dumps differ in their details (interface indexes, port ids), so a re-run need not
be committed.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rrset

from lwspy.net import nlmsg, rule
from lwspy.net.dns import TYPE_A, TYPE_AAAA, make_query, name_labels

ROOT = Path(__file__).parent / "corpus"

# Builds the namespace the netlink seeds are dumped from (documentation addresses only).
LAB = """
set -e
ip link set lo up
ip link add v0 type veth peer name v1
ip link set v0 up
ip link set v1 up
ip addr add 198.51.100.1/24 dev v0
ip -6 addr add 2001:db8:1::1/64 dev v0 nodad
ip route add 203.0.113.0/25 via 198.51.100.254
ip route add 203.0.113.128/25 nexthop via 198.51.100.253 nexthop via 198.51.100.252
ip route add blackhole 203.0.113.7/32
ip -6 route add 2001:db8:2::/48 via 2001:db8:1::fe
ip -6 route add 2001:db8:3::/48 via 2001:db8:1::fd expires 600
ip nexthop add id 10 via 198.51.100.250 dev v0
ip route add 198.18.0.0/24 nhid 10
ip rule add from 198.51.100.0/24 table 100 priority 100
"""


def _dns_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for qtype, rtype, text in (
        (TYPE_A, "A", "198.51.100.7"),
        (TYPE_AAAA, "AAAA", "2001:db8::7"),
    ):
        query = dns.message.from_wire(make_query(0x1234, name_labels("lab.test"), qtype))
        answer = dns.message.make_response(query)
        answer.answer.append(dns.rrset.from_text("lab.test.", 300, "IN", rtype, text))
        seeds[f"answer_{rtype}"] = answer.to_wire()
        cname = dns.message.make_response(query)
        cname.answer.append(dns.rrset.from_text("lab.test.", 60, "IN", "CNAME", "b.test."))
        cname.answer.append(dns.rrset.from_text("b.test.", 60, "IN", rtype, text))
        seeds[f"cname_{rtype}"] = cname.to_wire()
        nx = dns.message.make_response(query)
        nx.set_rcode(dns.rcode.NXDOMAIN)
        nx.authority.append(
            dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 5")
        )
        seeds[f"nxdomain_{rtype}"] = nx.to_wire()
        tc = dns.message.make_response(query)
        tc.flags |= dns.flags.TC
        seeds[f"truncated_{rtype}"] = tc.to_wire()
    header = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0)
    question = b"\x03lab\x04test\x00\x00\x01\x00\x01"
    # A name that points at itself, and two that point at each other.
    seeds["pointer_self"] = header + question + b"\xc0\x1d" + b"\x00\x01\x00\x01" + b"\0" * 6
    seeds["pointer_pair"] = (
        struct.pack("!HHHHHH", 0x1234, 0x8180, 2, 0, 0, 0) + b"\xc0\x0e\x00\x01\x00\x01"
        b"\xc0\x0c\x00\x01\x00\x01"
    )
    # A 64 KiB chain of one-byte labels, and of pointers each to the one before.
    seeds["label_chain_64k"] = header + b"\x01a" * 32760 + b"\x00\x00\x01\x00\x01"
    chain = bytearray(header + b"\x00\x00\x01\x00\x01")
    while len(chain) < 65000:
        chain += struct.pack("!H", 0xC000 | (len(chain) - 2))
    seeds["pointer_chain_64k"] = bytes(chain)
    seeds["counts_huge"] = struct.pack("!HHHHHH", 0x1234, 0x8180, 65535, 65535, 65535, 65535)
    seeds["rdlength_past_end"] = (
        header + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\xff\xff\x01\x02"
    )
    return seeds


def _resolv_seeds() -> dict[str, bytes]:
    return {
        "resolv_conf": b"nameserver 127.0.0.53\nnameserver ::1\nsearch lab.test test\n"
        b"options ndots:2 timeout:1 attempts:3 rotate\n",
        "resolv_conf_odd": b"nameserver fe80::1%eth0\nnameserver 1.2.3\ndomain x\n"
        b"search " + b"a" * 300 + b"\noptions ndots:99999 timeout:-1\n",
        "hosts": b"127.0.0.1 localhost\n::1 localhost ip6-localhost # comment\n"
        b"198.51.100.7 lab.test lab\nnot-an-address name\n",
    }


def _http_seeds() -> dict[str, bytes]:
    """Server answers; the first byte sets the read size (2 ** (byte % 17)): the small
    ones are also fed a byte at a time."""
    answers = {
        "204": b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
        "302": b"HTTP/1.1 302 Found\r\nLocation: http://portal.test/login\r\n"
        b"Content-Length: 0\r\n\r\n",
        "200_length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        "200_chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "http10_until_close": b"HTTP/1.0 200 OK\r\n\r\n<html>login</html>",
        "informational": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        "headers_never_end": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 1200,
        "body_too_large": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 9000,
        "not_http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "cut_head": b"HTTP/1.1 200 OK\r\nContent-Ty",
        "bad_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    }
    seeds = {}
    for name, text in answers.items():
        seeds[f"{name}_whole"] = b"\x10" + text
        if len(text) < 600:
            seeds[f"{name}_bytewise"] = b"\x00" + text
    return seeds


def _dump_lab() -> dict[str, bytes]:
    """Real dumps of the lab namespace, one datagram per file (runs in the namespace)."""
    seeds: dict[str, bytes] = {}
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    requests = [
        ("links", nlmsg.dump_request(nlmsg.RTM_GETLINK, nlmsg.AF_UNSPEC, 1)),
        ("addrs", nlmsg.dump_request(nlmsg.RTM_GETADDR, nlmsg.AF_UNSPEC, 2)),
        ("routes4", nlmsg.dump_request(nlmsg.RTM_GETROUTE, nlmsg.AF_INET, 3)),
        ("routes6", nlmsg.dump_request(nlmsg.RTM_GETROUTE, nlmsg.AF_INET6, 4)),
        ("nexthops", nlmsg.dump_request(nlmsg.RTM_GETNEXTHOP, nlmsg.AF_UNSPEC, 5)),
        ("rules", rule.rule_dump_request(6)),
    ]
    for name, req in requests:
        s.send(req)
        part = 0
        while True:
            data = s.recv(65536)
            seeds[f"dump_{name}_{part}"] = data
            part += 1
            if any(isinstance(r, nlmsg.DoneMsg | nlmsg.ErrorMsg) for r in nlmsg.decode(data)):
                break
            if any(isinstance(r, nlmsg.DoneMsg | nlmsg.ErrorMsg) for r in rule.decode_rules(data)):
                break
    s.close()
    return seeds


def _netlink_hostile(routes: bytes) -> dict[str, bytes]:
    first = struct.unpack_from("=I", routes)[0]
    msg = routes[:first]
    return {
        "length_past_buffer": struct.pack("=I", 0xFFFF) + msg[4:],
        "length_zero": struct.pack("=I", 0) + msg[4:],
        "attr_len_past_message": msg[:-4] + struct.pack("=HH", 0xFFF0, 1),
        "truncated_header": msg[:10],
        "same_message_x64": msg * 64,
    }


def main() -> None:
    """Write every seed; with ``--dump`` (inside the namespace) print the dumps as hex."""
    if sys.argv[1:] == ["--dump"]:
        for name, data in _dump_lab().items():
            print(name, data.hex())
        return
    out = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            LAB + f"exec {sys.executable} -m tests.fuzz.make_corpus --dump",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    dumps = {name: bytes.fromhex(hx) for name, hx in (line.split() for line in out.splitlines())}
    routes = dumps["dump_routes4_0"]
    groups = {
        "dns_message": _dns_seeds(),
        "dns_query": _dns_seeds(),
        "resolv_conf": _resolv_seeds(),
        "http_response": _http_seeds(),
        "netlink": {**dumps, **_netlink_hostile(routes)},
    }
    for target, seeds in groups.items():
        folder = ROOT / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds in {folder.relative_to(Path.cwd())}")
    os.sync()


if __name__ == "__main__":
    main()
