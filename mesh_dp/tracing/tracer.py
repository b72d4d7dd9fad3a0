"""The per-request hook of one HTTP listener (the pipeline calls `start` when a request's
record is made and `finish` when it is accounted; neither when no MeshTrace applies).

`start` reads the caller's context, decides sampling, gives this request its span and
writes the propagation headers into the request the sidecar sends on, so the callee (the
other sidecar's inbound, or the application) continues the trace: an outbound's CLIENT
span is the parent of the callee's SERVER span. The head is changed in place; when it still
has its bytes as received, the headers are spliced into them (the fast path keeps them).
Only a sampled request gets a span; `finish` hands it to the exporter's queue, unformatted.
While the exporter's backend is failing, `start` leaves the request as it came (decision
186): no context read, no ids, no header written, so the callee continues whatever trace
the application sent, and no span that cannot be exported is anyone's parent.
"""

from __future__ import annotations

import random
import re
import time
from binascii import hexlify
from collections.abc import Callable
from typing import Final, Protocol

from mesh_dp.http.accesslog import Record
from mesh_dp.http.headers import _without_hop
from mesh_dp.http.parse import RequestHead
from mesh_dp.tracing.context import (
    B3,
    B3_SAMPLED,
    B3_SPAN,
    B3_TRACE,
    CLIENT_TRACE_ID,
    OWN_B3,
    OWN_TRACEPARENT,
    TRACEPARENT,
    WRITTEN,
    Sampling,
    headers_for,
    lone_decision,
    parent_of,
    propagation,
)
from mesh_dp.tracing.span import Listener, Span
from meshfed.dpconfig.tracing import Tracing

STYLES = {"zipkin": "b3", "otel": "w3c", "datadog": "datadog"}


def inject(head: RequestHead, found: dict[bytes, bytes], new: list[tuple[bytes, bytes]]) -> None:
    """`head` with the propagation headers it had (`found`) replaced by `new`; unchanged
    when it already carries exactly these (a Zipkin server span sharing its caller's)."""
    stale = tuple(name for name in found if name in WRITTEN)
    if len(stale) == len(new) and all(found.get(k) == v for k, v in new):
        return
    if stale:
        head.headers[:] = [(k, v) for k, v in head.headers if k.lower() not in WRITTEN]
    head.headers.extend(new)
    if head.raw and head.hop is not None:
        raw = _without_hop(head.raw, stale) if stale else head.raw
        head.raw = raw[:-2] + b"".join([b"%s: %s\r\n" % kv for kv in new]) + b"\r\n"
    else:
        head.raw, head.hop = b"", None


# The context fields of a lowercased head as received (name, value), and where the first
# one may begin: one C-level search of the names' beginnings, which the usual outbound
# request does not have (a head with one of them and no field `_FIELDS` reads is read as
# one without context by `_continue`, as by `_root`).
_FIELDS: Final = re.compile(
    rb"\r\n(traceparent|b3|x-b3-[a-z]+|x-client-trace-id|x-datadog-[a-z-]+)[ \t]*:[ \t]*([^\r]*)"
)
_CONTEXT: Final = re.compile(rb"\r\n(?:traceparent|b3|x-b3-|x-client-trace-id|x-datadog-)")
# the lines a new trace adds, by sampling decision (the head's closing CRLF included)
_B3_ROOT: Final = (
    b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: 0\r\n\r\n",
    b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: 1\r\n\r\n",
)
_B3_DECISION: Final = ((B3_SAMPLED, b"0"), (B3_SAMPLED, b"1"))
_W3C: Final = (b"00-%s-%s-00", b"00-%s-%s-01")  # a traceparent by sampling decision
_B3_SAMPLED_AT: Final = -5  # the sampling decision's byte in a sidecar's B3 (context.OWN_B3)
POOL: Final = 64  # new ids drawn at once (one draw, one hexlify, one split)
_ZERO_ID: Final = b"0" * 16

# What `finish` queues: the listener, the accounted record, the time it ended; the exporter
# makes the Span (export.py), so the request path builds nothing more.
Pending = tuple[Listener, Record, float]


