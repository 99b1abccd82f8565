"""Output for people, shared by the ``lwspy`` commands: exit codes, colour, aligned
tables, human units, and the renderings of a connect (the CAO table, the CONMON lines,
the text timeline, the JSON record) that ``lwspy connect`` and ``lwspy demo`` share.

Colour only when the stream is a terminal and ``NO_COLOR`` is not set (https://no-color.org:
any value, even empty, turns it off). Tables are plain text columns; a number column is
right-aligned. The renderings are pure functions: records in, lines of text (or JSON-able
dicts) out; nothing here prints.

>>> print("\\n".join(table(["ID", "DST"], [[1, "default"], [12, "198.51.100.0/24"]])))
ID  DST
 1  default
12  198.51.100.0/24
>>> human_us(1234), human_us(2_500_000), human_us(None)
('1.2 ms', '2.50 s', '-')
>>> human_count(1234567)
'1,234,567'
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from lwspy.net.cao import Cao, Conmon

__all__ = [
    "EXIT_CAPTIVE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Style",
    "cao_dict",
    "cao_table",
    "conmon_lines",
    "connect_record",
    "family_name",
    "human_count",
    "human_ms",
    "human_seconds",
    "human_us",
    "if_name",
    "table",
    "timeline",
]

IfName = Callable[[int | None], str]

EXIT_OK = 0
"""The command did what it was asked."""
EXIT_FAILED = 1
"""What the command checked failed (a connect, a probe, a benchmark that did not run)."""
EXIT_USAGE = 2
"""Bad arguments (argparse's own code)."""
EXIT_UNAVAILABLE = 3
"""Not available here: no netlink, a feature this build lacks, tools/ not found."""
EXIT_CAPTIVE = 4
"""``lwspy cpd``: a captive portal answered in place of the probe URL."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (128 + SIGINT, as a shell reports it)."""


class Style:
    """ANSI styling that is a no-op unless ``stream`` is a TTY and ``NO_COLOR`` is unset.

    >>> import io
    >>> Style(io.StringIO()).bold("x")
    'x'
    """

    __slots__ = ("enabled",)

    def __init__(self, stream: TextIO) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) and "NO_COLOR" not in os.environ

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        """``text`` in bold."""
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        """``text`` faint (for less important columns)."""
        return self._wrap("2", text)

    def good(self, text: str) -> str:
        """``text`` in green."""
        return self._wrap("32", text)

    def bad(self, text: str) -> str:
        """``text`` in red."""
        return self._wrap("31", text)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    indent: str = "",
    sep: str = "  ",
    rule: bool = False,
) -> list[str]:
    """Lines of an aligned table: a header line, a rule of dashes under it if ``rule``, then
    the rows, each line after ``indent`` and its cells ``sep`` apart.

    A column goes right when its header starts with ``>`` (not shown), or when it holds
    ints (and "-" placeholders); the others go left.

    >>> for line in table(["name", ">ms"], [["a", "1"], ["bb", "250"]], sep=" ", rule=True):
    ...     print(line)
    name  ms
    ---- ---
    a      1
    bb   250
    """
    marked = [h.startswith(">") for h in headers]
    heads = [h[1:] if m else h for h, m in zip(headers, marked, strict=True)]
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in heads]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right = [
        marked[i]
        or (
            any(isinstance(row[i], int) for row in rows)
            and all(isinstance(row[i], int) or row[i] == "-" for row in rows)
        )
        for i in range(len(headers))
    ]
    lines = [heads, *([["-" * w for w in widths]] if rule else []), *cells]
    out = []
    for row in lines:
        parts = [
            cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append((indent + sep.join(parts)).rstrip())
    return out


def human_us(us: float | None) -> str:
    """Microseconds as people read them: "850 us", "1.2 ms", "2.50 s"; None as "-"."""
    if us is None:
        return "-"
    if us < 1000:
        return f"{us:.0f} us"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.2f} s"


def human_count(n: int) -> str:
    """An integer with thousands separators."""
    return f"{n:,}"


def human_ms(us: float) -> str:
    """Microseconds on the scale of the connect renderings, milliseconds up to a second:
    ``"0.35 ms"``, ``"12.1 ms"``, ``"253 ms"``, ``"3.01 s"``."""
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
    """Seconds for people, on the scale of :func:`human_ms`."""
    return human_ms(seconds * 1e6)


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
    headers = ["cao", "address", "family", "source", "iface", "gateway", "result", ">time"]
    return table(headers, rows, indent="  ", sep=" ", rule=True)


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
        asked = f"DNS {conmon.dns_disposition} in {human_ms(conmon.dns_us)} gave {dns}"
    return [
        f"  CONMON: {peer}; {asked}",
        f"          TCP handshake {human_ms(conmon.sockconn_us)}"
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
