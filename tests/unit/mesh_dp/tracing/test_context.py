"""Trace context propagation and sampling (mesh_dp/tracing/context.py), pure."""

from __future__ import annotations

import random

import pytest

from mesh_dp.tracing.context import (
    Parent,
    Sampling,
    headers_for,
    lone_decision,
    parent_of,
    parse_b3_single,
    parse_traceparent,
    propagation,
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
