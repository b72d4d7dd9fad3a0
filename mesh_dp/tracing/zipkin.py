"""Zipkin API v2 JSON (`apiVersion: httpJson`): a batch is one POST of a span list to the
collector `url` (https://zipkin.io/zipkin-api/#/default/post_spans). A server span sharing
its caller's context carries `shared: true`, as Envoy's Zipkin tracer sends it."""

from __future__ import annotations

from typing import Any

import msgspec

from mesh_dp.tracing.span import Request, Span, encode_all, name_of, tags_of
from meshfed.dpconfig.tracing import Tracing

_ENCODER = msgspec.json.Encoder()


def span_json(span: Span) -> dict[str, Any]:
    lst = span.listener
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "id": span.span_id,
        "name": name_of(span),
        "kind": "SERVER" if lst.server else "CLIENT",
        "timestamp": int(span.start * 1_000_000),
        "duration": max(1, int(span.duration * 1_000_000)),
        "localEndpoint": {"serviceName": lst.service},
        "tags": tags_of(span),
    }
    if span.parent_id:
        out["parentId"] = span.parent_id
    if span.shared:
        out["shared"] = True
    return out


class Encoder:
    """A batch: each span's JSON object encoded as it is added."""

    def __init__(self) -> None:
        self._spans: list[bytes] = []

    def add(self, span: Span) -> int:
        data = _ENCODER.encode(span_json(span))
        self._spans.append(data)
        return len(data)

    def take(self, conf: Tracing) -> Request:
        body = b"[" + b",".join(self._spans) + b"]"
        self._spans = []
        return Request("POST", conf.url, body, {"Content-Type": "application/json"})

    def clear(self) -> None:
        self._spans = []


def encode(spans: list[Span], conf: Tracing) -> Request:
    return encode_all(Encoder(), spans, conf)
