"""Trace context propagation and sampling, pure (no I/O, no clock).

Read: W3C `traceparent` (and its `tracestate`, passed on untouched), B3 single (`b3`) and
B3 multi (`x-b3-*`) headers, in that order of precedence
(https://www.w3.org/TR/trace-context/, https://github.com/openzipkin/b3-propagation).
Written: the headers of the backend's tracer, as Envoy's do: Zipkin B3 multi, OpenTelemetry
W3C, Datadog W3C plus `x-datadog-*`. Sampling follows Envoy's HTTP connection manager
(Kuma's `sampling` maps onto it): a caller's sampling decision is kept; otherwise a request
carrying `x-client-trace-id` is traced with probability `client`, else with `random`, and
then only if the same draw is below `overall`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mesh_dp.http.parse import Headers

TRACEPARENT: Final = b"traceparent"
B3: Final = b"b3"
B3_TRACE: Final = b"x-b3-traceid"
B3_SPAN: Final = b"x-b3-spanid"
B3_PARENT: Final = b"x-b3-parentspanid"
B3_SAMPLED: Final = b"x-b3-sampled"
B3_FLAGS: Final = b"x-b3-flags"
CLIENT_TRACE_ID: Final = b"x-client-trace-id"
DD_TRACE: Final = b"x-datadog-trace-id"
DD_PARENT: Final = b"x-datadog-parent-id"
DD_PRIORITY: Final = b"x-datadog-sampling-priority"
# what the sidecar reads and replaces (tracestate passes through untouched)
READ: Final = frozenset(
    {TRACEPARENT, B3, B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS, CLIENT_TRACE_ID}
)
WRITTEN: Final = frozenset(
    {TRACEPARENT, B3, B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED, B3_FLAGS}
    | {DD_TRACE, DD_PARENT, DD_PRIORITY}
)
_HEX: Final = frozenset("0123456789abcdef")
ZERO_TRACE: Final = "0" * 32


@dataclass(frozen=True, slots=True)
class Parent:
    """The caller's span: its trace id (16 or 32 lowercase hex), span id (16 hex), its own
    parent (`""`: none) and sampling decision (None: the caller left it to us)."""

    trace_id: str
    span_id: str
    parent_id: str = ""
    sampled: bool | None = None


def _hex(value: str, *lengths: int) -> bool:
    return len(value) in lengths and _HEX.issuperset(value) and value.strip("0") != ""


# B3 ids: 16 or 32 hex (trace), 16 (span); checked on the raw bytes, decoded once matched
_B3_TRACE_RE: Final = re.compile(rb"[0-9a-f]{16}(?:[0-9a-f]{16})?")
_B3_SPAN_RE: Final = re.compile(rb"[0-9a-f]{16}")
_ZEROS: Final = frozenset({b"0" * 16, b"0" * 32})


def _b3_id(raw: bytes, pattern: re.Pattern[bytes]) -> str:
    """The id in lowercase hex, "" when `raw` is not one (all zeros is not an id)."""
    value = raw.strip().lower()
    if pattern.fullmatch(value) is None or value in _ZEROS:
        return ""
    return value.decode()


def parse_traceparent(value: bytes) -> Parent | None:
    """`00-<trace 32 hex>-<span 16 hex>-<flags 2 hex>`; a later version may add fields."""
    parts = value.strip().decode("latin-1").lower().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or not _HEX.issuperset(parts[0]):
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None
    trace, span, flags = parts[1], parts[2], parts[3]
    if not _hex(trace, 32) or not _hex(span, 16) or len(flags) != 2 or not _HEX.issuperset(flags):
        return None
    return Parent(trace, span, "", bool(int(flags, 16) & 1))


def _b3_sampled(value: str) -> bool | None:
    if value in ("1", "d", "true"):
        return True
    if value in ("0", "false"):
        return False
    return None


def parse_b3_single(value: bytes) -> Parent | None:
    """`{trace}-{span}[-{sampled}[-{parent}]]`; a lone `0`/`1`/`d` is a decision only (no
    parent span: None here, the decision is read by `sampling_of`)."""
    parts = value.strip().decode("latin-1").lower().split("-")
    if len(parts) < 2 or not _hex(parts[0], 16, 32) or not _hex(parts[1], 16):
        return None
    sampled = _b3_sampled(parts[2]) if len(parts) > 2 else None
    parent = parts[3] if len(parts) > 3 and _hex(parts[3], 16) else ""
    return Parent(parts[0], parts[1], parent, sampled)


def parse_b3_multi(found: dict[bytes, bytes]) -> Parent | None:
    trace = _b3_id(found.get(B3_TRACE, b""), _B3_TRACE_RE)
    span = _b3_id(found.get(B3_SPAN, b""), _B3_SPAN_RE)
    if not trace or not span:
        return None
    parent = _b3_id(found[B3_PARENT], _B3_SPAN_RE) if B3_PARENT in found else ""
    raw = found.get(B3_SAMPLED)
    sampled = None if raw is None else _b3_sampled(raw.strip().decode("latin-1").lower())
    if found.get(B3_FLAGS, b"").strip() == b"1":
        sampled = True  # debug
    return Parent(trace, span, parent, sampled)


# What a sidecar's outbound appends to a request it sends on (its last fields, names and ids
# in lowercase), matched by the callee at the head's first trace context field instead of
# parsed field by field: one C-level match that checks the fields' names, the ids' widths,
# hex digits and non-zero values, and that nothing follows. Zipkin's B3 (a child span's with
# `x-b3-parentspanid`) and a traceparent (version 00, flags 00 or 01).
OWN_B3: Final = re.compile(
    rb"\r\nx-b3-traceid: (?!0{16}\r|0{32}\r)([0-9a-f]{16}(?:[0-9a-f]{16})?)"
    rb"\r\nx-b3-spanid: (?!0{16})([0-9a-f]{16})"
    rb"(?:\r\nx-b3-parentspanid: (?!0{16})([0-9a-f]{16}))?"
    rb"\r\nx-b3-sampled: ([01])\r\n\r\n\Z"
)
OWN_TRACEPARENT: Final = re.compile(
    rb"\r\ntraceparent: 00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-0([01])\r\n\r\n\Z"
)


def own_b3(raw: bytes, at: int) -> tuple[bytes, bytes, bytes, bool] | None:
    """The B3 context a sidecar wrote, when it ends the head `raw` from `at`, where the
    head's first trace context field begins (so it is the only one): (trace id, span id,
    parent id or b"", sampled), what `parse_b3_multi` reads from it, as bytes. None: any
    other head (the general reading decides)."""
    m = OWN_B3.match(raw, at)
    if m is None:
        return None
    trace, span, parent, decision = m.groups(b"")
    return trace, span, parent, decision == b"1"


def own_traceparent(raw: bytes, at: int) -> tuple[bytes, bytes, bool] | None:
    """The traceparent a sidecar wrote (version 00, lowercase, flags 00 or 01), when it is
    the last field of the head `raw`, from `at`, where its first trace context field begins
    (so it is the only one): (trace id, span id, sampled), what `parse_traceparent` reads, as
    bytes. None: any other head."""
    m = OWN_TRACEPARENT.match(raw, at)
    if m is None:
        return None
    trace, span, flags = m.groups()
    return trace, span, flags == b"1"


_SEEN: Final = READ | WRITTEN


def propagation(headers: Headers) -> dict[bytes, bytes]:
    """The headers of `READ` and `WRITTEN` a request carries (the first of each name), by
    lowercase name."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        low = name.lower()
        if low in _SEEN and low not in found:
            found[low] = value
    return found


