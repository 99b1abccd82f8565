"""RFC 6724 source and destination selection against the RFC's §10 examples; RFC 8305
interleaving; the CAO database's rerank."""

from __future__ import annotations

import socket

import pytest

from lwspy.net.sort import (
    RANK_DEMOTED,
    RANK_NO_ROUTE,
    RANK_UNKNOWN,
    RANK_WON,
    Source,
    interleave,
    label,
    order,
    precedence,
    rerank,
    scope,
    select_source,
    sort_destinations,
)

S = Source

# RFC 6724 §10.1: (destination, candidate sources, the source chosen)
SOURCE_EXAMPLES = [
    ("2001:db8:1::1", [S("2001:db8:3::1"), S("fe80::1")], "2001:db8:3::1"),  # scope
    ("ff05::1", [S("2001:db8:3::1"), S("fe80::1")], "2001:db8:3::1"),  # scope
    ("2001:db8:1::1", [S("2001:db8:1::1", deprecated=True), S("2001:db8:2::1")], "2001:db8:1::1"),
    ("fe80::1", [S("fe80::2", deprecated=True), S("2001:db8:1::1")], "fe80::2"),  # scope
    ("2001:db8:1::1", [S("2001:db8:1::2"), S("2001:db8:3::2")], "2001:db8:1::2"),  # prefix
    (
        "2001:db8:1::1",
        [S("2001:db8:1::2", care_of=True), S("2001:db8:3::2", home=True)],
        "2001:db8:3::2",
    ),  # home address
    (
        "2002:c633:6401::1",
        [S("2002:c633:6401::d5e3:7953:13eb:22e8", temporary=True), S("2001:db8:1::2")],
        "2002:c633:6401::d5e3:7953:13eb:22e8",
    ),  # matching label
    (
        "2001:db8:1::d5e3:0:0:1",
        [S("2001:db8:1::2"), S("2001:db8:1::d5e3:7953:13eb:22e8", temporary=True)],
        "2001:db8:1::d5e3:7953:13eb:22e8",
    ),  # temporary
]


@pytest.mark.parametrize(("dest", "cands", "chosen"), SOURCE_EXAMPLES)
def test_rfc6724_section_10_1_source_examples(dest: str, cands: list[Source], chosen: str) -> None:
    got = select_source(dest, cands)
    assert got is not None and got.address == chosen
    got = select_source(dest, list(reversed(cands)))  # the order given does not decide
    assert got is not None and got.address == chosen


# RFC 6724 §10.2: (candidate sources, destinations, the sorted result)
DEST_EXAMPLES = [
    (  # prefer matching scope
        [S("2001:db8:1::2"), S("fe80::1"), S("169.254.13.78")],
        ["2001:db8:1::1", "198.51.100.121"],
        ["2001:db8:1::1", "198.51.100.121"],
    ),
    (  # prefer matching scope
        [S("fe80::1"), S("198.51.100.117")],
        ["2001:db8:1::1", "198.51.100.121"],
        ["198.51.100.121", "2001:db8:1::1"],
    ),
    (  # prefer higher precedence
        [S("2001:db8:1::2"), S("fe80::1"), S("10.1.2.4")],
        ["2001:db8:1::1", "10.1.2.3"],
        ["2001:db8:1::1", "10.1.2.3"],
    ),
    (  # prefer smaller scope
        [S("2001:db8:1::2"), S("fe80::2")],
        ["2001:db8:1::1", "fe80::1"],
        ["fe80::1", "2001:db8:1::1"],
    ),
    (  # prefer home address
        [
            S("2001:db8:1::2", care_of=True),
            S("2001:db8:3::1", home=True),
            S("fe80::2", care_of=True),
        ],
        ["2001:db8:1::1", "fe80::1"],
        ["2001:db8:1::1", "fe80::1"],
    ),
    (  # prefer matching label
        [S("2002:c633:6401::2"), S("fe80::2")],
        ["2001:db8:1::1", "2002:c633:6401::1"],
        ["2002:c633:6401::1", "2001:db8:1::1"],
    ),
    (  # prefer higher precedence
        [S("2002:c633:6401::2"), S("2001:db8:1::2"), S("fe80::2")],
        ["2002:c633:6401::1", "2001:db8:1::1"],
        ["2001:db8:1::1", "2002:c633:6401::1"],
    ),
]


@pytest.mark.parametrize(("sources", "dests", "expect"), DEST_EXAMPLES)
def test_rfc6724_section_10_2_destination_examples(
    sources: list[Source], dests: list[str], expect: list[str]
) -> None:
    for given in (dests, list(reversed(dests))):
        pairs = [(d, select_source(d, sources)) for d in given]
        assert sort_destinations(pairs) == expect


def test_the_home_address_example_picks_the_home_source() -> None:
    sources = [S("2001:db8:1::2", care_of=True), S("2001:db8:3::1", home=True)]
    got = select_source("2001:db8:1::1", sources)
    assert got is not None and got.address == "2001:db8:3::1"
    both = [S("2001:db8:1::2", home=True), S("2001:db8:1::3", home=True, care_of=True)]
    got = select_source("2001:db8:1::1", both)
    assert got is not None and got.address == "2001:db8:1::3"


