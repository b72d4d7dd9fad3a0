"""Datadog agent traces API v0.4 (JSON): a batch is one PUT to `<url>/v0.4/traces` of a
list of traces, each a list of spans with 64-bit integer ids
(https://docs.datadoghq.com/tracing/guide/send_traces_to_agent_by_api/). As Envoy's
Datadog tracer: operation `envoy.proxy`, the resource the operation name, the service the
Dataplane's, or with `splitService` `<service>_INBOUND` / `<service>_OUTBOUND_<dest>`."""

from __future__ import annotations

from typing import Any

import msgspec

from mesh_dp.tracing.span import Request, Span, encode_all, name_of, tags_of
from meshfed.dpconfig.tracing import Tracing

_ENCODER = msgspec.json.Encoder()


def service_of(span: Span, split: bool) -> str:
    lst = span.listener
    if not split:
        return lst.service
    if lst.server:
        return f"{lst.service}_INBOUND"
    return f"{lst.service}_OUTBOUND_{lst.destination}"


def span_json(span: Span, split: bool) -> dict[str, Any]:
    tags = tags_of(span)
    out: dict[str, Any] = {
        "trace_id": int(span.trace_id[-16:], 16),
        "span_id": int(span.span_id, 16),
        "parent_id": int(span.parent_id, 16) if span.parent_id else 0,
        "name": "envoy.proxy",
        "resource": name_of(span),
        "service": service_of(span, split),
        "type": "web",
        "start": int(span.start * 1_000_000_000),
        "duration": max(1, int(span.duration * 1_000_000_000)),
        "error": 1 if tags.get("error") == "true" else 0,
        "meta": {**tags, "span.kind": "server" if span.listener.server else "client"},
    }
    return out


class Encoder:
    """A batch: each span's JSON object encoded as it is added, grouped by trace."""

    def __init__(self, split: bool) -> None:
        self.split = split
        self._traces: dict[str, list[bytes]] = {}

    def add(self, span: Span) -> int:
        data = _ENCODER.encode(span_json(span, self.split))
        self._traces.setdefault(span.trace_id, []).append(data)
        return len(data)

    def take(self, conf: Tracing) -> Request:
        traces, self._traces = self._traces, {}
        body = b"[" + b",".join(b"[" + b",".join(t) + b"]" for t in traces.values()) + b"]"
        url = conf.url.rstrip("/") + "/v0.4/traces"
        headers = {"Content-Type": "application/json", "X-Datadog-Trace-Count": str(len(traces))}
        return Request("PUT", url, body, headers)

    def clear(self) -> None:
        self._traces = {}


def encode(spans: list[Span], conf: Tracing) -> Request:
    return encode_all(Encoder(conf.split_service), spans, conf)
