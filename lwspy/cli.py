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
    common = argparse.ArgumentParser(add_help=False)  # -v/-q, on every command
    common.add_argument("-v", "--verbose", action="count", default=0, help="say more")
    common.add_argument("-q", "--quiet", action="count", default=0, help="say less")
    parser = argparse.ArgumentParser(
        prog="lwspy",
        description="lwspy, a selectors-based event loop in the style of libwebsockets.",
        epilog="Also runs as: python -m lwspy. Documentation: the docs/ folder of the source.",
    )
    parser.add_argument("--version", action="version", version=f"lwspy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo.add_parser(sub, [common])
    connect = _connect.add_parser(sub, [common])
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.command == "connect" and args.n < 1:
        connect.error("-n must be >= 1")
    status: int = args.run(args, stream, sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
