"""SMD (lwspy.system.smd): delivery, filters, late peers, TTL, queue depth, threads."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwspy.system.smd import MAX_PAYLOAD, USER_BASE, Smd, SmdClass, SmdPeer, SmdStats

NET = SmdClass.NETWORK
STATE = SmdClass.SYSTEM_STATE
METRICS = SmdClass.METRICS
UI = SmdClass.INTERACTION


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A callback that records what it gets, tagged with a name."""

    def __init__(self, log: list[tuple[str, SmdClass, float, bytes]], name: str) -> None:
        self.log = log
        self.name = name

    def __call__(self, cls: SmdClass, ts: float, payload: bytes) -> None:
        self.log.append((self.name, cls, ts, payload))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def smd(clock: FakeClock) -> Smd:
    return Smd(clock=clock)


def payloads(log: list[tuple[str, SmdClass, float, bytes]], name: str) -> list[bytes]:
    return [p for n, _, _, p in log if n == name]


# --- delivery --------------------------------------------------------------------------


def test_delivery_passes_class_post_time_and_bytes(smd: Smd, clock: FakeClock) -> None:
    got: list[tuple[str, SmdClass, float, bytes]] = []
    smd.register(Recorder(got, "a"), NET)
    assert smd.post(NET, b"hello") is True
    posted_at = clock.now
    clock.now += 1.5
    assert smd.service() == 1
    assert got == [("a", NET, posted_at, b"hello")]
    assert type(got[0][1]) is SmdClass


def test_never_delivers_inside_post(smd: Smd) -> None:
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    smd.post(NET, b"x")
    assert got == []
    assert smd.pending
    smd.service()
    assert len(got) == 1
    assert not smd.pending


def test_post_order_per_peer_and_registration_order_per_message(smd: Smd) -> None:
    got: list[tuple[str, SmdClass, float, bytes]] = []
    smd.register(Recorder(got, "a"), NET | STATE)
    smd.register(Recorder(got, "b"), NET)
    smd.register(Recorder(got, "c"), STATE)
    for i in range(5):
        smd.post(NET if i % 2 else STATE, str(i))
    assert smd.service() == 10
    assert [(n, p) for n, _, _, p in got] == [
        ("a", b"0"),
        ("c", b"0"),
        ("a", b"1"),
        ("b", b"1"),
        ("a", b"2"),
        ("c", b"2"),
        ("a", b"3"),
        ("b", b"3"),
        ("a", b"4"),
        ("c", b"4"),
    ]


def test_filters_and_multi_class_messages(smd: Smd) -> None:
    got: list[Any] = []
    smd.register(Recorder(got, "net"), NET)
    smd.register(Recorder(got, "metrics"), METRICS)
    assert smd.post(UI, b"nobody") is False
    assert smd.post(NET | METRICS, b"both") is True
    smd.service()
    assert [(n, c, p) for n, c, _, p in got] == [
        ("net", NET | METRICS, b"both"),
        ("metrics", NET | METRICS, b"both"),
    ]


