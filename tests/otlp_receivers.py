"""OTLP collectors run by the tests (issue 18): an OTLP/HTTP receiver (http.server) and an
OTLP/gRPC one (grpcio), on free loopback ports, decoding every request with the OpenTelemetry
protobufs and keeping what they got. Either can be told to fail (HTTP 503 / UNAVAILABLE)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from tests.support import free_port


class Received:
    """What a receiver got, decoded; `fail` makes it refuse the next requests."""

    def __init__(self) -> None:
        self.logs: list[ExportLogsServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()
        self.fail = False

    def take(self, kind: str, body: bytes) -> None:
        with self.lock:
            if kind == "logs":
                self.logs.append(ExportLogsServiceRequest.FromString(body))
            else:
                self.metrics.append(ExportMetricsServiceRequest.FromString(body))

    def records(self) -> list[tuple[dict[str, str], LogRecord]]:
        """Every LogRecord received, with its resource's attributes."""
        with self.lock:
            return [
                ({a.key: a.value.string_value for a in rl.resource.attributes}, rec)
                for req in self.logs
                for rl in req.resource_logs
                for sl in rl.scope_logs
                for rec in sl.log_records
            ]

    def metric_points(self) -> Iterator[tuple[dict[str, str], str, Any]]:
        """(resource attributes, metric name, data point) of every metric received."""
        with self.lock:
            requests = list(self.metrics)
        for req in requests:
            for rm in req.resource_metrics:
                resource = {a.key: a.value.string_value for a in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        for p in getattr(m, kind).data_points if kind else []:
                            yield resource, m.name, p

    def clear(self) -> None:
        with self.lock:
            self.logs.clear()
            self.metrics.clear()


def attrs(rec: LogRecord) -> dict[str, str]:
    return {a.key: a.value.string_value for a in rec.attributes}


def plain(value: AnyValue) -> Any:
    """An AnyValue as Python: strings, lists, dicts (kvlists)."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class HttpReceiver:
    """OTLP/HTTP with protobuf bodies at /v1/logs and /v1/metrics (under `prefix`)."""

    def __init__(self, prefix: str = "") -> None:
        self.got = Received()
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.path.removeprefix(prefix)
                ok = kind in ("/v1/logs", "/v1/metrics") and (
                    self.headers.get("Content-Type") == "application/x-protobuf"
                )
                if ok and not got.fail:
                    got.take(kind.removeprefix("/v1/"), body)
                    self.send_response(200)
                else:
                    self.send_response(503 if got.fail else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.port}{prefix}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver:
    """OTLP/gRPC: LogsService/Export and MetricsService/Export, plaintext (Kuma's host:port)."""

    def __init__(self) -> None:
        self.got = Received()
        got = self.got

        def handler(kind: str, response: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
            def export(body: bytes, context: grpc.ServicerContext) -> bytes:
                if got.fail:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
                got.take(kind, body)
                return bytes(response.SerializeToString())

            return grpc.unary_unary_rpc_method_handler(export)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.logs.v1.LogsService",
                    {"Export": handler("logs", ExportLogsServiceResponse())},
                ),
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.metrics.v1.MetricsService",
                    {"Export": handler("metrics", ExportMetricsServiceResponse())},
                ),
            )
        )
        self.port = free_port()
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()
        self.endpoint = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(None)
