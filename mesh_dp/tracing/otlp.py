"""OpenTelemetry export of spans (OTLP, https://opentelemetry.io/docs/specs/otlp/): one
ExportTraceServiceRequest per batch, encoded with the opentelemetry-proto messages (this
module, and so protobuf, is imported only by the exporter thread of an OpenTelemetry
backend). Sent as OTLP/HTTP protobuf (POST) when the endpoint has a scheme, else over
OTLP/gRPC to Kuma's `host:port` form, plaintext: one unary TraceService/Export call per
batch on the sidecar's own pure-Python HTTP/2 state machine (`h2`, as its config stream;
no grpcio in the sidecar)."""

from __future__ import annotations

import contextlib
import socket

import h2.config
import h2.connection
import h2.events
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from mesh_dp.tracing.export import HttpSender
from mesh_dp.tracing.span import Request, Span, name_of, tags_of
from meshfed.dpconfig.tracing import Tracing
from meshfed.proxy.h2state import frame, split_target, status_name

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TIMEOUT = 5.0


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


class GrpcSender:
    """One unary OTLP/gRPC call per batch, on a connection of its own (blocking: the
    exporter's thread)."""

    def __call__(self, req: Request) -> None:
        host, port = split_target(req.url)
        with socket.create_connection((host, port), TIMEOUT) as sock:
            sock.settimeout(TIMEOUT)
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            )
            conn.initiate_connection()
            sid = conn.get_next_available_stream_id()
            conn.send_headers(
                sid,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", EXPORT_PATH),
                    (":authority", req.url),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
            )
            sock.sendall(conn.data_to_send())
            _call(sock, conn, sid, frame(req.body))

    def close(self) -> None:
        pass


def _str(raw: str | bytes) -> str:
    return raw.decode("latin-1") if isinstance(raw, bytes) else raw


def _call(sock: socket.socket, conn: h2.connection.H2Connection, sid: int, data: bytes) -> None:
    """Sends `data` as the flow-control windows allow, then reads until the call ends."""
    status: str | None = None
    message = ""
    ended = False
    while not ended:
        while data:
            window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
            if window <= 0:
                break
            chunk, data = data[:window], data[window:]
            conn.send_data(sid, chunk, end_stream=not data)
            sock.sendall(conn.data_to_send())
        received = sock.recv(65536)
        if not received:
            raise OSError("the OTLP/gRPC server closed the connection")
        for ev in conn.receive_data(received):
            if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                fields = {_str(k): _str(v) for k, v in ev.headers or ()}
                status = fields.get("grpc-status", status)
                message = fields.get("grpc-message", message)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                ended = ended or ev.stream_id == sid
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise OSError("the OTLP/gRPC server ended the connection")
        with contextlib.suppress(OSError):
            sock.sendall(conn.data_to_send())
    if status != "0":
        raise OSError(f"OTLP/gRPC Export: {status_name(status)} {message}".rstrip())


class Sender:
    """OTLP/HTTP for a URL with a scheme, OTLP/gRPC for `host:port`."""

    def __init__(self) -> None:
        self.http, self.grpc = HttpSender(), GrpcSender()

    def __call__(self, req: Request) -> None:
        if "://" in req.url:
            self.http(req)
        else:
            self.grpc(req)

    def close(self) -> None:
        self.http.close()


sender = Sender  # the exporter's sender for this format
