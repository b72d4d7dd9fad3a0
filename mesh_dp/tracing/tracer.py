"""The per-request hook of one HTTP listener (the pipeline calls `start` when a request's
record is made and `finish` when it is accounted; neither when no MeshTrace applies).

`start` reads the caller's context, decides sampling, gives this request its span and
writes the propagation headers into the request the sidecar sends on, so the callee (the
other sidecar's inbound, or the application) continues the trace: an outbound's CLIENT
span is the parent of the callee's SERVER span. The head is changed in place; when it still
has its bytes as received, the headers are spliced into them (the fast path keeps them).
Only a sampled request gets a span; `finish` hands it to the exporter's queue, unformatted.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Final

from mesh_dp.http.accesslog import Record
from mesh_dp.http.headers import _without_hop
from mesh_dp.http.parse import RequestHead
from mesh_dp.tracing.context import (
    B3,
    B3_PARENT,
    B3_SAMPLED,
    B3_SPAN,
    B3_TRACE,
    CLIENT_TRACE_ID,
    TRACEPARENT,
    WRITTEN,
    Sampling,
    b3_multi_ids,
    headers_for,
    lone_decision,
    parent_of,
    propagation,
    traceparent_ids,
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


# The context fields of a lowercased head as received (name, value): one C-level scan; the
# usual outbound request has none and takes the fast path (`_root`).
_FIELDS: Final = re.compile(
    rb"\r\n(traceparent|b3|x-b3-[a-z]+|x-client-trace-id|x-datadog-[a-z-]+)[ \t]*:[ \t]*([^\r]*)"
)
# the lines a new trace adds, by sampling decision (the head's closing CRLF included)
_B3_ROOT: Final = (
    b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: 0\r\n\r\n",
    b"x-b3-traceid: %s\r\nx-b3-spanid: %s\r\nx-b3-sampled: 1\r\n\r\n",
)
_W3C: Final = (b"00-%s-%s-00", b"00-%s-%s-01")  # a traceparent by sampling decision
_B3_MULTI: Final = (  # the fields of the B3 context `_b3_shared` takes as it comes
    frozenset({B3_TRACE, B3_SPAN, B3_SAMPLED}),
    frozenset({B3_TRACE, B3_SPAN, B3_PARENT, B3_SAMPLED}),
)

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


class Tracer:
    """One listener's tracing: its sampling, id width, header style and exporter."""

    __slots__ = (
        "_bits",
        "_draw",
        "_id_bits",
        "_id_format",
        "_threshold",
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
    ) -> None:
        self.listener = listener
        self.offer = offer  # the exporter's bounded queue
        self.style = STYLES[conf.kind]
        self.wide = conf.kind != "zipkin" or conf.trace_id128bit  # new traces' id width
        self.sampling = Sampling(conf.overall, conf.client, conf.random)
        # no x-client-trace-id: traced when the draw is under both random and overall
        self._threshold = min(conf.random, conf.overall)
        # a new trace's ids from one draw: trace (64 or 128 bits) then span (64 bits)
        self._id_bits = 192 if self.wide else 128
        self._id_format = b"%048x" if self.wide else b"%032x"
        r = rng or random.Random()
        self._draw, self._bits = r.random, r.getrandbits

    def _id(self) -> bytes:
        return b"%016x" % (self._bits(64) or 1)

    def start(self, record: Record, head: RequestHead) -> None:
        raw = head.raw
        if not raw:  # kept only when its hop-by-hop fields are known (parse.py)
            self._continue(record, head, propagation(head.headers))
            return
        low = raw.lower()
        fields = _FIELDS.findall(low)
        if not fields:
            self._root(record, head, raw)
        elif len(fields) == 1:
            if not self._w3c_child(record, head, raw, low, fields[0]):
                self._continue(record, head, dict(fields))
        else:
            found = dict(fields)
            if not self._b3_shared(record, found, len(fields)):
                self._continue(record, head, found)

    def _root(self, record: Record, head: RequestHead, raw: bytes) -> None:
        """A request without trace context, its head as received: a new trace."""
        sampled = self._draw() * 100.0 < self._threshold
        ids = self._id_format % self._bits(self._id_bits)
        trace_id, span_id = ids[:-16], ids[-16:]
        if self.style == "b3":
            head.headers += (
                (B3_TRACE, trace_id),
                (B3_SPAN, span_id),
                (B3_SAMPLED, b"1" if sampled else b"0"),
            )
            head.raw = raw[:-2] + _B3_ROOT[sampled] % (trace_id, span_id)
        elif self.style == "w3c":
            value = _W3C[sampled] % (trace_id, span_id)
            head.headers.append((TRACEPARENT, value))
            head.raw = raw[:-2] + b"traceparent: %s\r\n\r\n" % value
        else:
            inject(
                head, {}, headers_for(self.style, trace_id.decode(), span_id.decode(), "", sampled)
            )
        if sampled:
            record.trace = (trace_id, span_id, b"", False)

    def _w3c_child(
        self,
        record: Record,
        head: RequestHead,
        raw: bytes,
        low: bytes,
        field: tuple[bytes, bytes],
    ) -> bool:
        """The usual W3C case, without building a dict, a Parent or strings: a lone
        `traceparent` of version 00 continued by a child span (OpenTelemetry, Datadog's W3C
        half is not this: it writes more). False: not this shape, `_continue` decides."""
        name, value = field
        if name != TRACEPARENT or self.style != "w3c" or self.listener.shared:
            return False
        parsed = traceparent_ids(value)
        if parsed is None:
            return False
        at = low.find(b"\r\ntraceparent:")
        index = raw.count(b"\r\n", 0, at)  # the request line is line 0, then the fields
        headers = head.headers
        if at < 0 or index >= len(headers) or headers[index][0].lower() != TRACEPARENT:
            return False
        trace_id, parent_id, sampled = parsed
        span_id = self._id()
        new = _W3C[sampled] % (trace_id, span_id)
        if new != value:  # (as `inject`: a head that already says it is left alone)
            del headers[index]
            headers.append((TRACEPARENT, new))
            end = raw.find(b"\r\n", at + 2)
            head.raw = raw[:at] + raw[end:-2] + b"traceparent: %s\r\n\r\n" % new
        if sampled:
            record.trace = (trace_id, span_id, parent_id, False)
        return True

    def _b3_shared(self, record: Record, found: dict[bytes, bytes], count: int) -> bool:
        """The usual Zipkin inbound, without a Parent or strings: B3 multi fields (each
        once, canonical values, an explicit decision) continued in the caller's span
        (shared span context), so nothing is written. False: `_continue` decides."""
        if not self.listener.shared or len(found) != count or found.keys() not in _B3_MULTI:
            return False
        parsed = b3_multi_ids(found)
        if parsed is None:
            return False
        if parsed[3]:
            record.trace = (parsed[0], parsed[1], parsed[2], True)
        return True

    def _continue(self, record: Record, head: RequestHead, found: dict[bytes, bytes]) -> None:
        """The general case: a caller's context (or a head rebuilt from its fields)."""
        parent = parent_of(found) if found else None
        sampled = parent.sampled if parent is not None else None
        if sampled is None and found:
            sampled = lone_decision(found)
        if sampled is None:
            sampled = self.sampling.decide(self._draw() * 100.0, CLIENT_TRACE_ID in found)
        shared = False
        if parent is None:
            ids = self._id_format % self._bits(self._id_bits)
            trace_id, span_id, parent_id = ids[:-16], ids[-16:], b""
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
