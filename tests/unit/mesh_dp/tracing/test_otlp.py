"""MeshTrace's OTLP spans written from the records (mesh_dp/tracing/otlp.py, decision 177):
byte for byte what the opentelemetry-proto messages built from span.py's `tags_of` and
`name_of` serialize (the reference below is the encoder it replaced), from a `Span` or from
the queued (listener, record, end), for random heads, statuses and policy tags (names that
replace a standard tag or repeat included)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from mesh_dp.http.accesslog import Record
from mesh_dp.http.parse import RequestHead, RequestParser
from mesh_dp.tracing import otlp
from mesh_dp.tracing.span import Listener, Span, name_of, tags_of
from meshfed.dpconfig.tracing import TraceTag, Tracing


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def reference_span(span: Span) -> PbSpan:
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


def reference_request(spans: list[Span], conf: Tracing) -> bytes:
    message = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[_kv("service.name", conf.service)]),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name="meshfed"),
                        spans=[reference_span(s) for s in spans],
                    )
                ],
            )
        ]
    )
    return message.SerializeToString()


value = st.text(st.sampled_from("abz09 -/:.é\t"), max_size=12).map(lambda s: s.strip())
fields = st.lists(
    st.tuples(
        st.sampled_from([b"Host", b"user-agent", b"X-Request-Id", b"x-tenant", b"accept"]), value
    ),
    max_size=6,
)


@st.composite
def heads(draw: st.DrawFn) -> RequestHead | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    method = draw(st.sampled_from([b"GET", b"POST", b"DELETE"]))
    target = b"/" + draw(st.text(st.sampled_from("ab/?=%~"), max_size=10)).encode("latin-1")
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    lines = b"".join(k + b": " + v.encode("latin-1") + b"\r\n" for k, v in draw(fields))
    raw = method + b" " + target + b" HTTP/" + version + b"\r\n" + lines + b"\r\n"
    head = RequestParser().feed(raw)[0]
    assert isinstance(head, RequestHead)
    return head


names = st.sampled_from(["team", "tenant", "zone", "http.url", "error", "kuma.mesh"])
tags = st.lists(
    st.one_of(
        st.builds(TraceTag, names, literal=value),
        st.builds(
            TraceTag,
            names,
            header=st.sampled_from(["x-tenant", "user-agent", "x-missing"]),
            default=st.none() | value,
        ),
    ),
    max_size=3,
)
listeners = st.builds(
    Listener,
    st.booleans(),
    st.just("web"),
    st.sampled_from(["", "backend"]),
    st.sampled_from(["backend", "localhost:8080"]),
    st.just("default.web-1"),
    st.just("default"),
    st.sampled_from(["zone-1", "zoné"]),
    tags.map(tuple),
)
hexes = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")
spans = st.builds(
    Span,
    listeners,
    st.one_of(hexes, st.tuples(hexes, hexes).map("".join)),
    hexes,
    st.one_of(st.just(""), hexes),
    st.floats(1.6e9, 1.8e9),
    st.floats(0, 10),
    st.sampled_from([0, 200, 404, 500, 503]),
    heads(),
    st.sampled_from(["", "10.0.0.1:8080"]),
    st.sampled_from(["", "timeout"]),
)


def queued(span: Span) -> tuple[Listener, Record, float]:
    """The span as the tracer queues it: the listener, the record, the time it ended."""
    record = Record("outbound", "web", status=span.status, duration=span.duration)
    record.head, record.upstream, record.error = span.head, span.upstream, span.error
    record.trace = (span.trace_id.encode(), span.span_id.encode(), span.parent_id.encode(), False)
    return (span.listener, record, span.start + span.duration)


@settings(max_examples=300)
@given(spans)
def test_a_span_is_what_the_otel_messages_serialize(span: Span) -> None:
    want = reference_span(span).SerializeToString()
    assert otlp.Encoder().span(span) == want
    listener, record, end = queued(span)
    # from the record, its start is `end - duration`: the float may differ in the last bit
    span.start = end - record.duration
    assert otlp.Encoder().span((listener, record, end)) == reference_span(span).SerializeToString()


@settings(max_examples=50)
@given(st.lists(spans, max_size=4), st.sampled_from(["web", "bäckend"]))
def test_a_batch_is_what_the_otel_messages_serialize(batch: list[Span], service: str) -> None:
    conf = Tracing("otel", "http://collector:4318", service)
    req = otlp.encode(batch, conf)
    assert req.body == reference_request(batch, conf)
    assert (req.method, req.url, req.headers) == (
        "POST",
        "http://collector:4318",
        {"Content-Type": "application/x-protobuf"},
    )


def test_one_encoder_keeps_each_listeners_shared_parts() -> None:
    enc = otlp.Encoder()
    a = Listener(False, "web", "backend", "backend", "default.web-1", "default", "zone-1")
    b = Listener(True, "web", "", "localhost:8080", "default.web-1", "default", "zone-1")
    for lst in (a, b, a, b):
        span = Span(lst, "1" * 16, "2" * 16, "", 1.7e9, 0.5, 200, None, "", "")
        assert enc.span(span) == reference_span(span).SerializeToString()
