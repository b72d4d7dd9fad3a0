"""Trace context propagation and sampling (mesh_dp/tracing/context.py), pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_dp.tracing.context import (
    B3_FLAGS,
    B3_PARENT,
    B3_SAMPLED,
    B3_SPAN,
    B3_TRACE,
    Parent,
    Sampling,
    b3_multi_ids,
    headers_for,
    lone_decision,
    parent_of,
    parse_b3_multi,
    parse_b3_single,
    parse_traceparent,
    propagation,
    traceparent_ids,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_w3c_traceparent() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01".encode()) == Parent(TRACE, SPAN, "", True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == Parent(TRACE, SPAN, "", False)
    # a later version may append fields; version 00 may not
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-xyz".encode()) is not None
    for bad in (
        f"00-{TRACE}-{SPAN}-01-xyz",
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-zz",
        "garbage",
    ):
        assert parse_traceparent(bad.encode()) is None, bad


def test_b3_single_and_multi() -> None:
    assert parse_b3_single(f"{TRACE}-{SPAN}-1-{'a' * 16}".encode()) == Parent(
        TRACE, SPAN, "a" * 16, True
    )
    assert parse_b3_single(f"{TRACE[-16:]}-{SPAN}".encode()) == Parent(TRACE[-16:], SPAN)
    assert parse_b3_single(b"0") is None
    assert lone_decision(propagation([(b"B3", b"0")])) is False
    assert lone_decision(propagation([(b"X-B3-Sampled", b"1")])) is True
    found = propagation(
        [
            (b"X-B3-TraceId", TRACE[-16:].encode()),
            (b"X-B3-SpanId", SPAN.encode()),
            (b"X-B3-ParentSpanId", b"b" * 16),
            (b"X-B3-Sampled", b"0"),
        ]
    )
    assert parent_of(found) == Parent(TRACE[-16:], SPAN, "b" * 16, False)
    # debug forces sampling
    found[b"x-b3-flags"] = b"1"
    assert parent_of(found) == Parent(TRACE[-16:], SPAN, "b" * 16, True)


def test_w3c_wins_over_b3_and_bad_w3c_falls_back() -> None:
    both = [
        (b"traceparent", f"00-{TRACE}-{SPAN}-01".encode()),
        (b"b3", f"{'1' * 32}-{'2' * 16}".encode()),
    ]
    assert parent_of(propagation(both)) == Parent(TRACE, SPAN, "", True)
    bad = [(b"traceparent", b"nonsense"), (b"b3", f"{'1' * 32}-{'2' * 16}-0".encode())]
    assert parent_of(propagation(bad)) == Parent("1" * 32, "2" * 16, "", False)


def test_headers_per_style() -> None:
    assert headers_for("b3", TRACE, SPAN, "", True) == [
        (b"x-b3-traceid", TRACE.encode()),
        (b"x-b3-spanid", SPAN.encode()),
        (b"x-b3-sampled", b"1"),
    ]
    assert headers_for("w3c", TRACE[-16:], SPAN, "a" * 16, False) == [
        (b"traceparent", f"00-{'0' * 16}{TRACE[-16:]}-{SPAN}-00".encode())
    ]
    dd = dict(headers_for("datadog", TRACE, SPAN, "", True))
    assert dd[b"x-datadog-trace-id"] == str(int(TRACE[-16:], 16)).encode()
    assert dd[b"x-datadog-parent-id"] == str(int(SPAN, 16)).encode()
    assert dd[b"traceparent"].endswith(b"-01")


def test_sampling_is_envoys() -> None:
    # overall applies on top of random with the same draw: min(random, overall)
    s = Sampling(overall=80, random=60)
    assert s.decide(59.9, False) and not s.decide(60.0, False)
    # a client-forced request (x-client-trace-id) is traced at `client`, still under overall
    c = Sampling(overall=50, client=40, random=0)
    assert c.decide(39.9, True) and not c.decide(39.9, False) and not c.decide(45, True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overall_10_keeps_10_percent_of_1000_traces(seed: int) -> None:
    rng = random.Random(seed)
    s = Sampling(overall=10)
    kept = sum(s.decide(rng.random() * 100, False) for _ in range(1000))
    assert 50 <= kept <= 150, kept


# Bytes that look like ids often enough to reach every branch of the fast parsers.
_HEXISH = st.text("0123456789abcdefABCDEF-xz \t", max_size=40).map(str.encode)
_ID = st.one_of(
    _HEXISH,
    st.sampled_from([TRACE, TRACE[16:], SPAN, "0" * 16, "0" * 32]).map(str.encode),
    st.binary(max_size=34),
)
_TRACEPARENT = st.one_of(
    st.builds(
        lambda v, t, s, f, tail: b"-".join([v, t, s, f]) + tail,
        st.sampled_from([b"00", b"01", b"ff", b"0"]),
        _ID,
        _ID,
        st.sampled_from([b"00", b"01", b"03", b"ff", b"1", b"zz"]),
        st.sampled_from([b"", b" ", b"\t ", b"-x", b"\x0b"]),
    ),
    st.binary(max_size=64),
)


@given(_TRACEPARENT)
def test_the_fast_traceparent_reading_agrees_with_the_parser(value: bytes) -> None:
    """`traceparent_ids` answers only what `parse_traceparent` would, as bytes."""
    fast = traceparent_ids(value)
    if fast is not None:
        trace, span, sampled = fast
        assert parse_traceparent(value) == Parent(trace.decode(), span.decode(), "", sampled)


def test_the_fast_traceparent_reading_takes_what_a_sidecar_writes() -> None:
    value = f"00-{TRACE}-{SPAN}-01".encode()
    assert traceparent_ids(value) == (TRACE.encode(), SPAN.encode(), True)
    assert traceparent_ids(value[:-1] + b"0 ") == (TRACE.encode(), SPAN.encode(), False)
    assert traceparent_ids(value.upper()) is None  # the parser decides (it lowercases)


@given(
    st.dictionaries(
        st.sampled_from([B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS]),
        st.one_of(_ID, st.sampled_from([b"0", b"1", b"d", b"true", b" 1"])),
    )
)
def test_the_fast_b3_reading_agrees_with_the_parser(found: dict[bytes, bytes]) -> None:
    """`b3_multi_ids` answers only what `parse_b3_multi` would, with a decision."""
    fast = b3_multi_ids(found)
    if fast is not None:
        trace, span, parent, sampled = fast
        expected = Parent(trace.decode(), span.decode(), parent.decode(), sampled)
        assert parse_b3_multi(found) == expected


def test_the_fast_b3_reading_takes_what_a_sidecar_writes() -> None:
    found = {B3_TRACE: TRACE.encode(), B3_SPAN: SPAN.encode(), B3_SAMPLED: b"1"}
    assert b3_multi_ids(found) == (TRACE.encode(), SPAN.encode(), b"", True)
    found[B3_PARENT], found[B3_SAMPLED] = b"c" * 16, b"0"
    assert b3_multi_ids(found) == (TRACE.encode(), SPAN.encode(), b"c" * 16, False)
    assert b3_multi_ids({**found, B3_SAMPLED: b"d"}) is None  # debug: the parser decides
