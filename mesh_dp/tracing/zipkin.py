"""Zipkin API v2 JSON (`apiVersion: httpJson`): a batch is one POST of a span list to the
collector `url` (https://zipkin.io/zipkin-api/#/default/post_spans). A server span sharing
its caller's context carries `shared: true`, as Envoy's Zipkin tracer sends it."""

from __future__ import annotations

from typing import Any

import msgspec

from mesh_dp.tracing.span import Request, Span, name_of, tags_of
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


def encode(spans: list[Span], conf: Tracing) -> Request:
    body = _ENCODER.encode([span_json(s) for s in spans])
    return Request("POST", conf.url, body, {"Content-Type": "application/json"})
