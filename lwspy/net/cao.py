"""Connection Attempt Objects: one record per connect attempt, and the CONMON figures.

Sans-I/O records filled in by the connect machinery in ``lwspy.core``. A client wsi owns a
list of them, the HEAD (winning) attempt first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["Cao", "CaoResult", "Conmon"]


class CaoResult(IntEnum):
    """How a connection attempt ended."""

    PENDING = 0
    WON = 1
    LOST_RACE = 2
    REFUSED = 3
    UNREACHABLE = 4
    TIMED_OUT = 5
    ERROR = 6


@dataclass(slots=True)
class Conmon:
    """Connection monitoring figures (lws ``struct lws_conmon``, ``ciu_`` prefix dropped).

    Times are in microseconds; ``dns_results`` lists every address the resolver gave, in
    resolver order, without duplicates.
    """

    peer: tuple[str, int] | None = None
    dns_us: int = 0
    dns_disposition: str = "OK"
    dns_results: list[str] = field(default_factory=list)
    sockconn_us: int = 0
    tls_us: int = 0
    txn_resp_us: int = 0
    protocol_specific: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Cao:
    """One connect attempt to one address, from start to its end (``result``)."""

    host: str
    port: int
    address: str
    family: int
    started: float
    local: tuple[str, int] | None = None
    ifindex: int | None = None
    gateway: str | None = None
    route_id: int | None = None
    ended: float | None = None
    result: CaoResult = CaoResult.PENDING
    errno: int = 0
    connect_us: int = 0
    conmon: Conmon | None = None
