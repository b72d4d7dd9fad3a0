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
    TRACEPARENT,
    WRITTEN,
    Sampling,
    headers_for,
    lone_decision,
    own_b3,
    own_traceparent,
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
    """What the request path reads of the exporter: a failing backend's spans are not made,
    only counted as dropped (export.py: `Exporter`)."""

    failing: bool
    dropped: int


class _Open:
    """No exporter's state to read (a tracer on its own): never failing."""

    failing = False
    dropped = 0


class Tracer:
    """One listener's tracing: its sampling, id width, header style and exporter."""

    __slots__ = (
        "_bits",
        "_draw",
        "_id_bits",
        "_id_bytes",
        "_threshold",
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
        # a new trace's ids from one draw: trace (64 or 128 bits) then span (64 bits)
        self._id_bits = 192 if self.wide else 128
        self._id_bytes = self._id_bits // 8
        r = rng or random.Random()
        self._draw, self._bits = r.random, r.getrandbits

    def _id(self) -> bytes:
        return hexlify((self._bits(64) or 1).to_bytes(8, "big"))

    def start(self, record: Record, head: RequestHead) -> None:
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
        sampled = self._draw() * 100.0 < self._threshold
        ids = hexlify(self._bits(self._id_bits).to_bytes(self._id_bytes, "big"))
        trace_id, span_id = ids[:-16], ids[-16:]
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
            gate = self.gate
            if gate.failing:  # it would be dropped at the offer: not made
                gate.dropped += 1
            else:
                record.trace = (trace_id, span_id, b"", False)

    def _from_sidecar(self, record: Record, head: RequestHead, raw: bytes, at: int) -> bool:
        """The context another sidecar's outbound wrote, from `at` (where the head's first
        context field may begin) to its end, checked in place (context.py) and continued
        without a dict, a Parent or strings: Zipkin's B3 in a shared span (nothing written)
        or a traceparent's child span (that line replaced). False: another case, for
        `_continue`."""
        gate = self.gate
        if self.style == "b3" and self.listener.shared:
            b3 = own_b3(raw, at)
            if b3 is None:
                return False
            if b3[3]:
                if gate.failing:
                    gate.dropped += 1
                else:
                    record.trace = (b3[0], b3[1], b3[2], True)
            return True
        if self.style != "w3c" or self.listener.shared:
            return False
        w3c = own_traceparent(raw, at)
        headers = head.headers
        if w3c is None or headers[-1][0] != TRACEPARENT:
            return False
        trace_id, parent_id, sampled = w3c
        span_id = self._id()
        if span_id != parent_id:  # else the head says it already (`inject` leaves it)
            value = _W3C[sampled] % (trace_id, span_id)
            headers[-1] = (TRACEPARENT, value)
            head.raw = raw[:at] + b"\r\ntraceparent: %s\r\n\r\n" % value
        if sampled:
            if gate.failing:
                gate.dropped += 1
            else:
                record.trace = (trace_id, span_id, parent_id, False)
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
            ids = hexlify(self._bits(self._id_bits).to_bytes(self._id_bytes, "big"))
            trace_id, span_id, parent_id = ids[:-16], ids[-16:], b""
        elif self.listener.shared:  # Zipkin's shared span context: the caller's span, shared
            trace_id, span_id = parent.trace_id.encode(), parent.span_id.encode()
            parent_id = parent.parent_id.encode()
            shared = True
            if B3_SAMPLED in found and TRACEPARENT not in found and B3 not in found:
                # the B3 fields it came with are the ones to send on: nothing to write
                if sampled:
                    self._keep(record, (trace_id, span_id, parent_id, shared))
                return
        else:
            trace_id, span_id = parent.trace_id.encode(), self._id()
            parent_id = parent.span_id.encode()
        new = headers_for(
            self.style, trace_id.decode(), span_id.decode(), parent_id.decode(), sampled
        )
        inject(head, found, new)
        if sampled:
            self._keep(record, (trace_id, span_id, parent_id, shared))

    def _keep(self, record: Record, trace: tuple[bytes, bytes, bytes, bool]) -> None:
        """A sampled request's span, unless the exporter's backend is failing (the span
        would be dropped at the offer: it is counted as dropped, and not made)."""
        gate = self.gate
        if gate.failing:
            gate.dropped += 1
        else:
            record.trace = trace

    def finish(self, record: Record) -> None:
        self.offer((self.listener, record, time.time()))