def test_sender_gets_its_own_message(smd: Smd) -> None:
    got: list[bytes] = []

    def sender(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append(payload)
        if payload == b"ping":
            smd.post(NET, b"pong")

    smd.register(sender, NET)
    smd.post(NET, b"ping")
    smd.service()
    smd.service()
    assert got == [b"ping", b"pong"]


def test_int_classes_are_delivered_as_smdclass(smd: Smd) -> None:
    got: list[Any] = []
    smd.register(Recorder(got, "a"), 4)
    assert smd.post(4, b"x") is True
    smd.service()
    assert got[0][1] is NET


# --- late peers, unregister ------------------------------------------------------------


def test_late_peer_neither_receives_nor_pins(smd: Smd) -> None:
    got: list[Any] = []
    early = smd.register(Recorder(got, "early"), NET)
    smd.post(NET, b"before")
    late = smd.register(Recorder(got, "late"), NET)
    smd.post(NET, b"after")
    assert smd.service() == 3
    assert payloads(got, "early") == [b"before", b"after"]
    assert payloads(got, "late") == [b"after"]
    assert not smd.pending
    # the only listener at post time leaves: the message goes nowhere and is not kept
    late.unregister()
    smd.post(NET, b"orphan")
    early.unregister()
    smd.register(Recorder(got, "later"), NET)
    assert smd.service() == 0
    assert not smd.pending
    assert payloads(got, "later") == []


def test_unregistered_before_delivery_gets_nothing(smd: Smd) -> None:
    got: list[Any] = []
    a = smd.register(Recorder(got, "a"), NET)
    smd.register(Recorder(got, "b"), NET)
    smd.post(NET, b"1")
    a.unregister()
    a.unregister()  # idempotent
    assert smd.service() == 1
    assert [n for n, *_ in got] == ["b"]
    assert smd.stats.delivered == 1
    assert not a.registered
    # with its only peer gone, the class has no listener any more
    smd.post(NET, b"2")
    smd.service()
    assert payloads(got, "a") == []


def test_unregister_inside_callbacks(smd: Smd) -> None:
    got: list[str] = []
    peers: dict[str, SmdPeer] = {}

    def first(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append("first:" + payload.decode())
        if payload == b"1":
            peers["third"].unregister()  # a later peer: it misses this very message
            peers["first"].unregister()  # itself

    def second(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append("second:" + payload.decode())

    def third(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append("third:" + payload.decode())  # pragma: no cover - unregistered first

    peers["first"] = smd.register(first, NET)
    peers["second"] = smd.register(second, NET)
    peers["third"] = smd.register(third, NET)
    smd.post(NET, b"1")
    smd.post(NET, b"2")
    assert smd.service() == 3
    assert got == ["first:1", "second:1", "second:2"]


def test_register_inside_callback_takes_effect_for_later_posts(smd: Smd) -> None:
    got: list[Any] = []

    def registrar(cls: SmdClass, ts: float, payload: bytes) -> None:
        if payload == b"1":
            smd.register(Recorder(got, "new"), NET)

    smd.register(registrar, NET)
    smd.post(NET, b"1")
    smd.post(NET, b"2")
    smd.service()
    assert got == []
    smd.post(NET, b"3")
    smd.service()
    assert payloads(got, "new") == [b"3"]


def test_post_inside_callback_waits_for_the_next_service(smd: Smd) -> None:
    depth: list[int] = []

    def chain(cls: SmdClass, ts: float, payload: bytes) -> None:
        depth.append(int(payload))
        if int(payload) < 3:
            smd.post(NET, str(int(payload) + 1))

    smd.register(chain, NET)
    smd.post(NET, b"0")
    assert smd.service() == 1
    assert depth == [0]
    assert smd.pending
    while smd.service():
        pass
    assert depth == [0, 1, 2, 3]


# --- TTL, queue depth, listeners -------------------------------------------------------


def test_ttl_expiry_with_a_fake_clock(clock: FakeClock) -> None:
    smd = Smd(ttl=2.0, clock=clock)
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    smd.post(NET, b"old")
    clock.now += 1.0
    smd.post(NET, b"edge")
    clock.now += 0.5
    smd.post(NET, b"new")
    clock.now += 1.5  # ages: old 3.0, edge 2.0 (not older than the ttl), new 1.5
    assert smd.service() == 2
    assert payloads(got, "a") == [b"edge", b"new"]
    assert smd.stats == SmdStats(posted=3, delivered=2, dropped_full=0, expired=1)


def test_everything_expired(clock: FakeClock) -> None:
    smd = Smd(ttl=0.5, clock=clock)
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    smd.post(NET, b"1")
    smd.post(NET, b"2")
    clock.now += 10
    assert smd.service() == 0
    assert got == []
    assert smd.stats.expired == 2
    assert not smd.pending


def test_queue_full(clock: FakeClock) -> None:
    smd = Smd(queue_depth=3, clock=clock)
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    assert [smd.post(NET, str(i)) for i in range(5)] == [True, True, True, False, False]
    assert smd.stats == SmdStats(posted=3, delivered=0, dropped_full=2, expired=0)
    assert smd.service() == 3
    assert smd.post(NET, b"again") is True
    smd.service()
    assert payloads(got, "a") == [b"0", b"1", b"2", b"again"]


def test_no_listener_returns_false_and_queues_nothing(smd: Smd) -> None:
    assert smd.post(NET, b"x") is False
    smd.register(Recorder([], "a"), METRICS)
    assert smd.post(NET, b"x") is False
    assert smd.post(STATE, {"state": "OPERATIONAL"}) is False
    assert not smd.pending
    assert smd.stats == SmdStats()


def test_stats_count_one_delivery_per_peer_per_message(smd: Smd) -> None:
    for name in "abc":
        smd.register(Recorder([], name), NET)
    smd.register(Recorder([], "d"), METRICS)
    smd.post(NET, b"1")
    smd.post(NET | METRICS, b"2")
    smd.post(METRICS, b"3")
    stats = smd.stats
    assert stats.posted == 3
    assert smd.service() == 8
    assert smd.stats == SmdStats(posted=3, delivered=8, dropped_full=0, expired=0)
    assert stats.delivered == 0  # a snapshot


def test_raising_callback_is_logged_and_others_still_receive(
    smd: Smd, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Any] = []

    def boom(cls: SmdClass, ts: float, payload: bytes) -> None:
        raise RuntimeError("boom")

    smd.register(Recorder(got, "a"), NET)
    smd.register(boom, NET)
    smd.register(Recorder(got, "c"), NET)
    smd.post(NET, b"1")
    smd.post(NET, b"2")
    with caplog.at_level(logging.ERROR, logger="lwspy"):
        assert smd.service() == 6
    assert [(n, p) for n, _, _, p in got] == [("a", b"1"), ("c", b"1"), ("a", b"2"), ("c", b"2")]
    records = [r for r in caplog.records if r.name == "lwspy"]
    assert len(records) == 2
    assert records[0].exc_info is not None
    assert "boom" in caplog.text
    assert "Traceback" in caplog.text


def test_base_exception_keeps_the_rest_of_the_batch(smd: Smd) -> None:
    got: list[bytes] = []

    def stop(cls: SmdClass, ts: float, payload: bytes) -> None:
        got.append(payload)
        if payload == b"2":
            raise KeyboardInterrupt

    smd.register(stop, NET)
    for i in range(1, 5):
        smd.post(NET, str(i))
    with pytest.raises(KeyboardInterrupt):
        smd.service()
    assert got == [b"1", b"2"]
    assert smd.stats.posted == 4
    assert smd.stats.delivered == 2
    assert smd.pending
    smd.post(NET, b"5")
    assert smd.service() == 3
    assert got == [b"1", b"2", b"3", b"4", b"5"]
    assert smd.stats == SmdStats(posted=5, delivered=5, dropped_full=0, expired=0)


def test_wake_is_called_when_the_queue_becomes_non_empty(clock: FakeClock) -> None:
    wakes: list[int] = []
    smd = Smd(clock=clock, wake=lambda: wakes.append(1), queue_depth=2)
    smd.post(NET, b"nobody listens")
    assert wakes == []
    smd.register(Recorder([], "a"), NET)
    smd.post(NET, b"1")
    smd.post(NET, b"2")
    smd.post(NET, b"full")
    assert len(wakes) == 1
    smd.service()
    smd.post(NET, b"3")
    assert len(wakes) == 2


def test_service_on_an_empty_queue(smd: Smd) -> None:
    assert not smd.pending
    assert smd.service() == 0


# --- payloads and classes --------------------------------------------------------------


def test_payload_size_limit(smd: Smd) -> None:
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    assert MAX_PAYLOAD == 384
    assert smd.post(NET, b"x" * 384) is True
    with pytest.raises(ValueError, match="385 bytes"):
        smd.post(NET, b"x" * 385)
    assert smd.post(NET, "é" * 192) is True  # 384 bytes of UTF-8
    with pytest.raises(ValueError, match="386 bytes"):
        smd.post(NET, "é" * 193)
    big = {"k": "v" * 376}  # {"k":"..."} is 8 bytes of wrapping
    assert len(json.dumps(big, separators=(",", ":"))) == 384
    assert smd.post(NET, big) is True
    with pytest.raises(ValueError, match="385 bytes"):
        smd.post(NET, {"k": "v" * 377})
    smd.service()
    assert [len(p) for p in payloads(got, "a")] == [384, 384, 384]


def test_payload_encodings(smd: Smd) -> None:
    got: list[Any] = []
    smd.register(Recorder(got, "a"), NET)
    smd.post(NET, {"type": "cpd", "result": "OK", "n": [1, 2], "ü": None})
    smd.post(NET, "naïve")
    buf = bytearray(b"mutable")
    smd.post(NET, buf)
    buf[:] = b"changed"
    smd.post(NET, memoryview(b"view"))
    smd.service()
    assert payloads(got, "a") == [
        '{"type":"cpd","result":"OK","n":[1,2],"ü":null}'.encode(),
        "naïve".encode(),
        b"mutable",
        b"view",
    ]
    assert all(type(p) is bytes for p in payloads(got, "a"))


@pytest.mark.parametrize(
    ("cls", "exc", "match"),
    [
        ("NETWORK", TypeError, "SmdClass or int, not str"),
        (None, TypeError, "not NoneType"),
        (4.0, TypeError, "not float"),
        (True, TypeError, "not bool"),
        (False, TypeError, "not bool"),
        ([4], TypeError, "not list"),
        (0, ValueError, "non-empty"),
        (-4, ValueError, "non-empty"),
        (SmdClass(0), ValueError, "non-empty"),
        (1 << 4, ValueError, "reserved bits 0x10"),
        (NET | (1 << 23), ValueError, "reserved bits 0x800000"),
    ],
)
def test_bad_classes(smd: Smd, cls: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        smd.post(cls, b"x")  # nobody listens: the argument error still comes first
    smd.register(Recorder([], "all"), NET | STATE | METRICS | UI)
    with pytest.raises(exc, match=match):
        smd.post(cls, b"x")
    with pytest.raises(exc, match=match):
        smd.register(Recorder([], "bad"), cls)


@pytest.mark.parametrize(
    ("payload", "exc", "match"),
    [
        (None, TypeError, "bytes, str or dict, not NoneType"),
        (42, TypeError, "not int"),
        ([1, 2], TypeError, "not list"),
        ({"s": {1, 2}}, TypeError, "not JSON-able"),
        ({(1, 2): 1}, TypeError, "not JSON-able"),
        ({"x": float("nan")}, ValueError, "not JSON compliant"),
        ("\ud800", ValueError, "surrogate"),
        (b"x" * 385, ValueError, "385 bytes"),
    ],
)
def test_bad_payloads_raise_before_any_queue_or_listener_check(
    clock: FakeClock, payload: Any, exc: type[Exception], match: str
) -> None:
    smd = Smd(queue_depth=1, clock=clock)
    with pytest.raises(exc, match=match):
        smd.post(NET, payload)  # no listener
    smd.register(Recorder([], "a"), NET)
    assert smd.post(NET, b"fill") is True
    with pytest.raises(exc, match=match):
        smd.post(NET, payload)  # queue full
    assert smd.stats.dropped_full == 0


def test_user_classes(smd: Smd) -> None:
    assert USER_BASE == 1 << 24
    user0 = SmdClass(USER_BASE)
    user1 = SmdClass(USER_BASE << 1)
    assert int(user0) == 1 << 24
    assert int(user0 | NET) == (1 << 24) | 4
    far = SmdClass(1 << 40)
    got: list[Any] = []
    smd.register(Recorder(got, "u0"), user0)
    smd.register(Recorder(got, "u1-net"), user1 | NET)
    smd.register(Recorder(got, "far"), far)
    assert smd.post(user0, b"a") is True
    assert smd.post(USER_BASE << 1, b"b") is True
    assert smd.post(NET, b"c") is True
    assert smd.post(1 << 40, b"d") is True
    assert smd.post(1 << 41, b"e") is False
    smd.service()
    assert [(n, int(c), p) for n, c, _, p in got] == [
        ("u0", 1 << 24, b"a"),
        ("u1-net", 1 << 25, b"b"),
        ("u1-net", 4, b"c"),
        ("far", 1 << 40, b"d"),
    ]


def test_many_distinct_classes(smd: Smd) -> None:
    # more classes than the route cache keeps: the uncached ones still work
    got: list[Any] = []
    smd = Smd(queue_depth=2000, clock=FakeClock())
    smd.register(Recorder(got, "a"), SmdClass(((1 << 11) - 1) << 24))
    for k in range(1, 1200):
        assert smd.post(k << 24, b"")
    assert smd.post((1 << 11) << 24, b"") is False
    assert smd.service() == 1199
    assert [int(c) >> 24 for _, c, _, _ in got] == list(range(1, 1200))


def test_register_rejects_non_callables(smd: Smd) -> None:
    with pytest.raises(TypeError, match="must be callable"):
        smd.register("not a function", NET)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"queue_depth": 0}, ValueError, "queue_depth must be >= 1"),
        ({"queue_depth": True}, TypeError, "queue_depth must be an int"),
        ({"queue_depth": 4.0}, TypeError, "queue_depth must be an int"),
        ({"ttl": 0}, ValueError, "ttl must be finite and > 0"),
        ({"ttl": float("inf")}, ValueError, "ttl must be finite"),
        ({"ttl": float("nan")}, ValueError, "ttl must be finite"),
        ({"ttl": "2"}, TypeError, "ttl must be a number"),
        ({"ttl": False}, TypeError, "ttl must be a number"),
        ({"clock": 1.0}, TypeError, "must be callable"),
        ({"wake": None}, TypeError, "must be callable"),
    ],
)
def test_bad_constructor_arguments(
    kwargs: dict[str, Any], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        Smd(**kwargs)


def test_properties_and_reprs(smd: Smd) -> None:
    assert Smd().queue_depth == 40
    assert Smd().ttl == 2.0
    s = Smd(queue_depth=7, ttl=3)
    assert (s.queue_depth, s.ttl) == (7, 3.0)
    peer = smd.register(Recorder([], "a"), NET | STATE)
    assert peer.classes == NET | STATE
    assert peer.registered
    assert "registered" in repr(peer)
    smd.post(NET, b"x")
    assert repr(smd) == "<Smd peers=1 queued=1/40>"
    peer.unregister()
    assert "unregistered" in repr(peer)
    assert isinstance(smd.stats, SmdStats)


def test_default_clock_and_wake() -> None:
    smd = Smd()
    got: list[float] = []
    smd.register(lambda c, ts, p: got.append(ts), NET)
    before = time.monotonic()
    smd.post(NET, b"x")
    after = time.monotonic()
    smd.service()
    assert before <= got[0] <= after


# --- threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [10_000, 16])
def test_two_threads_post_while_the_loop_services(depth: int) -> None:
    per_thread = 2_000
    event = threading.Event()
    smd = Smd(queue_depth=depth, wake=event.set)
    got: dict[int, list[int]] = {0: [], 1: []}

    def receive(cls: SmdClass, ts: float, payload: bytes) -> None:
        tid, seq = payload.split(b":")
        got[int(tid)].append(int(seq))

    smd.register(receive, NET | METRICS)
    start = threading.Barrier(3)

    def poster(tid: int) -> None:
        start.wait()
        cls = NET if tid == 0 else METRICS
        for seq in range(per_thread):
            payload = f"{tid}:{seq}".encode()
            while not smd.post(cls, payload):  # full: let the loop drain, then retry
                time.sleep(0)

    threads = [threading.Thread(target=poster, args=(tid,)) for tid in (0, 1)]
    for t in threads:
        t.start()
    start.wait()
    give_up = time.monotonic() + 60  # a hang guard, not a timing assertion
    while any(t.is_alive() for t in threads) or smd.pending:
        event.wait(0.01)
        event.clear()
        smd.service()
        assert time.monotonic() < give_up, "posters did not finish"
    for t in threads:
        t.join()
    assert got[0] == list(range(per_thread))
    assert got[1] == list(range(per_thread))
    stats = smd.stats
    assert stats.posted == stats.delivered == 2 * per_thread
    assert stats.expired == 0


# --- property test against a reference model -------------------------------------------


@dataclass
class ModelPeer:
    name: int
    classes: int
    kill: int | None  # unregisters this peer when it receives a message
    echo: int | None  # posts this class (payload b"echo") on a non-echo message
    live: bool = True


@dataclass
class Model:
    """What SMD should do, written as plainly as possible."""

    depth: int
    ttl: float
    peers: list[ModelPeer] = field(default_factory=list)
    queue: list[tuple[int, float, bytes, list[ModelPeer]]] = field(default_factory=list)
    log: list[tuple[int, int, bytes]] = field(default_factory=list)
    stats: SmdStats = field(default_factory=SmdStats)

    def post(self, cls: int, payload: bytes, now: float) -> bool:
        to = [p for p in self.peers if p.live and p.classes & cls]
        if not to:
            return False
        if len(self.queue) >= self.depth:
            self.stats.dropped_full += 1
            return False
        self.queue.append((cls, now, payload, to))
        self.stats.posted += 1
        return True

    def service(self, now: float) -> int:
        batch, self.queue = self.queue, []
        n = 0
        for cls, ts, payload, to in batch:
            if now - ts > self.ttl:
                self.stats.expired += 1
                continue
            for p in to:
                if p.live:
                    n += 1
                    self.log.append((p.name, cls, payload))
                    if p.kill is not None and p.kill < len(self.peers):
                        self.peers[p.kill].live = False
                    if p.echo is not None and payload != b"echo":
                        self.post(p.echo, b"echo", now)
        self.stats.delivered += n
        return n


CLASSES = [1, 2, 4, 8, 1 << 24, 5, 1 | (1 << 24)]
ops = st.one_of(
    st.tuples(
        st.just("register"),
        st.sampled_from(CLASSES),
        st.none() | st.integers(0, 7),
        st.none() | st.sampled_from(CLASSES),
    ),
    st.tuples(st.just("unregister"), st.integers(0, 7)),
    st.tuples(st.just("post"), st.sampled_from(CLASSES)),
    st.tuples(st.just("service")),
    st.tuples(st.just("tick"), st.integers(0, 3)),
)


@settings(max_examples=300, deadline=None)
@given(
    depth=st.integers(1, 6),
    ttl=st.sampled_from([1.0, 2.0, 5.0]),
    script=st.lists(ops, max_size=60),
)
def test_random_interleavings_match_the_model(
    depth: int, ttl: float, script: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock(0.0)
    smd = Smd(queue_depth=depth, ttl=ttl, clock=clock)
    model = Model(depth, ttl)
    log: list[tuple[int, int, bytes]] = []
    peers: list[SmdPeer] = []
    seq = 0

    def make_callback(name: int, kill: int | None, echo: int | None) -> Any:
        def callback(cls: SmdClass, ts: float, payload: bytes) -> None:
            log.append((name, int(cls), payload))
            if kill is not None and kill < len(peers):
                peers[kill].unregister()
            if echo is not None and payload != b"echo":
                smd.post(echo, b"echo")

        return callback

    for op in script:
        if op[0] == "register" and len(peers) < 8:
            _, cls, kill, echo = op
            name = len(peers)
            peers.append(smd.register(make_callback(name, kill, echo), cls))
            model.peers.append(ModelPeer(name, cls, kill, echo))
        elif op[0] == "unregister" and op[1] < len(peers):
            peers[op[1]].unregister()
            model.peers[op[1]].live = False
        elif op[0] == "post":
            seq += 1
            payload = str(seq).encode()
            assert smd.post(op[1], payload) == model.post(op[1], payload, clock.now)
        elif op[0] == "service":
            assert smd.service() == model.service(clock.now)
        elif op[0] == "tick":
            clock.now += op[1]
        assert smd.pending == bool(model.queue)
    assert smd.service() == model.service(clock.now)
    assert log == model.log
    assert smd.stats == model.stats
