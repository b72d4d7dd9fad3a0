"""MeshTrace exporters (mesh_dp/tracing/export.py and the formats): batches reach a Zipkin
v2 JSON, an OTLP/HTTP, an OTLP/gRPC and a Datadog agent collector off the caller's thread;
a full queue or a backend that is down drops spans and counts them instead of waiting."""

from __future__ import annotations

import json
import sys
import time

import msgspec

from mesh_dp.tracing import datadog, zipkin
from mesh_dp.tracing.export import QUEUE_SPANS, RETRY_SECONDS, Exporter
from mesh_dp.tracing.span import Listener, Span
from meshfed.dpconfig.tracing import Tracing
from tests.support import free_port, wait_until
from tests.trace_collectors import GrpcCollector, HttpCollector, otlp_spans
from tests.unit.mesh_dp.tracing.test_tracer import head

CLIENT = Listener(False, "web", "backend", "backend", "default.web-1", "default", "zone-1")
SERVER = Listener(True, "backend", "", "localhost:8080", "default.backend-1", "default", "zone-2")


def span(listener: Listener, n: int = 1, parent: str = "", shared: bool = False) -> Span:
    return Span(
        listener, "a" * 32, f"{n:016x}", parent, 1700000000.0, 0.004, 200, head(), "", "", shared
    )


def test_zipkin_v2_json() -> None:
    conf = Tracing("zipkin", "http://z:9411/api/v2/spans", "web")
    req = zipkin.encode([span(CLIENT), span(SERVER, 2, parent="f" * 16, shared=True)], conf)
    assert (req.method, req.url, req.headers["Content-Type"]) == (
        "POST",
        "http://z:9411/api/v2/spans",
        "application/json",
    )
    client, server = json.loads(req.body)
    assert client["kind"] == "CLIENT" and server["kind"] == "SERVER"
    assert client["name"] == "egress backend:80" and server["name"] == "ingress"
    assert client["timestamp"] == 1700000000000000 and client["duration"] == 4000
    assert client["localEndpoint"] == {"serviceName": "web"}
    assert "parentId" not in client and server["parentId"] == "f" * 16
    assert server["shared"] is True and "shared" not in client
    assert server["tags"]["upstream_cluster"] == "localhost:8080"


def test_datadog_v04_with_split_services() -> None:
    conf = Tracing("datadog", "http://agent:8126/", "web", split_service=True)
    req = datadog.encode([span(CLIENT), span(SERVER, 2, parent="1" * 16)], conf)
    assert (req.method, req.url) == ("PUT", "http://agent:8126/v0.4/traces")
    (trace,) = msgspec.json.decode(req.body)
    assert [s["service"] for s in trace] == ["web_OUTBOUND_backend", "backend_INBOUND"]
    assert trace[0]["trace_id"] == int("a" * 16, 16) and trace[1]["parent_id"] == int("1" * 16, 16)
    assert trace[0]["name"] == "envoy.proxy" and trace[0]["resource"] == "egress backend:80"
    assert trace[0]["duration"] == 4_000_000


def test_spans_reach_http_collectors_in_batches() -> None:
    collector = HttpCollector(free_port()).start()
    base = f"http://127.0.0.1:{collector.port}"
    try:
        for kind, url in (
            ("zipkin", f"{base}/api/v2/spans"),
            ("otel", base),
            ("datadog", base),
        ):
            collector.received.clear()
            exporter = Exporter(Tracing(kind, url, "web"))  # type: ignore[arg-type]
            for n in range(1, 301):
                exporter.offer(span(CLIENT, n))
            wait_until(lambda e=exporter: e.exported == 300, 10, what=f"{kind}: 300 spans")
            assert exporter.dropped == 0
            assert len(collector.received) < 300  # batched
            exporter.close()
        assert {r.path for r in collector.received} == {"/v0.4/traces"}  # the last: Datadog
    finally:
        collector.stop()


