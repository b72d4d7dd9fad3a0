"""Trace collectors run by tests: an HTTP one (Zipkin v2 JSON, OTLP/HTTP protobuf, the
Datadog agent's /v0.4/traces) and an OTLP/gRPC one (grpcio, the test's side only), each
keeping what it received, decoded."""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpCollector:
    """A collector on 127.0.0.1:`port`, answering 202 to every POST/PUT."""

    port: int
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> HttpCollector:
        got = self.received

        class Handler(BaseHTTPRequestHandler):
            def _take(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got.append(
                    Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _take

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def zipkin_spans(self) -> list[dict[str, Any]]:
        return [s for r in list(self.received) for s in json.loads(r.body)]

    def otlp_spans(self) -> list[dict[str, Any]]:
        return [s for r in list(self.received) for s in otlp_spans(r.body)]


def otlp_spans(body: bytes) -> list[dict[str, Any]]:
    """The spans of an ExportTraceServiceRequest, ids as hex, attributes as a dict."""
    req = ExportTraceServiceRequest.FromString(body)
    out = []
    for rs in req.resource_spans:
        resource = {a.key: a.value.string_value for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "service": resource.get("service.name"),
                        "traceId": s.trace_id.hex(),
                        "id": s.span_id.hex(),
                        "parentId": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "tags": {a.key: a.value.string_value for a in s.attributes},
                    }
                )
    return out


class GrpcCollector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """OTLP/gRPC TraceService on 127.0.0.1:`port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[bytes] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{port}")

    def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        self.bodies.append(request.SerializeToString())
        return ExportTraceServiceResponse()

    def start(self) -> GrpcCollector:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(None)

    def spans(self) -> list[dict[str, Any]]:
        return [s for b in list(self.bodies) for s in otlp_spans(b)]
