"""Output for people, shared by the ``lwspy`` commands: aligned tables, human units, colour.

Colour only when the stream is a terminal and ``NO_COLOR`` is not set (https://no-color.org:
any value, even empty, turns it off). Tables are plain text columns; a number column is
right-aligned.

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
from collections.abc import Sequence
from typing import TextIO

__all__ = [
    "EXIT_CAPTIVE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Style",
    "human_count",
    "human_us",
    "table",
]

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


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Lines of an aligned table; ints (and "-" placeholders in an int column) go right."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [
        any(isinstance(row[i], int) for row in rows)
        and all(isinstance(row[i], int) or row[i] == "-" for row in rows)
        for i in range(len(headers))
    ]
    out = []
    for row in [list(headers), *cells]:
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(parts).rstrip())
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
