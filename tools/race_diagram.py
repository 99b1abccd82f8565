"""Draw one real Happy Eyeballs race as an SVG timeline (docs/images/race.svg).

Builds the namespace lab of tools/bench_connect.py (namespaces "a" and "b", a veth pair,
198.51.100.0/24 and 2001:db8:1::/64, a listener in "b" on every address) and gives a
fresh lwspy context in "a" one name, ``deadv6.test``, from a hosts file: AAAA
2001:db8:1::99 (on the veth subnet, held by nobody, so a connect to it hangs in
neighbour discovery: a black-holed path) and A 198.51.100.2. It connects twice and draws
each connect's CAOs (``wsi.caos``: one bar per attempt, from its start to its end,
coloured by result), with the times the run measured. Connect #1 tries IPv6 first (RFC
6724 prefers it), starts IPv4 a Connection Attempt Delay later, IPv4 wins and the IPv6
attempt is closed as LOST_RACE; connect #2 asks the CAO database first and goes straight
to IPv4. Needs root and iproute2; namespaces are deleted on the way out.

    python tools/race_diagram.py [--out docs/images/race.svg] [--json run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_connect import B4, HOLE6, Lab

from lwspy import Context, Protocol, Reason, SystemState, WsiState

NAME = "deadv6.test"
COLOURS = {"WON": "#2e7d32", "LOST_RACE": "#ef6c00", "PENDING": "#9e9e9e"}
FAILED = "#c62828"


def measure() -> list[dict[str, Any]]:
    """Two connects of one fresh context in the lab; each: its CAOs, times in ms from
    the connect call."""
    lab = Lab()
    fd, hosts = tempfile.mkstemp(prefix="lwspy-race-hosts-")
    with os.fdopen(fd, "w") as f:
        f.write(f"{HOLE6} {NAME}\n{B4} {NAME}\n")
    runs: list[dict[str, Any]] = []
    try:
        lab.enter_a()
        done: dict[str, float] = {}

        def cb(wsi: Any, reason: Reason, user: Any, data: Any) -> int:
            if reason in (Reason.RAW_CONNECTED, Reason.CLIENT_CONNECTION_ERROR):
                done["t"] = time.monotonic()
                return 1 if reason is Reason.RAW_CONNECTED else 0
            return 0

        with Context(protocols=[Protocol("c", cb)], hosts_file=hosts, netlink=True) as ctx:
            while ctx.system.state is not SystemState.OPERATIONAL:
                ctx.service(5)
            for n in (1, 2):
                lab.drain()
                done.clear()
                t0 = time.monotonic()
                w = ctx.connect(NAME, lab.port, protocol="c")
                while "t" not in done:
                    ctx.service(20)
                while w.state is not WsiState.CLOSED:
                    ctx.service(5)
                caos = [
                    {
                        "address": c.address,
                        "family": "IPv6" if c.family == socket.AF_INET6 else "IPv4",
                        "result": c.result.name,
                        "start_ms": (c.started - t0) * 1000,
                        "end_ms": None if c.ended is None else (c.ended - t0) * 1000,
                        "connect_us": c.connect_us,
                    }
                    for c in sorted(w.caos, key=lambda c: c.started)
                ]
                runs.append({"connect": n, "connected_ms": (done["t"] - t0) * 1000, "caos": caos})
    finally:
        lab.close()
        os.unlink(hosts)
    return runs


def svg(runs: list[dict[str, Any]]) -> str:
    """The runs as one SVG: a panel per connect, a bar per CAO on a shared ms axis."""
    width, left, right = 760, 230, 30
    end = max(max(r["connected_ms"], *(c["end_ms"] or 0 for c in r["caos"])) for r in runs)
    scale_to = max(50.0, 50.0 * ((end // 50) + 1))
    px = (width - left - right) / scale_to

    def x(ms: float) -> float:
        return left + ms * px

    out: list[str] = []
    y = 30
    out.append(
        f'<text x="10" y="18" class="t">One real race: {escape(NAME)} from a fresh context '
        "(times measured in this run)</text>"
    )
    for run in runs:
        y += 22
        out.append(
            f'<text x="10" y="{y}" class="h">connect #{run["connect"]}: connected after '
            f"{run['connected_ms']:.1f} ms</text>"
        )
        top = y + 8
        for cao in run["caos"]:
            y += 40
            colour = COLOURS.get(cao["result"], FAILED)
            start, stop = cao["start_ms"], cao["end_ms"] or run["connected_ms"]
            label = f"{cao['family']} {cao['address']}"
            out.append(f'<text x="20" y="{y - 8}">{escape(label)}</text>')
            w = max(2.0, (stop - start) * px)
            out.append(
                f'<rect x="{x(start):.1f}" y="{y - 21}" width="{w:.1f}" height="16" '
                f'fill="{colour}" rx="3"/>'
            )
            text = f"{cao['result']}  {start:.1f} .. {stop:.1f} ms"
            if cao["result"] == "WON":
                text += f"  (connect_us {cao['connect_us']:,})"
            tx, anchor = (x(stop), "end") if x(start) > width - 260 else (x(start), "start")
            out.append(
                f'<text x="{tx:.1f}" y="{y + 8}" text-anchor="{anchor}" class="s">{text}</text>'
            )
        if len(run["caos"]) > 1:
            second = run["caos"][1]["start_ms"]
            out.append(
                f'<line x1="{x(second):.1f}" y1="{top}" x2="{x(second):.1f}" y2="{y + 12}" '
                'class="delay"/>'
            )
            out.append(
                f'<text x="{x(second) - 6:.1f}" y="{top + 8}" text-anchor="end" class="s">'
                f"next attempt {second - run['caos'][0]['start_ms']:.0f} ms later "
                "(the Connection Attempt Delay)</text>"
            )
        y += 14
    y += 16
    out.append(f'<line x1="{left}" y1="{y}" x2="{x(scale_to):.1f}" y2="{y}" class="axis"/>')
    step = 50.0 if scale_to <= 400 else 100.0
    tick = 0.0
    while tick <= scale_to + 1e-9:
        out.append(
            f'<line x1="{x(tick):.1f}" y1="{y}" x2="{x(tick):.1f}" y2="{y + 5}" class="axis"/>'
        )
        out.append(f'<text x="{x(tick):.1f}" y="{y + 18}" text-anchor="middle">{tick:.0f}</text>')
        tick += step
    out.append(
        f'<text x="{x(scale_to):.1f}" y="{y + 34}" text-anchor="end">ms after connect()</text>'
    )
    height = y + 44
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
        "<style>.t{font-size:14px;font-weight:bold}.h{font-weight:bold}"
        ".axis{stroke:#444;stroke-width:1}.s{font-size:11px;fill:#333}"
        ".delay{stroke:#555;stroke-dasharray:4 3}</style>\n"
        f'<rect width="{width}" height="{height}" fill="white"/>\n'
    )
    return head + "\n".join(out) + "\n</svg>\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", default=str(root / "docs" / "images" / "race.svg"))
    ap.add_argument("--json", help="also write the measured run here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("race_diagram: needs root (network namespaces)", file=sys.stderr)
        return 3
    runs = measure()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(svg(runs), encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    for run in runs:
        caos = ", ".join(
            f"{c['family']} {c['result']} {c['start_ms']:.1f}..{(c['end_ms'] or 0):.1f} ms"
            for c in run["caos"]
        )
        print(f"connect #{run['connect']}: {run['connected_ms']:.1f} ms; {caos}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
