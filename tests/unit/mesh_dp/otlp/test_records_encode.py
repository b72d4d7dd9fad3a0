"""The OTLP encoders' pure parts (mesh_dp/otlp/records.py, promparse.py, encode.py): an
access-log event as a LogRecord, Prometheus text as OTLP metrics, decoded back with the
OpenTelemetry protobufs."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from mesh_dp.accesslog_format import Event
from mesh_dp.http.parse import RequestHead, RequestParser
from mesh_dp.otlp.encode import metrics_request
from mesh_dp.otlp.promparse import histograms, parse
from mesh_dp.otlp.records import compile_record
from mesh_dp.otlp.wire import logs_request
from meshfed.dpconfig.observability import LogFormat
from meshfed.policy.otlp import body_text
from tests.otlp_receivers import plain

TCP = Event("outbound", "default", "web", "backend", 1700000000.25, 0.5, sent=10, received=4)


def http_event() -> Event:
    (head, *_) = RequestParser().feed(b"GET /x HTTP/1.1\r\nHost: backend\r\n\r\n")
    assert isinstance(head, RequestHead)
    return Event("inbound", "default", "web", "backend", 1.7e9, 0.01, 200, 5, 0, "", head, "1.1")


def test_default_body_is_kumas_default_format_per_kind() -> None:
    render = compile_record(LogFormat())
    tcp = render(TCP)
    assert tcp.start_ns == 1700000000250000000
    kind, text = tcp.body
    assert kind == "string" and "(web)->-(backend) took 500ms, sent 10 bytes" in text
    kind, text = render(http_event()).body
    assert kind == "string" and '"GET /x HTTP/1.1" 200' in text and '"web" "backend"' in text


def test_kvlist_body_and_attributes_are_rendered_per_event() -> None:
    body = {
        "kvlistValue": {
            "values": [
                {"key": "src", "value": {"stringValue": "%KUMA_SOURCE_SERVICE%"}},
                {"key": "%KUMA_TRAFFIC_DIRECTION%", "value": {"intValue": 1}},
            ]
        }
    }
    fmt = LogFormat(
        json=(("dst", "%KUMA_DESTINATION_SERVICE%"), ("up", "%UPSTREAM_HOST%")),
        body=body_text(body),
    )
    parts = compile_record(fmt)(TCP)
    assert parts.body == ("kvlist", [("src", ("string", "web")), ("OUTBOUND", ("int", 1))])
    assert parts.attributes == [("dst", "backend"), ("up", "-")]


def test_logs_request_decodes_with_the_otel_protobufs() -> None:
    fmt = LogFormat(
        json=(("dst", "%KUMA_DESTINATION_SERVICE%"),),
        body=body_text(
            {
                "kvlistValue": {
                    "values": [
                        {
                            "key": "a",
                            "value": {
                                "arrayValue": {
                                    "values": [{"doubleValue": 1.5}, {"bytesValue": "aGk="}]
                                }
                            },
                        }
                    ]
                }
            }
        ),
    )
    records = [compile_record(fmt)(TCP), compile_record(LogFormat())(TCP)]
    body = logs_request([("kuma.zone", "zone-1")], records, 1700000001000000000)
    req = ExportLogsServiceRequest.FromString(body)
    (rl,) = req.resource_logs
    assert rl.resource.attributes[0].key == "kuma.zone"
    first, second = rl.scope_logs[0].log_records
    assert plain(first.body) == {"a": [1.5, b"hi"]}
    assert first.attributes[0].value.string_value == "backend"
    assert first.time_unix_nano == 1700000000250000000
    assert first.observed_time_unix_nano == 1700000001000000000
    assert "took 500ms" in second.body.string_value


PROM = """# HELP req_total Requests.
# TYPE req_total counter
req_total{service="backend",code="200"} 3.0
req_created{service="backend",code="200"} 1.7e9
# HELP up Up.
# TYPE up gauge
up 1
# TYPE lat histogram
lat_bucket{service="b",le="0.1"} 2.0
lat_bucket{service="b",le="1.0"} 5.0
lat_bucket{service="b",le="+Inf"} 6.0
lat_sum{service="b"} 3.5
lat_count{service="b"} 6.0
# TYPE q summary
q{quantile="0.5"} 0.2
q_sum 1.0
q_count 4
app_metric{path="a\\"b"} 7 1700000000000
"""


def test_prometheus_text_is_read_back_into_families() -> None:
    fams = {f.name: f for f in parse(PROM)}
    assert [s.value for s in fams["req_total"].samples] == [3.0]  # _created left out
    assert fams["up"].kind == "gauge"
    (h,) = histograms(fams["lat"])
    assert (h.bounds, h.counts, h.sum, h.count) == ([0.1, 1.0], [2, 3, 1], 3.5, 6)
    assert h.labels == (("service", "b"),)
    assert fams["app_metric"].kind == "untyped"
    assert fams["app_metric"].samples[0].labels == (("path", 'a"b'),)


def test_metrics_request_decodes_with_the_otel_protobufs() -> None:
    body = metrics_request(
        [("kuma.mesh", "default")], [("mesh-dp", parse(PROM)), ("app", [])], 1, 2
    )
    req = ExportMetricsServiceRequest.FromString(body)
    (rm,) = req.resource_metrics
    sm, app = rm.scope_metrics
    assert sm.scope.name == "mesh-dp" and app.scope.name == "app"
    by = {m.name: m for m in sm.metrics}
    assert by["req_total"].sum.is_monotonic
    point = by["req_total"].sum.data_points[0]
    assert point.as_double == 3.0 and point.start_time_unix_nano == 1 and point.time_unix_nano == 2
    assert {a.key: a.value.string_value for a in point.attributes} == {
        "service": "backend",
        "code": "200",
    }
    assert by["up"].gauge.data_points[0].as_double == 1
    assert list(by["lat"].histogram.data_points[0].bucket_counts) == [2, 3, 1]
    assert by["q"].summary.data_points[0].quantile_values[0].value == 0.2
    assert by["app_metric"].gauge.data_points[0].as_double == 7
