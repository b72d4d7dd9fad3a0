"""mesh_dp/otlp/wire.py writes OTLP messages without protobuf objects (decision 177): its
bytes must be exactly what the opentelemetry-proto messages serialize for the same input
(the references below are the encoders it replaced), for any value a MeshAccessLog
`body` or attribute renders to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from mesh_dp.otlp import wire
from mesh_dp.otlp.records import LogParts, Value


def _fill(target: AnyValue, value: Value) -> None:
    kind, raw = value
    if kind == "string":
        target.string_value = raw
    elif kind == "bool":
        target.bool_value = raw
    elif kind == "int":
        target.int_value = raw
    elif kind == "double":
        target.double_value = raw
    elif kind == "bytes":
        target.bytes_value = raw
    elif kind == "array":
        target.array_value.SetInParent()
        for item in raw:
            _fill(target.array_value.values.add(), item)
    elif kind == "kvlist":
        target.kvlist_value.SetInParent()
        for key, item in raw:
            kv = target.kvlist_value.values.add(key=key)
            _fill(kv.value, item)


def _strings(pairs: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in pairs]


def reference_logs(
    resource: Sequence[tuple[str, str]], records: Iterable[LogParts], now_ns: int
) -> bytes:
    scope_logs = ScopeLogs(scope=InstrumentationScope(name=wire.SCOPE))
    for r in records:
        rec = scope_logs.log_records.add()
        rec.time_unix_nano = r.start_ns
        rec.observed_time_unix_nano = now_ns
        _fill(rec.body, r.body)
        rec.attributes.extend(_strings(r.attributes))
    req = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(resource=Resource(attributes=_strings(resource)), scope_logs=[scope_logs])
        ]
    )
    return req.SerializeToString()


text = st.text(max_size=20)
scalars: st.SearchStrategy[Value] = st.one_of(
    st.tuples(st.just("string"), text),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("double"), st.floats(allow_nan=False)),
    st.tuples(st.just("bytes"), st.binary(max_size=20)),
)
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(st.just("array"), st.lists(inner, max_size=3)),
        st.tuples(st.just("kvlist"), st.lists(st.tuples(text, inner), max_size=3)),
    ),
    max_leaves=8,
)
bodies = st.one_of(values, st.just(("empty", None)))
records = st.builds(
    LogParts,
    st.integers(0, 2**64 - 1),
    bodies,
    st.lists(st.tuples(text, text), max_size=4),
)


@given(st.integers(0, 2**64 - 1))
def test_varints_are_protobufs(n: int) -> None:
    assert (
        wire.varint(n) == AnyValue(int_value=n - 2**64 if n >= 2**63 else n).SerializeToString()[1:]
    )


@given(values)
def test_any_values_are_protobufs(value: Value) -> None:
    ref = AnyValue()
    _fill(ref, value)
    assert wire.any_value(value) == ref.SerializeToString()


@settings(max_examples=200)
@given(
    st.lists(st.tuples(text, text), max_size=4),
    st.lists(records, max_size=5),
    st.integers(0, 2**64 - 1),
)
def test_logs_requests_are_protobufs(
    resource: list[tuple[str, str]], parts: list[LogParts], now_ns: int
) -> None:
    assert wire.logs_request(resource, parts, now_ns) == reference_logs(resource, parts, now_ns)


def test_a_request_decodes_with_the_otel_protobufs() -> None:
    parts = [LogParts(5, ("kvlist", [("a", ("int", -1))]), [("k", "vé")])]
    req = ExportLogsServiceRequest.FromString(wire.logs_request([("r", "1")], parts, 7))
    (rec,) = req.resource_logs[0].scope_logs[0].log_records
    assert rec.body.kvlist_value.values[0].value.int_value == -1
    assert rec.attributes[0].value.string_value == "vé"
    assert (rec.time_unix_nano, rec.observed_time_unix_nano) == (5, 7)
    assert req.resource_logs[0].scope_logs[0].scope.name == "meshfed.mesh-dp"
