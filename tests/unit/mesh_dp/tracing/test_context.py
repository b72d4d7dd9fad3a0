"""Trace context propagation and sampling (mesh_dp/tracing/context.py), pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh_dp.tracing.context import (
    B3_PARENT,
    B3_SAMPLED,
    B3_SPAN,
    B3_TRACE,
    Parent,
    Sampling,
    headers_for,
    lone_decision,
    own_b3,
    own_traceparent,
    parent_of,
    parse_b3_multi,
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


# Ids as a sidecar writes them, four times in five, else anything like one or not.
_OTHER = st.one_of(
    st.text("0123456789abcdef", min_size=15, max_size=33),
    st.sampled_from(["0" * 16, "0" * 32, SPAN.upper(), "x" * 16, TRACE[:14] + "\r\n"]),
    st.text(max_size=34),
).map(lambda v: v.encode("utf-8"))


def _mostly(*usual: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, 4).flatmap(lambda i: st.sampled_from(usual) if i else _OTHER)


_TRACE, _SPAN = _mostly(TRACE.encode(), SPAN.encode()), _mostly(SPAN.encode())
# where the head's first trace context field begins (None: where the fields written do)
_AT = st.integers(0, 3).flatmap(lambda i: st.none() if i else st.integers(0, 140))
_HEAD = b"POST / HTTP/1.1\r\nHost: a"


@settings(max_examples=300)
@given(
    _TRACE,
    _SPAN,
    st.one_of(st.none(), _SPAN),
    st.integers(0, 4).flatmap(
        lambda i: st.sampled_from([b"0", b"1"] if i else [b"d", b"10", b"", b" 1"])
    ),
    _AT,
)
def test_a_sidecars_b3_is_read_in_place_as_the_parser_reads_it(
    trace: bytes, span: bytes, parent: bytes | None, sampled: bytes, at: int | None
) -> None:
    found = {B3_TRACE: trace, B3_SPAN: span, B3_SAMPLED: sampled}
    if parent is not None:
        found = {B3_TRACE: trace, B3_SPAN: span, B3_PARENT: parent, B3_SAMPLED: sampled}
    raw = _HEAD + b"".join(b"\r\n%s: %s" % kv for kv in found.items()) + b"\r\n\r\n"
    fast = own_b3(raw, len(_HEAD) if at is None else at)
    if fast is not None:
        assert at in (None, len(_HEAD))  # from the first field written to the end
        trace_id, span_id, parent_id, decision = fast
        expected = Parent(trace_id.decode(), span_id.decode(), parent_id.decode(), decision)
        assert parse_b3_multi(found) == expected


@settings(max_examples=300)
@given(
    st.integers(0, 4).flatmap(lambda i: st.just(b"00") if i else st.sampled_from([b"01", b"ff"])),
    _TRACE,
    _SPAN,
    st.integers(0, 4).flatmap(
        lambda i: st.sampled_from([b"00", b"01"] if i else [b"03", b"1", b"0g"])
    ),
    st.integers(0, 4).flatmap(lambda i: st.just(b"" if i else b"-x")),
    _AT,
)
def test_a_sidecars_traceparent_is_read_in_place_as_the_parser_reads_it(
    version: bytes, trace: bytes, span: bytes, flags: bytes, more: bytes, at: int | None
) -> None:
    value = b"-".join([version, trace, span, flags]) + more
    raw = _HEAD + b"\r\ntraceparent: " + value + b"\r\n\r\n"
    fast = own_traceparent(raw, len(_HEAD) if at is None else at)
    if fast is not None:
        assert at in (None, len(_HEAD))
        trace_id, span_id, sampled = fast
        assert parse_traceparent(value) == Parent(trace_id.decode(), span_id.decode(), "", sampled)


def test_what_a_sidecar_writes_is_read_in_place() -> None:
    b3 = f"\r\nx-b3-traceid: {TRACE}\r\nx-b3-spanid: {SPAN}\r\nx-b3-sampled: 1\r\n\r\n"
    at = len(_HEAD)
    assert own_b3(_HEAD + b3.encode(), at) == (TRACE.encode(), SPAN.encode(), b"", True)
    assert own_b3(_HEAD + b3.encode(), at - 3) is None  # another trace context field before
    assert own_b3(_HEAD + b3.encode() + b"x", at) is None  # not the head's last fields
    child = b3.replace("\r\nx-b3-sampled: 1", f"\r\nx-b3-parentspanid: {SPAN}\r\nx-b3-sampled: 0")
    assert own_b3(_HEAD + child.encode(), at) == (
        TRACE.encode(),
        SPAN.encode(),
        SPAN.encode(),
        False,
    )
    w3c = f"\r\ntraceparent: 00-{TRACE}-{SPAN}-00\r\n\r\n".encode()
    assert own_traceparent(_HEAD + w3c, at) == (TRACE.encode(), SPAN.encode(), False)
    assert own_traceparent(_HEAD + w3c.replace(b"-00\r", b"-03\r"), at) is None
    assert own_traceparent(_HEAD + w3c.upper(), at) is None  # the parser decides
