"""Connection Attempt Objects: one record per connect attempt, and the CONMON figures.

Sans-I/O records filled in by the connect machinery in ``lwspy.core``. A client wsi owns a
list of them, the HEAD (winning) attempt first.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from lwspy._record import Record

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


class Conmon(Record):
    """Connection monitoring figures (lws ``struct lws_conmon``, ``ciu_`` prefix dropped).

    Times are in microseconds; ``dns_results`` lists every address the resolver gave, in
    resolver order, without duplicates.
    """

    __slots__ = (  # noqa: RUF023 - declaration order is the repr order
        "peer",
        "dns_us",
        "dns_disposition",
        "dns_results",
        "sockconn_us",
        "tls_us",
        "txn_resp_us",
        "protocol_specific",
    )

    def __init__(
        self,
        peer: tuple[str, int] | None = None,
        dns_us: int = 0,
        dns_disposition: str = "OK",
        dns_results: list[str] | None = None,
        sockconn_us: int = 0,
        tls_us: int = 0,
        txn_resp_us: int = 0,
        protocol_specific: dict[str, Any] | None = None,
    ) -> None:
        self.peer = peer
        self.dns_us = dns_us
        self.dns_disposition = dns_disposition
        self.dns_results: list[str] = [] if dns_results is None else dns_results
        self.sockconn_us = sockconn_us
        self.tls_us = tls_us
        self.txn_resp_us = txn_resp_us
        self.protocol_specific: dict[str, Any] = (
            {} if protocol_specific is None else protocol_specific
        )


class Cao(Record):
    """One connect attempt to one address, from start to its end (``result``)."""

    __slots__ = (  # noqa: RUF023 - declaration order is the repr order
        "host",
        "port",
        "address",
        "family",
        "started",
        "local",
        "ifindex",
        "gateway",
        "route_id",
        "ended",
        "result",
        "errno",
        "connect_us",
        "conmon",
    )

    def __init__(
        self,
        host: str,
        port: int,
        address: str,
        family: int,
        started: float,
        local: tuple[str, int] | None = None,
        ifindex: int | None = None,
        gateway: str | None = None,
        route_id: int | None = None,
        ended: float | None = None,
        result: CaoResult = CaoResult.PENDING,
        errno: int = 0,
        connect_us: int = 0,
        conmon: Conmon | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.address = address
        self.family = family
        self.started = started
        self.local = local
        self.ifindex = ifindex
        self.gateway = gateway
        self.route_id = route_id
        self.ended = ended
        self.result = result
        self.errno = errno
        self.connect_us = connect_us
        self.conmon = conmon
