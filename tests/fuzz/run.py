"""Coverage-guided fuzzing of one target with atheris (libFuzzer options pass through).

Usage (from the repository root)::

    python -m tests.fuzz.run TARGET [libFuzzer options] [corpus folders]
    python -m tests.fuzz.run dns_message -runs=20000 tests/fuzz/corpus/dns_message
    python -m tests.fuzz.run netlink -max_total_time=600 /tmp/nl tests/fuzz/corpus/netlink

Targets are the names of :data:`tests.fuzz.targets.TARGETS`. lwspy's modules and h11
are instrumented for coverage (imported here first, inside atheris's import hook).
A crash (an invariant broken, an exception escaping) is written as ``crash-<sha1>`` by
libFuzzer and ends the run with a non-zero status; add such an input to the corpus and a
regression test to the normal suite.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["lwspy", "h11"]):
    import h11  # noqa: F401 (the HTTP client imports it on first use: instrument it now)

    from tests.fuzz.targets import TARGETS


def main() -> None:
    """Run the target named by the first argument."""
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer args]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], "-max_len=65536", *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
