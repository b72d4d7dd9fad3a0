"""Sending one export request, from an exporter's thread (blocking, with timeouts): the one
transport of MeshAccessLog's, MeshMetric's and MeshTrace's backends (decision 160).

OTLP/HTTP (`http://`, `https://` endpoints): POST of the protobuf body to `<path>/v1/<signal>`
on a kept-alive connection. OTLP/gRPC (Kuma's bare `host:port`): a unary call on a kept
HTTP/2 connection driven by the `h2` state machine the proxies already use for their config
stream (meshfed/proxy/h2state.py), not grpcio, which a sidecar may not import (decision 34):
the request is one DATA frame sequence ended with END_STREAM, the answer's `grpc-status`
trailer says whether it was taken. Any failure raises ExportError and drops the connection;
the next export opens a new one. MeshTrace's Zipkin and Datadog JSON go through the same
HTTP/1.1 client (`UrlSender`). Only exporter threads import this module (http.client, h2).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from meshfed.policy.otlp import Endpoint
from meshfed.proxy.h2state import frame

TIMEOUT: Final = 2.0  # seconds for connecting and for each read
SERVICES: Final = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",  # MeshTrace
}
_PORTS: Final = {"http": 80, "https": 443}


class ExportError(Exception):
    """The collector did not take the request (unreachable, refused, or an error status)."""


class Http:
    """One kept HTTP/1.1 connection to `scheme://host:port`, for any request: OTLP/HTTP's
    POSTs and MeshTrace's Zipkin and Datadog JSON."""

    def __init__(self, scheme: str, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.where, self.timeout = (scheme, host, port), timeout
        self._conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        scheme, host, port = self.where
        if self._conn is None:
            if scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            conn.connect()
            self._conn = conn
        return self._conn

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        """Sends one request; ExportError unless the answer is a 2xx."""
        reused = self._conn is not None
        try:
            resp = self._call(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            self.close()  # the collector closed the idle kept-alive connection: once more
            resp = self._call(method, path, body, headers)
        if resp.status // 100 != 2:
            scheme, host, port = self.where
            raise ExportError(
                f"{method} {scheme}://{host}:{port}{path} answered {resp.status} {resp.reason}"
            )
        if resp.getheader("Connection", "").lower() == "close":
            self.close()

    def _call(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        conn = self.connect()
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        resp.read()
        return resp

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Http(Http):
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        super().__init__(endpoint.scheme, endpoint.host, endpoint.port, timeout)
        self.endpoint = endpoint

    def send(self, signal: str, body: bytes) -> None:
        path = f"{self.endpoint.path}/v1/{signal}"
        self.request("POST", path, body, {"Content-Type": "application/x-protobuf"})


def _headers(raw: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw if isinstance(raw, list) else []:
        out[k.decode() if isinstance(k, bytes) else str(k)] = (
            v.decode() if isinstance(v, bytes) else str(v)
        )
    return out


class _Grpc:
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self._sock: socket.socket | None = None
        self._h2: h2.connection.H2Connection | None = None

    def connect(self) -> tuple[socket.socket, h2.connection.H2Connection]:
        if self._sock is not None and self._h2 is not None:
            return self._sock, self._h2
        e = self.endpoint
        sock = socket.create_connection((e.host, e.port), self.timeout)
        sock.settimeout(self.timeout)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        self._sock, self._h2 = sock, conn
        return sock, conn

    def _pump(self, sock: socket.socket, conn: h2.connection.H2Connection) -> list[object]:
        data = sock.recv(65536)
        if not data:
            raise ExportError(f"{self.endpoint.url('')} closed the connection")
        events: list[object] = list(conn.receive_data(data))
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        return events

    def send(self, signal: str, body: bytes) -> None:
        sock, conn = self.connect()
        sid = conn.get_next_available_stream_id()
        e = self.endpoint
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", SERVICES[signal]),
                (":authority", e.url(signal)),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        payload = memoryview(frame(body))
        status: str | None = None
        ended = False
        while payload or not ended:
            if payload:
                n = min(
                    len(payload), conn.local_flow_control_window(sid), conn.max_outbound_frame_size
                )
                if n > 0:
                    conn.send_data(sid, payload[:n].tobytes(), end_stream=n == len(payload))
                    payload = payload[n:]
                    sock.sendall(conn.data_to_send())
                    continue
            for ev in self._pump(sock, conn):
                if isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    if ev.stream_id == sid:
                        headers = _headers(ev.headers)
                        status = headers.get("grpc-status", status)
                        if headers.get(":status", "200") != "200":
                            raise ExportError(f"{e.url(signal)} answered HTTP {headers[':status']}")
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    if ev.stream_id == sid:
                        ended = True
                        if isinstance(ev, h2.events.StreamReset):
                            raise ExportError(f"{e.url(signal)} reset the call")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise ExportError(f"{e.url(signal)} closed the connection (GOAWAY)")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        if status != "0":
            raise ExportError(f"{e.url(signal)} answered gRPC status {status or 'none'}")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = self._h2 = None


class Sender:
    """One exporter's connection to its collector."""

    def __init__(self, endpoint: Endpoint, timeout: float = TIMEOUT) -> None:
        self.endpoint = endpoint
        self._impl = (
            _Grpc(endpoint, timeout) if endpoint.scheme == "grpc" else _Http(endpoint, timeout)
        )

    def connect(self) -> None:
        """Opens the connection if it is not open (ExportError if it cannot be), so an
        exporter renders and encodes nothing for a collector that is down."""
        self._call(lambda: self._impl.connect())

    def send(self, signal: str, body: bytes) -> None:
        """Delivers one export request; ExportError (the connection dropped) otherwise."""
        self._call(lambda: self._impl.send(signal, body))

    def _call(self, action: Callable[[], object]) -> None:
        _guarded(self._impl, self.endpoint.url(""), action)

    def close(self) -> None:
        self._impl.close()


class _Closable(Protocol):
    def close(self) -> None: ...


def _guarded(conn: _Closable, where: str, action: Callable[[], object]) -> None:
    """Runs `action` on `conn`; any failure closes it and is raised as ExportError."""
    try:
        action()
    except ExportError:
        conn.close()
        raise
    except (OSError, http.client.HTTPException, h2.exceptions.H2Error, ValueError) as exc:
        conn.close()
        raise ExportError(f"{where}: {exc}") from None


class UrlSender:
    """Requests to whole URLs (MeshTrace's Zipkin and Datadog backends): one kept connection,
    replaced when a URL names another host."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._http: Http | None = None

    def send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Delivers one request; ExportError (the connection dropped) otherwise."""
        parts = urlsplit(url)
        try:
            where = (parts.scheme, parts.hostname or "", parts.port or _PORTS[parts.scheme])
        except (KeyError, ValueError):
            raise ExportError(f"{url}: not an http(s) URL with a valid port") from None
        if self._http is None or self._http.where != where:
            self.close()
            self._http = Http(*where, timeout=self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._http
        _guarded(conn, url, lambda: conn.request(method, path, body, headers))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
