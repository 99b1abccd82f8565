"""The hosts file (``/etc/hosts``): names to addresses, parsed from text (sans-I/O)."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["HOSTNAME", "parse_hosts"]

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")
"""A host name as connect() and resolve() take it: LDH labels (and ``_``), each 1..63
characters, none starting or ending with a hyphen (RFC 1123 §2.1), at most 253
characters without the trailing dot (254 with it)."""


def parse_hosts(text: str) -> dict[str, list[str]]:
    """Map each lower-cased name in hosts-file ``text`` to its addresses, in file order.

    Comments, blank lines, lines whose first field is not an IP address and repeated
    addresses for a name are skipped.

    >>> parse_hosts("198.51.100.7 lab.test lab  # the lab\\n2001:db8::7 lab.test\\n")
    {'lab.test': ['198.51.100.7', '2001:db8::7'], 'lab': ['198.51.100.7']}
    """
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = str(ipaddress.ip_address(fields[0]))
        except ValueError:
            continue
        for name in fields[1:]:
            addrs = names.setdefault(name.lower(), [])
            if addr not in addrs:
                addrs.append(addr)
    return names
