"""OpenTelemetry export of spans (OTLP, https://opentelemetry.io/docs/specs/otlp/): one
ExportTraceServiceRequest per batch, encoded with the opentelemetry-proto messages (this
module, and so protobuf, is imported only by the exporter thread of an OpenTelemetry
backend). mesh_dp/otlp/transport.py sends it as MeshAccessLog's and MeshMetric's OTLP:
OTLP/HTTP to `<path>/v1/traces` when the endpoint has a scheme, else OTLP/gRPC to Kuma's
`host:port` form (decisions 141, 142)."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from mesh_dp.tracing.span import Request, Span, name_of, tags_of
from meshfed.dpconfig.tracing import Tracing


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span_pb(span: Span) -> PbSpan:
    start = int(span.start * 1_000_000_000)
    tags = tags_of(span)
    return PbSpan(
        trace_id=bytes.fromhex(span.trace_id.rjust(32, "0")),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_id) if span.parent_id else b"",
        name=name_of(span),
        kind=PbSpan.SPAN_KIND_SERVER if span.listener.server else PbSpan.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + max(1, int(span.duration * 1_000_000_000)),
        attributes=[_kv(k, v) for k, v in tags.items()],
        status=Status(
            code=Status.STATUS_CODE_ERROR
            if tags.get("error") == "true"
            else Status.STATUS_CODE_UNSET
        ),
    )


def encode(spans: list[Span], conf: Tracing) -> Request:
    message = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", conf.service)]),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name="meshfed"),
                        spans=[span_pb(s) for s in spans],
                    )
                ],
            )
        ]
    )
    headers = {"Content-Type": "application/x-protobuf"}
    return Request("POST", conf.url, message.SerializeToString(), headers)
