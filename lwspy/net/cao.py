"""Connection Attempt Objects: one record per connect attempt, the CONMON figures, and the
database of recent attempts that the next connect asks first.

Sans-I/O records filled in by the connect machinery in ``lwspy.core``. A client wsi owns a
list of them, the HEAD (winning) attempt first. :class:`CaoDb` keeps the finished ones,
bounded in count and age, with a dict index per key so that a query or a forget costs
O(matches), never O(database).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from enum import IntEnum
from itertools import islice
from operator import attrgetter
from typing import Any

from lwspy._record import Record

__all__ = ["FAILURES", "Cao", "CaoDb", "CaoResult", "CaoStats", "Conmon"]


class CaoResult(IntEnum):
    """How a connection attempt ended."""

    PENDING = 0
    WON = 1
    LOST_RACE = 2
    REFUSED = 3
    UNREACHABLE = 4
    TIMED_OUT = 5
    ERROR = 6


FAILURES = frozenset(
    {CaoResult.REFUSED, CaoResult.UNREACHABLE, CaoResult.TIMED_OUT, CaoResult.ERROR}
)
"""The results that count as a failure of the path (a lost race is only a demotion)."""

_DNS_DISP = {"OK": 1, "SERVER_UNREACHABLE": 2, "NO_RESULT": 3, "NXDOMAIN": 4}


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

    def as_dict(self) -> dict[str, Any]:
        """The figures under the names of lws's CONMON JSON, so tools reading lws's read these.

        ``dns_disp`` is lws's number for the disposition (``LWSCONMON_DNS_*``: 0 none, 1 OK,
        2 server unreachable, 3 no result; 4 is lwspy's NXDOMAIN, which lws folds into 3).

        >>> Conmon(peer=("198.51.100.7", 80), dns_us=120, dns_results=["198.51.100.7"]).as_dict()
        ... # doctest: +NORMALIZE_WHITESPACE
        {'peer': '198.51.100.7', 'dns_us': 120, 'dns_disp': 1, 'sockconn_us': 0, 'tls_us': 0,
         'txn_resp_us': 0, 'dns': ['198.51.100.7'], 'prot_specific': {}}
        """
        return {
            "peer": self.peer[0] if self.peer is not None else "",
            "dns_us": self.dns_us,
            "dns_disp": _DNS_DISP.get(self.dns_disposition, 0),
            "sockconn_us": self.sockconn_us,
            "tls_us": self.tls_us,
            "txn_resp_us": self.txn_resp_us,
            "dns": list(self.dns_results),
            "prot_specific": dict(self.protocol_specific),
        }


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


class CaoStats(Record):
    """What the database knows of a slice of attempts (:meth:`CaoDb.stats`).

    ``failures`` counts refused, unreachable, timed-out and errored attempts; ``lost`` the
    lost races (no failure: the path worked, another was faster). ``median_connect_us`` is
    the median handshake time of the attempts that won, None if none did.
    """

    __slots__ = ("attempts", "wins", "failures", "lost", "median_connect_us")  # noqa: RUF023

    def __init__(
        self,
        attempts: int = 0,
        wins: int = 0,
        failures: int = 0,
        lost: int = 0,
        median_connect_us: int | None = None,
    ) -> None:
        self.attempts = attempts
        self.wins = wins
        self.failures = failures
        self.lost = lost
        self.median_connect_us = median_connect_us


_KEYS = ("host", "address", "family", "ifindex", "gateway", "route_id")
_keys_of = attrgetter(*_KEYS)  # a record's index keys, in _KEYS order, in one C call
_PATH_AT = _KEYS.index("ifindex")  # the path keys (ifindex, gateway, route_id) end _KEYS
# The record, when it was added (clock seconds), and its index keys as they were then: the
# record is the application's too (wsi.caos), so an edit of it must not unhook the index.
_Entry = tuple[Cao, float, tuple[object, ...]]


def _given(values: tuple[object, ...]) -> list[tuple[str, object]]:
    """The filters given, as ``(key, value)``: ``values`` holds one per key of ``_KEYS``, in
    its order, None where that filter is not given."""
    return [(k, v) for k, v in zip(_KEYS, values, strict=True) if v is not None]


class CaoDb:
    """A bounded, multi-indexed database of recent connection attempts (``ctx.cao_db``).

    ``history`` records at most, each kept ``ttl`` seconds (so a path that lost is tried
    again in time). Every key (host, address, family, ifindex, gateway, route id) has a
    dict index, so :meth:`query`, :meth:`stats` and :meth:`forget` cost O(matches)::

        import socket
        import time

        from lwspy import Cao, CaoDb, CaoResult

        db = CaoDb(history=1024, ttl=600, clock=time.monotonic)
        lost = Cao("lab.test", 80, "2001:db8::1", socket.AF_INET6, 0.0, ifindex=3,
                   result=CaoResult.LOST_RACE)
        db.add(lost)                                          # a finished attempt
        print(db.stats(host="lab.test", family=socket.AF_INET6))  # attempts=1, lost=1
        print(db.forget(ifindex=3))                           # the link went down: 1

    The clock is injected (the context's), so the database itself reads no time.
    """

    __slots__ = (
        "_flying",
        "_index",
        "_indexes",
        "_records",
        "_serial",
        "_stale",
        "clock",
        "history",
        "ttl",
    )

    def __init__(self, history: int, ttl: float, clock: Callable[[], float]) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"cao_history must be an int >= 0, not {history!r}")
        self.history = history
        self.ttl = ttl
        self.clock = clock
        self._serial = 0
        self._records: OrderedDict[int, _Entry] = OrderedDict()  # oldest first
        self._index: dict[str, dict[object, dict[int, Cao]]] = {k: {} for k in _KEYS}
        self._indexes = tuple(self._index.values())  # in _KEYS order, as a record's keys
        # Attempts in flight (by id(); the record is held, so the id stays its own), and
        # those a forget() made stale before they ended: they never go in.
        self._flying: dict[int, Cao] = {}
        self._stale: dict[int, Cao] = {}

    def __len__(self) -> int:
        self._expire(self.clock())
        return len(self._records)

    def __iter__(self) -> Iterator[Cao]:
        """Every live record, oldest first."""
        self._expire(self.clock())
        return iter([entry[0] for entry in self._records.values()])

    def started(self, cao: Cao) -> None:
        """An attempt starts: until it ends (:meth:`add`, or :meth:`ended` when it is not to
        be recorded), a :meth:`forget` that matches it keeps it out of the database, since
        the path it took is gone (a route deleted while the SYN was out)."""
        self._flying[id(cao)] = cao

    def ended(self, cao: Cao) -> None:
        """An attempt :meth:`started` ended and is not recorded (abandoned, or it failed
        before it reached the network)."""
        key = id(cao)
        self._flying.pop(key, None)
        self._stale.pop(key, None)

    def add(self, cao: Cao) -> bool:
        """Record a finished attempt (a PENDING one is refused: ValueError). False when a
        :meth:`forget` made it stale while it was in flight: it is not recorded."""
        if cao.result is CaoResult.PENDING:
            raise ValueError("only finished attempts go into the CAO database")
        key = id(cao)
        if self._stale and self._stale.pop(key, None) is not None:
            return False
        self._flying.pop(key, None)
        now = self.clock()
        self._expire(now)
        records = self._records
        if self.history == 0:
            return True
        while len(records) >= self.history:
            self._drop(next(iter(records)))
        self._serial = serial = self._serial + 1
        keys: tuple[object, ...] = _keys_of(cao)
        records[serial] = (cao, now, keys)
        # get, not setdefault(value, {}): that makes an empty dict per key per add
        for index, value in zip(self._indexes, keys):  # noqa: B905 - both are len(_KEYS)
            if value is not None:
                bucket = index.get(value)
                if bucket is None:
                    index[value] = {serial: cao}
                else:
                    bucket[serial] = cao
        return True

    def query(
        self,
        *,
        host: str | None = None,
        address: str | None = None,
        family: int | None = None,
        ifindex: int | None = None,
        gateway: str | None = None,
        route_id: int | None = None,
        limit: int | None = None,
    ) -> list[Cao]:
        """The records matching every filter given, newest first; at most ``limit`` of them
        (the newest), found in O(limit) when one filter is given."""
        given = _given((host, address, family, ifindex, gateway, route_id))
        return [self._records[s][0] for s in self._matching(given, limit)]

    def stats(
        self,
        *,
        host: str | None = None,
        address: str | None = None,
        family: int | None = None,
        ifindex: int | None = None,
        gateway: str | None = None,
        route_id: int | None = None,
    ) -> CaoStats:
        """Counts and the median connect time of the records matching every filter given."""
        given = _given((host, address, family, ifindex, gateway, route_id))
        return summarize([self._records[s][0] for s in self._matching(given)])

    def forget(
        self,
        *,
        ifindex: int | None = None,
        gateway: str | None = None,
        route_id: int | None = None,
        host: str | None = None,
        address: str | None = None,
    ) -> int:
        """Drop the history a change made stale: records matching every filter given.

        At least one filter is needed (ValueError otherwise); returns how many went. The
        netlink role calls it with ``route_id=`` (route deleted or replaced), ``ifindex=``
        (link down or deleted) and ``gateway=`` (a route with that gateway removed); an
        attempt in flight that matches is kept out when it ends (see :meth:`started`); for a
        link-local gateway (``fe80::/10``, ``169.254.0.0/16``) with ``gateway=`` and
        ``ifindex=`` together, since the same link-local address is another router on
        another link.
        """
        given = _given((host, address, None, ifindex, gateway, route_id))
        if not given:
            raise ValueError("forget() needs at least one filter")
        serials = self._matching(given)
        for serial in serials:
            self._drop(serial)
        for key, cao in list(self._flying.items()):  # a handful: the connects under way
            if all(getattr(cao, k) == v for k, v in given):
                del self._flying[key]
                self._stale[key] = cao
        return len(serials)

    def set_path(
        self, cao: Cao, ifindex: int | None, gateway: str | None, route_id: int | None
    ) -> None:
        """Give ``cao`` the path it took, learnt after it started (the route table was not
        known yet): its fields and, if it is recorded, its index entries, so that queries
        and forgets by interface, gateway and route find it from now on."""
        self._expire(self.clock())
        serial = self._serial_of(cao)
        cao.ifindex, cao.gateway, cao.route_id = ifindex, gateway, route_id
        if serial is None:  # in flight, or not kept: add() indexes it as it is then
            return
        _, added, old = self._records[serial]
        keys: tuple[object, ...] = (*old[:_PATH_AT], ifindex, gateway, route_id)
        self._records[serial] = (cao, added, keys)
        indexes = list(self._index.values())[_PATH_AT:]
        for index, before, after in zip(indexes, old[_PATH_AT:], keys[_PATH_AT:], strict=True):
            if before is not None:
                bucket = index[before]
                del bucket[serial]
                if not bucket:
                    del index[before]
            if after is not None:
                bucket = index.setdefault(after, {})
                newest = next(reversed(bucket), 0)
                bucket[serial] = cao
                if newest > serial:  # oldest first, as add() keeps them
                    index[after] = dict(sorted(bucket.items()))

    def discard(self, cao: Cao) -> bool:
        """Drop the history of this one attempt: the path it took changed, though none of
        its keys says so (it started before the netlink role knew the route table). An
        attempt in flight is kept out when it ends, as :meth:`forget` does. True if it was
        recorded."""
        self._expire(self.clock())
        key = id(cao)
        if self._flying.pop(key, None) is not None:
            self._stale[key] = cao
            return False
        serial = self._serial_of(cao)
        if serial is None:
            return False
        self._drop(serial)
        return True

    def _serial_of(self, cao: Cao) -> int | None:
        """The serial of ``cao``'s record (None: not recorded), in O(records of its address)."""
        for serial, rec in self._index["address"].get(cao.address, {}).items():
            if rec is cao:
                return serial
        return None

    def clear(self) -> None:
        """Drop every record (and keep out the attempts in flight)."""
        self._stale.update(self._flying)
        self._flying.clear()
        self._records.clear()
        for index in self._index.values():
            index.clear()

    # -- internals -----------------------------------------------------------------------

    def _matching(self, given: list[tuple[str, object]], limit: int | None = None) -> list[int]:
        """Serials (newest first) of the live records matching every filter ``given``."""
        self._expire(self.clock())
        if not given:
            return list(islice(reversed(self._records), limit))
        # Walk the smallest index bucket; check the other filters on each of its records.
        buckets = []
        for key, value in given:
            bucket = self._index[key].get(value)
            if bucket is None:
                return []
            buckets.append((len(bucket), key, bucket))
        buckets.sort(key=lambda b: b[0])
        _, first_key, smallest = buckets[0]
        rest = [(_KEYS.index(k), v) for k, v in given if k != first_key]
        if not rest:  # one filter: the bucket is the answer
            return list(islice(reversed(smallest), limit))
        records = self._records
        found = (
            serial
            for serial in reversed(smallest)
            if all(records[serial][2][i] == v for i, v in rest)
        )
        return list(islice(found, limit))

    def _expire(self, now: float) -> None:
        records = self._records
        limit = now - self.ttl
        while records:
            serial = next(iter(records))
            if records[serial][1] > limit:
                return
            self._drop(serial)

    def _drop(self, serial: int) -> None:
        keys = self._records.pop(serial)[2]
        for index, value in zip(self._indexes, keys):  # noqa: B905 - both are len(_KEYS)
            if value is not None:
                bucket = index[value]
                del bucket[serial]
                if not bucket:
                    del index[value]


def summarize(caos: list[Cao]) -> CaoStats:
    """The :class:`CaoStats` of a list of finished attempts."""
    st = CaoStats(attempts=len(caos))
    times: list[int] = []
    for cao in caos:
        result = cao.result
        if result is CaoResult.WON:
            st.wins += 1
            times.append(cao.connect_us)
        elif result is CaoResult.LOST_RACE:
            st.lost += 1
        elif result in FAILURES:
            st.failures += 1
    if times:
        times.sort()
        n = len(times)
        mid = n // 2
        st.median_connect_us = times[mid] if n % 2 else (times[mid - 1] + times[mid]) // 2
    return st
