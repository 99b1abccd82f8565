"""The ``lwspy`` console script.

``lwspy demo`` shows what lwspy does (:mod:`lwspy._demo`); ``lwspy connect`` connects and
prints each connect's CAOs, CONMON and timeline (:mod:`lwspy._connect`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from lwspy import __version__, _connect, _demo


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``lwspy`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="lwspy",
        description="lwspy, a selectors-based event loop in the style of libwebsockets.",
        epilog="Also runs as: python -m lwspy. Documentation: the docs/ folder of the source.",
    )
    parser.add_argument("--version", action="version", version=f"lwspy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo.add_parser(sub)
    connect = _connect.add_parser(sub)
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.command == "connect" and args.n < 1:
        connect.error("-n must be >= 1")
    status: int = args.run(args, stream)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