def test_the_policy_table_is_lws_s() -> None:
    cases = {
        "::1": (50, 0),
        "2001:db8::1": (40, 1),
        "198.51.100.1": (35, 4),
        "2002:c633:6401::1": (30, 2),
        "2001:0:4136:e378::1": (5, 5),
        "fd00::1": (3, 13),
        "::198.51.100.1": (1, 3),
        "fec0::1": (1, 11),
        "3ffe::1": (1, 12),
    }
    for addr, (prec, lab) in cases.items():
        assert (precedence(addr), label(addr)) == (prec, lab), addr


def test_scopes() -> None:
    assert [scope(a) for a in ("fe80::1%va", "::1", "fec0::1", "ff05::1", "ff0e::1")] == [
        2,
        2,
        5,
        5,
        14,
    ]
    assert [scope(a) for a in ("127.0.0.1", "169.254.1.1", "198.51.100.1", "fd00::1")] == [
        2,
        2,
        14,
        14,
    ]


def test_unusable_destinations_go_after_usable_ones_and_stay() -> None:
    got = sort_destinations([("2001:db8::1", None), ("198.51.100.1", S("198.51.100.9"))])
    assert got == ["198.51.100.1", "2001:db8::1"]
    both_dead = sort_destinations([("198.51.100.1", None), ("2001:db8::1", None)])
    assert both_dead == ["2001:db8::1", "198.51.100.1"]  # Rule 6 still orders them


def test_rule_9_longest_prefix_for_ipv6_only() -> None:
    src = [S("2001:db8:1::2", prefix_len=48)]
    got = sort_destinations(
        [(d, select_source(d, src)) for d in ("2001:db8:9::1", "2001:db8:1::1")]
    )
    assert got == ["2001:db8:1::1", "2001:db8:9::1"]
    v4src = [S("198.51.100.2", prefix_len=24)]
    v4 = ["203.0.113.1", "198.51.100.1"]  # IPv4: the given order stays (round robin)
    assert sort_destinations([(d, select_source(d, v4src)) for d in v4]) == v4


def test_source_selection_prefers_the_outgoing_interface_and_the_family() -> None:
    cands = [S("2001:db8:1::2", ifindex=1), S("2001:db8:1::3", ifindex=2), S("198.51.100.2")]
    got = select_source("2001:db8:1::1", cands, out_ifindex=2)
    assert got is not None and got.address == "2001:db8:1::3"
    got = select_source("198.51.100.1", cands)
    assert got is not None and got.address == "198.51.100.2"
    assert select_source("203.0.113.1", cands[:2]) is None


def test_interleave_alternates_families_from_the_first() -> None:
    assert interleave([]) == []
    assert interleave(["198.51.100.1", "198.51.100.2", "2001:db8::1"]) == [
        "198.51.100.1",
        "2001:db8::1",
        "198.51.100.2",
    ]
    assert interleave(["2001:db8::1", "2001:db8::2"]) == ["2001:db8::1", "2001:db8::2"]


def test_interleave_after_an_attempt_starts_with_the_other_family() -> None:
    v6 = int(socket.AF_INET6)
    v4 = int(socket.AF_INET)
    mixed = ["2001:db8::2", "2001:db8::3", "198.51.100.1"]
    assert interleave(mixed, after_family=v6) == ["198.51.100.1", "2001:db8::2", "2001:db8::3"]
    assert interleave(mixed, after_family=v4) == ["2001:db8::2", "198.51.100.1", "2001:db8::3"]
    only6 = ["2001:db8::2", "2001:db8::3"]
    assert interleave(only6, after_family=v6) == only6  # no other family: as it was


def test_rerank_demotes_and_never_drops() -> None:
    ranks = {"a": RANK_DEMOTED, "b": RANK_UNKNOWN, "c": RANK_WON, "d": RANK_NO_ROUTE, "e": 1}
    assert rerank(["d", "a", "b", "c", "e"], ranks.__getitem__) == ["c", "b", "e", "a", "d"]


def test_order_runs_the_three_steps() -> None:
    sources = [S("2001:db8:1::1"), S("198.51.100.1")]
    addrs = ["198.51.100.7", "198.51.100.8", "2001:db8:2::7", "2001:db8:2::8"]
    no_history = order(addrs, lambda a: select_source(a, sources), lambda a: RANK_UNKNOWN)
    assert no_history == ["2001:db8:2::7", "198.51.100.7", "2001:db8:2::8", "198.51.100.8"]
    lost6 = order(
        addrs,
        lambda a: select_source(a, sources),
        lambda a: RANK_DEMOTED if a == "2001:db8:2::7" else RANK_UNKNOWN,
    )
    assert lost6 == ["198.51.100.7", "2001:db8:2::8", "198.51.100.8", "2001:db8:2::7"]
