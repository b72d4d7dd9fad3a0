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
import time
from collections.abc import Callable

from mesh_dp.http.accesslog import Record
from mesh_dp.http.headers import _without_hop
from mesh_dp.http.parse import RequestHead
from mesh_dp.tracing.context import (
    CLIENT_TRACE_ID,
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


class Tracer:
    """One listener's tracing: its sampling, id width, header style and exporter."""

    __slots__ = ("_bits", "_draw", "listener", "offer", "sampling", "style", "wide")

    def __init__(
        self,
        conf: Tracing,
        listener: Listener,
        offer: Callable[[Span], None],
        rng: random.Random | None = None,
    ) -> None:
        self.listener = listener
        self.offer = offer  # the exporter's bounded queue
        self.style = STYLES[conf.kind]
        self.wide = conf.kind != "zipkin" or conf.trace_id128bit  # new traces' id width
        self.sampling = Sampling(conf.overall, conf.client, conf.random)
        r = rng or random.Random()
        self._draw, self._bits = r.random, r.getrandbits

    def _id(self) -> str:
        return "%016x" % (self._bits(64) or 1)

    def _trace_id(self) -> str:
        if self.wide:
            return "%032x" % (self._bits(128) or 1)
        return "%016x" % (self._bits(64) or 1)

    def start(self, record: Record, head: RequestHead) -> None:
        found = propagation(head.headers)
        parent = parent_of(found) if found else None
        sampled = parent.sampled if parent is not None else None
        if sampled is None and found:
            sampled = lone_decision(found)
        if sampled is None:
            sampled = self.sampling.decide(self._draw() * 100.0, CLIENT_TRACE_ID in found)
        shared = False
        if parent is None:
            trace_id, span_id, parent_id = self._trace_id(), self._id(), ""
        elif self.listener.shared:  # Zipkin's shared span context: the caller's span, shared
            trace_id, span_id, parent_id = parent.trace_id, parent.span_id, parent.parent_id
            shared = True
        else:
            trace_id, span_id, parent_id = parent.trace_id, self._id(), parent.span_id
        inject(head, found, headers_for(self.style, trace_id, span_id, parent_id, sampled))
        if sampled:
            record.trace = (trace_id, span_id, parent_id, shared)

    def finish(self, record: Record) -> None:
        assert record.trace is not None
        trace_id, span_id, parent_id, shared = record.trace
        self.offer(
            Span(
                self.listener,
                trace_id,
                span_id,
                parent_id,
                time.time() - record.duration,
                record.duration,
                record.status,
                record.head,
                record.upstream,
                record.error,
                shared,
            )
        )
