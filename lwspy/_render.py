"""Text and JSON renderings of connection attempts for the ``lwspy`` commands.

One place for the CAO table, the CONMON lines and the text timeline, so that ``lwspy
connect``, ``lwspy demo`` and any other command show a connect the same way. Pure
functions: records in, lines of text (or JSON-able dicts) out; nothing here prints.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from lwspy.net.cao import Cao, Conmon

__all__ = [
    "cao_dict",
    "cao_table",
    "conmon_lines",
    "connect_record",
    "family_name",
    "human_seconds",
    "human_us",
    "if_name",
    "table",
    "timeline",
]

IfName = Callable[[int | None], str]


def human_us(us: float) -> str:
    """Microseconds for people: ``"0.35 ms"``, ``"12.1 ms"``, ``"253 ms"``, ``"3.01 s"``."""
    ms = us / 1000
    if us == 0:
        return "0 ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def human_seconds(seconds: float) -> str:
    """Seconds for people, on the same scale as :func:`human_us`."""
    return human_us(seconds * 1e6)


def family_name(family: int) -> str:
    """``"IPv4"``, ``"IPv6"`` or the number."""
    return {int(socket.AF_INET): "IPv4", int(socket.AF_INET6): "IPv6"}.get(int(family), str(family))


def if_name(ifindex: int | None) -> str:
    """The interface name of ``ifindex`` in this thread's namespace, ``"-"`` if unknown."""
    if ifindex is None:
        return "-"
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"#{ifindex}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Aligned columns (left-aligned text, right-aligned when a column's header starts with
    ``>``), a header line and a rule; returns the lines.

    >>> for line in table(["name", ">ms"], [["a", "1"], ["bb", "250"]]):
    ...     print(line)
      name  ms
      ---- ---
      a      1
      bb   250
    """
    right = [h.startswith(">") for h in headers]
    heads = [h[1:] if r else h for h, r in zip(headers, right, strict=True)]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return (indent + " ".join(parts)).rstrip()

    return [line(heads), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _attempt_ms(cao: Cao) -> str:
    if cao.ended is None:
        return "-"
    return human_seconds(cao.ended - cao.started)


def cao_table(caos: Sequence[Cao], ifname: IfName = if_name) -> list[str]:
    """The CAO table of one connect, HEAD first as ``wsi.caos`` holds it: address, family,
    source, interface, gateway, result and how long the attempt took."""
    rows = [
        [
            "HEAD" if i == 0 and cao.result.name == "WON" else str(i),
            cao.address,
            family_name(cao.family),
            cao.local[0] if cao.local else "-",
            ifname(cao.ifindex),
            cao.gateway or "-",
            cao.result.name,
            _attempt_ms(cao),
        ]
        for i, cao in enumerate(caos)
    ]
    return table(
        ["cao", "address", "family", "source", "iface", "gateway", "result", ">time"], rows
    )


def conmon_lines(conmon: Conmon | None, hosts: bool = False) -> list[str]:
    """CONMON in two lines: where it went, and how long DNS and the handshake took;
    ``hosts``: the name came from the hosts file (CONMON still calls that DNS OK)."""
    if conmon is None:
        return ["  CONMON: none (conmon=False)"]
    peer = f"peer {conmon.peer[0]} port {conmon.peer[1]}" if conmon.peer else "not connected"
    dns = ", ".join(conmon.dns_results) or "none"
    if conmon.dns_us == 0 and conmon.dns_disposition == "OK":
        asked = f"no DNS (a literal address: {dns})"
    elif hosts and conmon.dns_disposition == "OK":
        asked = f"hosts file gave {dns} (no DNS)"
    else:
        asked = f"DNS {conmon.dns_disposition} in {human_us(conmon.dns_us)} gave {dns}"
    return [
        f"  CONMON: {peer}; {asked}",
        f"          TCP handshake {human_us(conmon.sockconn_us)}"
        if conmon.peer
        else "          no TCP handshake",
    ]


def timeline(caos: Sequence[Cao], width: int = 40, now: float | None = None) -> list[str]:
    """A text timeline of the attempts in start order: when each started and ended,
    relative to the first, as a bar on a common scale.

    An attempt still running at ``now`` (or with no end) is drawn up to ``now``.
    """
    if not caos:
        return []
    ordered = sorted(caos, key=lambda c: c.started)
    t0 = ordered[0].started
    ends = [
        c.ended if c.ended is not None else (now if now is not None else c.started) for c in ordered
    ]
    span = max(max(ends) - t0, 1e-6)
    label = max(len(c.address) for c in ordered)
    lines = [f"  {'':{label}}  0{human_seconds(span).rjust(width + 1)}"]
    for cao, end in zip(ordered, ends, strict=True):
        a = min(round((cao.started - t0) / span * width), width - 1)
        b = min(max(round((end - t0) / span * width), a + 1), width)
        bar = " " * a + "=" * (b - a)
        lines.append(
            f"  {cao.address:{label}}  |{bar:{width}}|  "
            f"{human_seconds(cao.started - t0):>7} .. {human_seconds(end - t0):>7}  "
            f"{cao.result.name}"
        )
    return lines


def cao_dict(cao: Cao) -> dict[str, Any]:
    """A CAO as JSON: its field names, the result as its name (e.g. ``"WON"``), the
    source address a ``[host, port]`` list, the CONMON of the HEAD as ``as_dict()``."""
    return {
        "host": cao.host,
        "port": cao.port,
        "address": cao.address,
        "family": cao.family,
        "started": cao.started,
        "local": list(cao.local) if cao.local else None,
        "ifindex": cao.ifindex,
        "gateway": cao.gateway,
        "route_id": cao.route_id,
        "ended": cao.ended,
        "result": cao.result.name,
        "errno": cao.errno,
        "connect_us": cao.connect_us,
        "conmon": cao.conmon.as_dict() if cao.conmon is not None else None,
    }


def connect_record(caos: Sequence[Cao], conmon: Conmon | None) -> dict[str, Any]:
    """One connect as one JSON object: ``caos`` (HEAD first) and ``conmon``."""
    return {
        "caos": [cao_dict(c) for c in caos],
        "conmon": conmon.as_dict() if conmon is not None else None,
    }
