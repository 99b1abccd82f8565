"""Benchmark a CPD probe's cost beyond the TCP connect, against http.client and h11 alone.

One server process on 127.0.0.1 answers every connection with ``HTTP/1.1 204 No
Content`` after reading the request head (or at once closes a connection that sends
nothing). Each client makes ``--n`` sequential requests, one connection each (the probe's
``Connection: close``), and the same number of bare connects; the figure is the
difference per request: what the request, the parse and the result cost on top of the
connect. Clients:

* lwspy ``ctx.http_get`` (connect through ``ctx.connect``, h11 parsing, the callback);
* lwspy ``ctx.cpd.start()`` (the above, plus the CPD machine, its timers and the NETWORK
  message), against bare ``ctx.connect`` connects;
* ``http.client.HTTPConnection`` (blocking), against ``socket.create_connection``;
* h11 alone: a client ``h11.Connection`` making the request bytes and parsing the 204,
  no sockets: the parser's floor.

Loopback only. Usage::

    python tools/bench_http.py [--n 2000] [--reps 5]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import socket
import statistics
import time
from collections.abc import Callable

import h11

from lwspy import Context, CpdResult, HttpResponse, Protocol, Reason, Wsi

RESPONSE = b"HTTP/1.1 204 No Content\r\n\r\n"


def serve(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data:
                conn.sendall(RESPONSE)


def lwspy_get(port: int, n: int) -> float:
    with Context(netlink=False) as ctx:
        left = [n]

        def done(resp: HttpResponse) -> None:
            assert resp.status == 204, resp
            left[0] -= 1
            if left[0]:
                ctx.http_get(url, done)
            else:
                ctx.stop()

        url = f"http://127.0.0.1:{port}/generate_204"
        t0 = time.perf_counter()
        ctx.http_get(url, done)
        ctx.run()
        return time.perf_counter() - t0


def lwspy_connect(port: int, n: int) -> float:
    left = [n]

    def cb(wsi: Wsi | None, reason: Reason, user: object, data: object) -> int:
        if wsi is None:
            return 0
        if reason is Reason.RAW_CONNECTED:
            return 1
        if reason is Reason.RAW_CLOSE:
            left[0] -= 1
            if left[0]:
                wsi.ctx.connect("127.0.0.1", port, protocol="c")
            else:
                wsi.ctx.stop()
        return 0

    with Context(netlink=False, protocols=[Protocol("c", cb)]) as ctx:
        t0 = time.perf_counter()
        ctx.connect("127.0.0.1", port, protocol="c")
        ctx.run()
        return time.perf_counter() - t0


def lwspy_cpd(port: int, n: int) -> float:
    with Context(netlink=False, cpd_url=f"http://127.0.0.1:{port}/generate_204") as ctx:
        while ctx.cpd.result is CpdResult.UNKNOWN:
            ctx.service(10)
        t0 = time.perf_counter()
        for i in range(n):
            ctx.cpd.start()
            while ctx.cpd.probes < i + 2 or ctx.cpd.probing:
                ctx.service(10)
        assert ctx.cpd.result is CpdResult.INTERNET_OK
        return time.perf_counter() - t0


def httpclient_get(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/generate_204", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 204
        conn.close()
    return time.perf_counter() - t0


def socket_connect(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return time.perf_counter() - t0


def h11_alone(port: int, n: int) -> float:
    headers = [
        ("Host", "127.0.0.1"),
        ("User-Agent", "x"),
        ("Accept", "*/*"),
        ("Connection", "close"),
    ]
    t0 = time.perf_counter()
    for _ in range(n):
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/generate_204", headers=headers))
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = sock.getsockname()[1]
    server = multiprocessing.Process(target=serve, args=(sock,), daemon=True)
    server.start()
    rows: list[tuple[str, Callable[[int, int], float], Callable[[int, int], float] | None]] = [
        ("lwspy ctx.http_get", lwspy_get, lwspy_connect),
        ("lwspy ctx.cpd probe", lwspy_cpd, lwspy_connect),
        ("http.client", httpclient_get, socket_connect),
        ("h11 alone (no sockets)", h11_alone, None),
    ]
    try:
        print(f"{args.n} sequential requests per run, median of {args.reps} runs, loopback")
        print(f"{'client':26} {'request us':>11} {'connect us':>11} {'beyond connect us':>18}")
        for name, full, bare in rows:
            fulls, bares = [], []
            for _ in range(args.reps):
                fulls.append(full(port, args.n) / args.n * 1e6)
                if bare is not None:
                    bares.append(bare(port, args.n) / args.n * 1e6)
            f = statistics.median(fulls)
            b = statistics.median(bares) if bares else 0.0
            print(f"{name:26} {f:11.1f} {b:11.1f} {f - b:18.1f}")
    finally:
        server.terminate()
        sock.close()


if __name__ == "__main__":
    main()