def test_otlp_http_and_grpc_bodies_decode_with_the_opentelemetry_protobufs() -> None:
    http = HttpCollector(free_port()).start()
    grpc = GrpcCollector(free_port()).start()
    try:
        for url, got in (
            (f"http://127.0.0.1:{http.port}", http.otlp_spans),
            (f"127.0.0.1:{grpc.port}", grpc.spans),
        ):
            exporter = Exporter(Tracing("otel", url, "web"))
            for n in range(1, QUEUE_SPANS + 1):  # a batch is more than one HTTP/2 window
                exporter.offer(span(CLIENT, n))
            wait_until(lambda e=exporter: e.exported == QUEUE_SPANS, 10, what=f"{url}: all spans")
            spans = got()
            assert len(spans) == QUEUE_SPANS
            assert spans[0]["traceId"] == "a" * 32 and spans[0]["id"] == f"{1:016x}"
            assert spans[0]["service"] == "web" and spans[0]["kind"] == 3  # CLIENT
            assert spans[0]["tags"]["kuma.zone"] == "zone-1"
            exporter.close()
        assert all(r.headers["content-type"] == "application/x-protobuf" for r in http.received)
        assert otlp_spans(http.received[0].body)
    finally:
        http.stop()
        grpc.stop()


def test_a_backend_that_is_down_or_a_full_queue_costs_drops() -> None:
    exporter = Exporter(Tracing("zipkin", f"http://127.0.0.1:{free_port()}/s", "web"))
    for n in range(1, 101):
        exporter.offer(span(CLIENT, n))
    wait_until(lambda: exporter.dropped == 100, 10, what="100 spans dropped")
    assert exporter.exported == 0
    exporter.close()
    full = Exporter(Tracing("zipkin", "http://127.0.0.1:9/s", "web"), capacity=0)
    full.offer(span(CLIENT))
    assert full.dropped == 1 and not full.queue
    full.close()


def test_a_backend_down_is_failing_from_the_start_and_back_within_a_retry() -> None:
    """Decision 186: the exporter's first connection is tried when it starts, so the tracers
    pass requests unchanged from the first one; a connection is tried every RETRY_SECONDS
    meanwhile (nothing offered needed), and once the collector listens spans go out again."""
    port = free_port()
    exporter = Exporter(Tracing("zipkin", f"http://127.0.0.1:{port}/api/v2/spans", "web"))
    try:
        wait_until(lambda: exporter.failing, 5, what="the backend seen down with no span offered")
        exporter.offer(span(CLIENT))
        assert exporter.dropped == 1 and not exporter.queue
        collector = HttpCollector(port).start()
        try:
            up = time.monotonic()
            wait_until(lambda: not exporter.failing, 5, interval=0.02, what="the backend back")
            assert time.monotonic() - up < RETRY_SECONDS + 1.0
            exporter.offer(span(CLIENT, 2))
            wait_until(lambda: exporter.exported == 1, 5, what="a span sent once it is back")
            assert [s["id"] for s in collector.zipkin_spans()] == [f"{2:016x}"]
        finally:
            collector.stop()
    finally:
        exporter.close()


def test_a_failing_backends_exporter_ends_at_once_when_closed() -> None:
    exporter = Exporter(Tracing("otel", f"127.0.0.1:{free_port()}", "web"))
    wait_until(lambda: exporter.failing, 5, what="the backend seen down")
    closed = time.monotonic()
    exporter.close()
    wait_until(lambda: not exporter._thread.is_alive(), 5, interval=0.01, what="the thread ended")
    assert time.monotonic() - closed < RETRY_SECONDS / 2  # not after its wait for the retry


def test_the_otlp_messages_are_loaded_only_for_an_opentelemetry_backend() -> None:
    import subprocess

    code = (
        "import sys, mesh_dp.app, mesh_dp.tracing.export, mesh_dp.tracing.zipkin;"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_backend_never_up_loads_no_client_or_format_module() -> None:
    """A closed port: the exporter's probe fails, so neither the HTTP client, h2 nor the
    format's module is loaded (their memory, docs/benchmarks.md); the spans are dropped."""
    import subprocess

    code = (
        "import sys, time\n"
        "from mesh_dp.tracing.export import Exporter\n"
        "from meshfed.dpconfig.tracing import Tracing\n"
        "for kind, url in (('zipkin', 'http://127.0.0.1:%d/s'), ('otel', '127.0.0.1:%d')):\n"
        "    e = Exporter(Tracing(kind, url % int(sys.argv[1]), 'web'))\n"
        "    e.offer(object())\n"
        "    deadline = time.monotonic() + 10\n"
        "    while e.dropped < 1 and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    print(e.dropped, end=' ')\n"
        "print(sorted(m for m in ('http.client', 'h2', 'mesh_dp.otlp.transport',\n"
        "    'mesh_dp.tracing.zipkin', 'mesh_dp.tracing.otlp') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(free_port())], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1 1 []", out.stderr
