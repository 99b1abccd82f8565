"""CaoDb against a naive model (hypothesis), CaoStats, Conmon.as_dict."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lwspy.net.cao import Cao, CaoDb, CaoResult, Conmon, summarize
from tests.conftest import FakeClock

HOSTS = ["a.test", "b.test"]
ADDRS = ["198.51.100.1", "198.51.100.2", "2001:db8::1", "2001:db8::2"]
GWS = [None, "198.51.100.254", "2001:db8::fe"]
RESULTS = [r for r in CaoResult if r is not CaoResult.PENDING]


def _cao(
    host: str,
    address: str,
    ifindex: int | None,
    gateway: str | None,
    route_id: int | None,
    result: CaoResult,
    connect_us: int,
) -> Cao:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return Cao(
        host,
        80,
        address,
        int(family),
        started=0.0,
        ifindex=ifindex,
        gateway=gateway,
        route_id=route_id,
        result=result,
        connect_us=connect_us,
    )


caos = st.builds(
    _cao,
    st.sampled_from(HOSTS),
    st.sampled_from(ADDRS),
    st.sampled_from([None, 1, 2]),
    st.sampled_from(GWS),
    st.sampled_from([None, 10, 11, 12]),
    st.sampled_from(RESULTS),
    st.integers(0, 5000),
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "host": st.sampled_from(HOSTS),
        "address": st.sampled_from(ADDRS),
        "family": st.sampled_from([int(socket.AF_INET), int(socket.AF_INET6)]),
        "ifindex": st.sampled_from([1, 2]),
        "gateway": st.sampled_from([g for g in GWS if g is not None]),
        "route_id": st.sampled_from([10, 11, 12]),
    },
)


class CaoDbModel(RuleBasedStateMachine):
    """Every operation on the database agrees with a list filtered by hand."""

    @initialize(history=st.integers(0, 12), ttl=st.sampled_from([1.0, 5.0, 600.0]))
    def setup(self, history: int, ttl: float) -> None:
        self.clock = FakeClock()
        self.db = CaoDb(history=history, ttl=ttl, clock=self.clock)
        self.history, self.ttl = history, ttl
        self.model: list[tuple[Cao, float]] = []

    def _live(self) -> list[tuple[Cao, float]]:
        now = self.clock.now
        self.model = [(c, t) for c, t in self.model if t > now - self.ttl]
        return self.model

    @staticmethod
    def _match(cao: Cao, want: dict[str, Any]) -> bool:
        return all(getattr(cao, k) == v for k, v in want.items())

    @rule(cao=caos)
    def add(self, cao: Cao) -> None:
        self.db.add(cao)
        live = self._live()
        if self.history:
            live.append((cao, self.clock.now))
            del live[: max(0, len(live) - self.history)]

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0]))
    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(want=filters, limit=st.sampled_from([None, 0, 1, 3]))
    def query(self, want: dict[str, Any], limit: int | None) -> None:
        expect = [c for c, _ in reversed(self._live()) if self._match(c, want)]
        got = self.db.query(**want)
        assert [id(c) for c in got] == [id(c) for c in expect]
        newest = self.db.query(**want, limit=limit)
        assert [id(c) for c in newest] == [id(c) for c in expect[:limit]]
        assert self.db.stats(**want) == summarize(expect)

    @rule(want=filters)
    def forget(self, want: dict[str, Any]) -> None:
        want.pop("family", None)
        if not want:
            with pytest.raises(ValueError, match="at least one filter"):
                self.db.forget()
            return
        gone = [c for c, _ in self._live() if self._match(c, want)]
        assert self.db.forget(**want) == len(gone)
        self.model = [(c, t) for c, t in self.model if not self._match(c, want)]

    @rule(
        i=st.integers(0, 40),
        ifindex=st.sampled_from([None, 1, 2]),
        gateway=st.sampled_from(GWS),
        route_id=st.sampled_from([None, 10, 11, 12]),
        unrecorded=caos,
    )
    def set_path(
        self,
        i: int,
        ifindex: int | None,
        gateway: str | None,
        route_id: int | None,
        unrecorded: Cao,
    ) -> None:
        # A path learnt late (the cold plug's table): a recorded CAO is found by it from
        # now on, newest first as ever; one not recorded only gets the fields.
        live = self._live()
        cao = live[i % len(live)][0] if live and i < 30 else unrecorded
        self.db.set_path(cao, ifindex, gateway, route_id)
        assert (cao.ifindex, cao.gateway, cao.route_id) == (ifindex, gateway, route_id)

    @invariant()
    def same_records(self) -> None:
        if hasattr(self, "db"):
            assert [id(c) for c in self.db] == [id(c) for c, _ in self._live()]
            assert len(self.db) == len(self.model)


TestCaoDbModel = CaoDbModel.TestCase


def test_stats_count_wins_failures_and_lost_races_and_take_the_median_of_wins() -> None:
    clock = FakeClock()
    db = CaoDb(history=10, ttl=60, clock=clock)
    for result, us in [
        (CaoResult.WON, 300),
        (CaoResult.WON, 100),
        (CaoResult.LOST_RACE, 9000),
        (CaoResult.REFUSED, 5),
        (CaoResult.TIMED_OUT, 5),
        (CaoResult.WON, 200),
    ]:
        db.add(_cao("a.test", "2001:db8::1", 3, None, 7, result, us))
    st6 = db.stats(host="a.test", family=socket.AF_INET6)
    assert (st6.attempts, st6.wins, st6.failures, st6.lost) == (6, 3, 2, 1)
    assert st6.median_connect_us == 200
    db.add(_cao("a.test", "2001:db8::1", 3, None, 7, CaoResult.WON, 400))
    assert db.stats(route_id=7).median_connect_us == 250  # even count: the mean of the middle two
    assert db.stats(family=socket.AF_INET).attempts == 0
    assert db.stats(host="nobody.test").median_connect_us is None
    assert db.forget(route_id=7) == 7 and len(db) == 0


def test_records_expire_after_the_ttl_and_the_bound_drops_the_oldest() -> None:
    clock = FakeClock()
    db = CaoDb(history=2, ttl=10, clock=clock)
    first = _cao("a.test", "198.51.100.1", 1, None, None, CaoResult.WON, 1)
    db.add(first)
    clock.advance(6)
    second = _cao("a.test", "198.51.100.2", 1, None, None, CaoResult.WON, 1)
    third = _cao("a.test", "198.51.100.2", 1, None, None, CaoResult.REFUSED, 1)
    db.add(second)
    db.add(third)  # the bound: the first goes
    assert db.query(host="a.test") == [third, second]
    assert db.query(address="198.51.100.1") == []
    clock.advance(5)
    assert db.query() == [third, second]
    clock.advance(5)  # both were added 10 s ago
    assert db.query() == [] and len(db) == 0
    db.clear()


def test_an_edited_record_does_not_unhook_the_index() -> None:
    """wsi.caos hands out the records the database holds: an application that edits one
    (here its address and route id) changes nothing the database found it by."""
    db = CaoDb(history=2, ttl=10, clock=FakeClock())
    first = _cao("a.test", "198.51.100.1", 1, None, 7, CaoResult.WON, 1)
    db.add(first)
    first.address, first.route_id, first.ifindex = "198.51.100.2", 8, None
    assert db.query(address="198.51.100.1") == [first]
    assert db.query(address="198.51.100.1", ifindex=1, route_id=7) == [first]
    assert db.query(address="198.51.100.2") == [] and db.query(route_id=8) == []
    db.add(_cao("a.test", "198.51.100.2", 1, None, None, CaoResult.WON, 1))
    db.add(_cao("a.test", "198.51.100.2", 1, None, None, CaoResult.WON, 1))  # evicts first
    assert db.query(address="198.51.100.1") == [] and len(db) == 2
    assert db.forget(route_id=7) == 0 and db.forget(ifindex=1) == 2 and len(db) == 0


def test_a_forget_while_an_attempt_is_in_flight_keeps_it_out() -> None:
    db = CaoDb(history=8, ttl=10, clock=FakeClock())
    old = _cao("a.test", "198.51.100.1", 1, None, 7, CaoResult.PENDING, 0)
    other = _cao("a.test", "198.51.100.2", 2, None, 8, CaoResult.PENDING, 0)
    gone = _cao("a.test", "198.51.100.3", 1, None, 7, CaoResult.PENDING, 0)
    for cao in (old, other, gone):
        db.started(cao)
    assert db.forget(route_id=7) == 0  # nothing recorded yet; two in flight took route 7
    old.result = other.result = CaoResult.TIMED_OUT
    assert db.add(old) is False and db.add(other) is True
    assert db.query() == [other]
    db.ended(gone)  # abandoned: nothing kept of it
    assert db.add(old) is True  # once ended, the record is no more marked
    assert db._flying == {} and db._stale == {}
    late = _cao("a.test", "198.51.100.4", 3, None, 9, CaoResult.PENDING, 0)
    db.started(late)
    db.clear()  # forget all: what is in flight too
    late.result = CaoResult.WON
    assert db.add(late) is False and len(db) == 0


def test_add_refuses_a_pending_attempt_and_a_bad_bound() -> None:
    db = CaoDb(history=4, ttl=1, clock=FakeClock())
    with pytest.raises(ValueError, match="finished"):
        db.add(Cao("a.test", 80, "198.51.100.1", int(socket.AF_INET), started=0.0))
    with pytest.raises(ValueError, match="cao_history"):
        CaoDb(history=-1, ttl=1, clock=FakeClock())


def test_conmon_as_dict_uses_lws_conmon_json_names() -> None:
    cm = Conmon(
        peer=("2001:db8::1", 443),
        dns_us=1234,
        dns_disposition="NXDOMAIN",
        dns_results=["2001:db8::1", "198.51.100.1"],
        sockconn_us=99,
        protocol_specific={"http": {"response": 204}},
    )
    assert cm.as_dict() == {
        "peer": "2001:db8::1",
        "dns_us": 1234,
        "dns_disp": 4,
        "sockconn_us": 99,
        "tls_us": 0,
        "txn_resp_us": 0,
        "dns": ["2001:db8::1", "198.51.100.1"],
        "prot_specific": {"http": {"response": 204}},
    }
    assert Conmon(dns_disposition="SERVER_UNREACHABLE").as_dict()["peer"] == ""
    assert Conmon(dns_disposition="SERVER_UNREACHABLE").as_dict()["dns_disp"] == 2


def test_a_path_learnt_late_refiles_a_record_in_age_order() -> None:
    db = CaoDb(history=8, ttl=10, clock=FakeClock())
    older = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.WON, 1)
    newer = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.REFUSED, 1)
    known = _cao("a.test", "198.51.100.1", 2, None, 7, CaoResult.WON, 1)
    for cao in (older, newer, known):
        db.add(cao)
    db.set_path(newer, 2, "198.51.100.254", 7)
    db.set_path(older, 2, "198.51.100.254", 7)
    assert db.query(route_id=7) == [known, newer, older]
    assert db.query(ifindex=2, gateway="198.51.100.254") == [newer, older]
    assert db.forget(gateway="198.51.100.254") == 2 and db.query() == [known]
    flying = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.PENDING, 0)
    db.started(flying)
    db.set_path(flying, 3, None, 9)  # in flight: add() files it by the path it has then
    flying.result = CaoResult.WON
    db.add(flying)
    assert db.query(route_id=9) == [flying] and db.query(ifindex=3) == [flying]


def test_discard_drops_one_record_or_keeps_one_in_flight_out() -> None:
    db = CaoDb(history=8, ttl=10, clock=FakeClock())
    one = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.WON, 1)
    two = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.REFUSED, 1)
    for cao in (one, two):
        db.add(cao)
    assert db.discard(one) and db.query() == [two]
    assert not db.discard(one)  # not recorded (any more): nothing to drop
    flying = _cao("a.test", "198.51.100.1", None, None, None, CaoResult.PENDING, 0)
    db.started(flying)
    assert not db.discard(flying)
    flying.result = CaoResult.WON
    assert not db.add(flying) and db.query() == [two]  # its path went while it flew