def parent_of(found: dict[bytes, bytes]) -> Parent | None:
    """The caller's span from the propagation headers found, W3C first, then B3."""
    if TRACEPARENT in found:
        parent = parse_traceparent(found[TRACEPARENT])
        if parent is not None:
            return parent
    if B3 in found:
        parent = parse_b3_single(found[B3])
        if parent is not None:
            return parent
    if B3_TRACE in found:
        return parse_b3_multi(found)
    return None


def lone_decision(found: dict[bytes, bytes]) -> bool | None:
    """A sampling decision sent without a span (`b3: 0`, `x-b3-sampled` alone)."""
    single = found.get(B3, b"").strip().decode("latin-1").lower()
    if single:
        return _b3_sampled(single)
    return _b3_sampled(found.get(B3_SAMPLED, b"").strip().decode("latin-1").lower())


@dataclass(frozen=True, slots=True)
class Sampling:
    """Kuma's percentages (0-100), Envoy's meaning."""

    overall: float = 100.0
    client: float = 100.0
    random: float = 100.0

    def decide(self, draw: float, client_header: bool) -> bool:
        """`draw` uniform in [0, 100): the request is traced (and exported)."""
        traced = (client_header and draw < self.client) or draw < self.random
        return traced and draw < self.overall


def w3c(trace_id: str, span_id: str, sampled: bool) -> bytes:
    return f"00-{trace_id.rjust(32, '0')}-{span_id}-{'01' if sampled else '00'}".encode()


def headers_for(
    style: str, trace_id: str, span_id: str, parent_id: str, sampled: bool
) -> list[tuple[bytes, bytes]]:
    """The headers that carry this span to the callee, in the backend's style: `b3`
    (Zipkin), `w3c` (OpenTelemetry) or `datadog`."""
    if style == "b3":
        out = [(B3_TRACE, trace_id.encode()), (B3_SPAN, span_id.encode())]
        if parent_id:
            out.append((B3_PARENT, parent_id.encode()))
        out.append((B3_SAMPLED, b"1" if sampled else b"0"))
        return out
    out = [(TRACEPARENT, w3c(trace_id, span_id, sampled))]
    if style == "datadog":
        out += [
            (DD_TRACE, str(int(trace_id[-16:], 16)).encode()),
            (DD_PARENT, str(int(span_id, 16)).encode()),
            (DD_PRIORITY, b"1" if sampled else b"0"),
        ]
    return out