def span_of(item: Pending) -> Span:
    listener, record, end = item
    assert record.trace is not None
    trace_id, span_id, parent_id, shared = record.trace
    return Span(
        listener,
        trace_id.decode(),
        span_id.decode(),
        parent_id.decode(),
        end - record.duration,
        record.duration,
        record.status,
        record.head,
        record.upstream,
        record.error,
        shared,
    )


class Gate(Protocol):
    """What the request path reads of the exporter: while its backend is failing, `start`
    passes requests unchanged and counts the spans it would have made as dropped
    (export.py: `Exporter`)."""

    failing: bool
    dropped: int


class _Open:
    """No exporter's state to read (a tracer on its own): never failing."""

    failing = False
    dropped = 0


class Ids:
    """New ids in lowercase hex, never all zeros, drawn `POOL` at a time (per id, a draw,
    `to_bytes`, `hexlify` and slices cost more than the rest of a new trace): `spans`, 64
    bits (span ids, Zipkin's 64-bit trace ids), and `wide`, 128 bits (trace ids). A request
    pops what it takes, `more` refills an empty list."""

    __slots__ = ("_bits", "spans", "wide")

    def __init__(self, rng: random.Random) -> None:
        self._bits = rng.getrandbits
        self.spans: list[bytes] = []
        self.wide: list[bytes] = []

    def more(self, ids: list[bytes]) -> list[bytes]:
        """`ids` (`spans` or `wide`) with `POOL` new ids."""
        size = 16 if ids is self.wide else 8
        while True:
            pool = hexlify(self._bits(size * 8 * POOL).to_bytes(size * POOL, "big"), b"-", size)
            if _ZERO_ID not in pool:  # ~2**-58 of draws: drawn again
                break
        ids[:] = pool.split(b"-")
        return ids


_IDS: Final = Ids(random.Random())  # the sidecar's tracers' (a tracer given an rng has its own)


class Tracer:
    """One listener's tracing: its sampling, id width, header style and exporter."""

    __slots__ = (
        "_always",
        "_draw",
        "_ids",
        "_own",
        "_spans",
        "_threshold",
        "_traces",
        "gate",
        "listener",
        "offer",
        "sampling",
        "style",
        "wide",
    )

    def __init__(
        self,
        conf: Tracing,
        listener: Listener,
        offer: Callable[[Pending], None],
        rng: random.Random | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.listener = listener
        self.offer = offer  # the exporter's bounded queue
        self.gate = gate or _Open()  # the exporter's state: is its backend failing?
        self.style = STYLES[conf.kind]
        self.wide = conf.kind != "zipkin" or conf.trace_id128bit  # new traces' id width
        self.sampling = Sampling(conf.overall, conf.client, conf.random)
        # no x-client-trace-id: traced when the draw is under both random and overall
        self._threshold = min(conf.random, conf.overall)
        # Kuma's default (100 %): every request is traced whatever the draw, so none is made
        self._always = self._threshold >= 100.0
        # the context another sidecar's outbound writes, which this listener continues in
        # place (`_from_sidecar`): Zipkin's B3 in a shared span, or a W3C traceparent
        self._own = (
            OWN_B3
            if self.style == "b3" and listener.shared
            else OWN_TRACEPARENT
            if self.style == "w3c" and not listener.shared
            else None
        )
        r = rng or random.Random()
        self._draw = r.random
        self._ids = ids = _IDS if rng is None else Ids(rng)
        self._spans = ids.spans  # new span ids
        self._traces = ids.wide if self.wide else ids.spans  # new trace ids

    def _new_ids(self) -> tuple[bytes, bytes]:
        """A new trace's trace id and span id."""
        traces, spans, ids = self._traces, self._spans, self._ids
        return (traces or ids.more(traces)).pop(), (spans or ids.more(spans)).pop()

    def _id(self) -> bytes:
        """A new span id."""
        spans = self._spans
        return (spans or self._ids.more(spans)).pop()

    def start(self, record: Record, head: RequestHead) -> None:
        gate = self.gate
        if gate.failing:
            # The backend is down (decision 186): the request passes exactly as received.
            # What the listener's own sampling would trace is counted as dropped.
            if self._always or self._draw() * 100.0 < self._threshold:
                gate.dropped += 1
            return
        raw = head.raw
        if not raw:  # kept only when its hop-by-hop fields are known (parse.py)
            self._continue(record, head, propagation(head.headers))
            return
        low = raw.lower()
        first = _CONTEXT.search(low)
        if first is not None:
            if not self._from_sidecar(record, head, raw, first.start()):
                self._continue(record, head, dict(_FIELDS.findall(low)))
            return
        # The usual outbound request: no trace context, its bytes as received. A new trace,
        # its lines appended to those bytes (the fast path sends them as they are).
        sampled = self._always or self._draw() * 100.0 < self._threshold
        traces, spans, ids = self._traces, self._spans, self._ids  # `_new_ids`, inline
        trace_id = (traces or ids.more(traces)).pop()
        span_id = (spans or ids.more(spans)).pop()
        style = self.style
        if style == "b3":
            head.headers += ((B3_TRACE, trace_id), (B3_SPAN, span_id), _B3_DECISION[sampled])
            head.raw = raw[:-2] + _B3_ROOT[sampled] % (trace_id, span_id)
        elif style == "w3c":
            value = _W3C[sampled] % (trace_id, span_id)
            head.headers.append((TRACEPARENT, value))
            head.raw = raw[:-2] + b"traceparent: %s\r\n\r\n" % value
        else:
            inject(head, {}, headers_for(style, trace_id.decode(), span_id.decode(), "", sampled))
        if sampled:
            record.trace = (trace_id, span_id, b"", False)

    def _from_sidecar(self, record: Record, head: RequestHead, raw: bytes, at: int) -> bool:
        """The context another sidecar's outbound wrote, from `at` (where the head's first
        context field begins) to its end, matched in place (context.py: `OWN_B3`,
        `OWN_TRACEPARENT`) and continued without a dict, a Parent or strings: Zipkin's B3 in
        a shared span (nothing written) or a traceparent's child span (that line replaced).
        False: another case, for `_continue`."""
        own = self._own
        found = None if own is None else own.match(raw, at)
        if found is None:
            return False
        if own is OWN_B3:
            if raw[_B3_SAMPLED_AT] == 49:  # b"1": sampled
                trace_id, span_id, parent_id, _ = found.groups(b"")
                record.trace = (trace_id, span_id, parent_id, True)
            return True
        headers = head.headers
        if headers[-1][0] != TRACEPARENT:
            return False
        trace_id, parent_id, flag = found.groups()
        sampled = flag == b"1"
        spans = self._spans
        span_id = (spans or self._ids.more(spans)).pop()
        if span_id != parent_id:  # else the head says it already (`inject` leaves it)
            value = _W3C[sampled] % (trace_id, span_id)
            headers[-1] = (TRACEPARENT, value)
            head.raw = raw[:at] + b"\r\ntraceparent: %s\r\n\r\n" % value
        if sampled:
            record.trace = (trace_id, span_id, parent_id, False)
        return True

    def _continue(self, record: Record, head: RequestHead, found: dict[bytes, bytes]) -> None:
        """The general case: a caller's context (or a head rebuilt from its fields)."""
        parent = parent_of(found) if found else None
        sampled = parent.sampled if parent is not None else None
        if sampled is None and found:
            sampled = lone_decision(found)
        if sampled is None:
            sampled = self._always or self.sampling.decide(
                self._draw() * 100.0, CLIENT_TRACE_ID in found
            )
        shared = False
        if parent is None:
            trace_id, span_id = self._new_ids()
            parent_id = b""
        elif self.listener.shared:  # Zipkin's shared span context: the caller's span, shared
            trace_id, span_id = parent.trace_id.encode(), parent.span_id.encode()
            parent_id = parent.parent_id.encode()
            shared = True
            if B3_SAMPLED in found and TRACEPARENT not in found and B3 not in found:
                # the B3 fields it came with are the ones to send on: nothing to write
                if sampled:
                    record.trace = (trace_id, span_id, parent_id, shared)
                return
        else:
            trace_id, span_id = parent.trace_id.encode(), self._id()
            parent_id = parent.span_id.encode()
        new = headers_for(
            self.style, trace_id.decode(), span_id.decode(), parent_id.decode(), sampled
        )
        inject(head, found, new)
        if sampled:
            record.trace = (trace_id, span_id, parent_id, shared)

    def finish(self, record: Record) -> None:
        self.offer((self.listener, record, time.time()))
