"""Sending one export request, from an exporter's thread (blocking, with timeouts): the one
transport of MeshAccessLog's, MeshMetric's and MeshTrace's backends (decision 160).

OTLP/HTTP (`http://`, `https://` endpoints): POST of the protobuf body to `<path>/v1/<signal>`
on a kept-alive connection. OTLP/gRPC (Kuma's bare `host:port`): mesh_dp/otlp/grpc.py, imported
only for such an endpoint (h2 costs ~1 MiB). Any failure raises ExportError and drops the
connection; the next export opens a new one. MeshTrace's Zipkin and Datadog JSON go through the same
HTTP/1.1 client (`UrlSender`). Only exporter threads import this module (and h2 for gRPC).
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import urlsplit

from mesh_dp.http.parse import ProtocolError, ResponseHead, ResponseParser
from mesh_dp.otlp.probe import ExportError
from meshfed.policy.otlp import Endpoint

__all__ = ["SERVICES", "ExportError", "Http", "Sender", "UrlSender"]

TIMEOUT: Final = 2.0  # seconds for connecting and for each read
IDLE_STEP: Final = 0.01  # seconds between an exporter's `idle` calls while an answer is due

# What an exporter does while its collector prepares the answer: encode what was queued
# meanwhile (a queued request holds its head; decision 177). Must not raise.
Idle = Callable[[], None] | None
SERVICES: Final = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",  # MeshTrace
}
_PORTS: Final = {"http": 80, "https": 443}


class _Closed(ConnectionError):
    """The collector closed the connection before answering."""


class Http:
    """One kept HTTP/1.1 connection to `scheme://host:port`, for any request: OTLP/HTTP's
    POSTs and MeshTrace's Zipkin and Datadog JSON. The answer is read with the sidecar's own
    HTTP/1.1 parser (mesh_dp/http/parse.py): http.client would load 17 more modules
    (email's, ~0.3 MiB of the sidecar's RSS) and parse each answer's fields with them."""

    def __init__(self, scheme: str, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.where, self.timeout = (scheme, host, port), timeout
        self._sock: socket.socket | None = None
        name = f"[{host}]" if ":" in host else host
        self._host = name if port == _PORTS.get(scheme) else f"{name}:{port}"

    def connect(self) -> socket.socket:
        scheme, host, port = self.where
        if self._sock is None:
            sock = socket.create_connection((host, port), self.timeout)
            if scheme == "https":
                try:
                    sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
                except BaseException:
                    sock.close()
                    raise
            sock.settimeout(self.timeout)
            self._sock = sock
        return self._sock

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str], idle: Idle = None
    ) -> None:
        """Sends one request; ExportError unless the answer is a 2xx. `idle` is called every
        IDLE_STEP while the answer has not begun."""
        reused = self._sock is not None
        try:
            head, keep = self._call(method, path, body, headers, idle)
        except (_Closed, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            self.close()  # the collector closed the idle kept-alive connection: once more
            head, keep = self._call(method, path, body, headers, idle)
        if not keep:
            self.close()
        if head.status // 100 != 2:
            scheme, host, port = self.where
            reason = head.reason.decode("latin-1")
            raise ExportError(
                f"{method} {scheme}://{host}:{port}{path} answered {head.status} {reason}"
            )

    def _call(
        self, method: str, path: str, body: bytes, headers: dict[str, str], idle: Idle
    ) -> tuple[ResponseHead, bool]:
        """The final answer's head, and whether the connection can be kept."""
        sock = self.connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        # one send: a separate body would meet Nagle's algorithm and the delayed ACK
        sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        parser = ResponseParser(method.encode("latin-1"))
        final: ResponseHead | None = None
        got = False
        if idle is not None:
            _await(sock, self.timeout, idle)
        while not parser.done:
            data = sock.recv(65536)
            if not data and not got:
                raise _Closed("closed the connection")
            got = True
            for event in parser.feed(data) if data else parser.eof():
                if isinstance(event, ResponseHead) and event.status >= 200:
                    final = event
            if not data and not parser.done:
                raise _Closed("closed the connection inside its answer")
            if not data:
                assert final is not None
                return final, False
        assert final is not None
        return final, final.keep_alive and not parser.stray

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _await(sock: socket.socket, timeout: float, idle: Callable[[], None]) -> None:
    """Until `sock` has something to read (TimeoutError after `timeout`), calling `idle`
    every IDLE_STEP."""
    deadline = time.monotonic() + timeout
    ready = select.poll()  # not select(): a sidecar's descriptors may be past FD_SETSIZE
    ready.register(sock, select.POLLIN)
    while not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        if ready.poll(IDLE_STEP * 1000):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        idle()


class _Http(Http):
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        super().__init__(endpoint.scheme, endpoint.host, endpoint.port, timeout)
        self.endpoint = endpoint

    def send(self, signal: str, body: bytes, idle: Idle = None) -> None:
        path = f"{self.endpoint.path}/v1/{signal}"
        self.request("POST", path, body, {"Content-Type": "application/x-protobuf"}, idle)


class Sender:
    """One exporter's connection to its collector."""

    def __init__(self, endpoint: Endpoint, timeout: float = TIMEOUT) -> None:
        self.endpoint = endpoint
        self._impl: _Connection
        if endpoint.scheme == "grpc":
            from mesh_dp.otlp.grpc import Grpc  # h2 only for a gRPC endpoint

            self._impl = Grpc(endpoint, timeout)
        else:
            self._impl = _Http(endpoint, timeout)

    def connect(self) -> None:
        """Opens the connection if it is not open (ExportError if it cannot be), so an
        exporter renders and encodes nothing for a collector that is down."""
        self._call(lambda: self._impl.connect())

    def send(self, signal: str, body: bytes, idle: Idle = None) -> None:
        """Delivers one export request; ExportError (the connection dropped) otherwise.
        `idle`: called while the collector prepares its answer (OTLP/HTTP; gRPC waits)."""
        self._call(lambda: self._impl.send(signal, body, idle))

    def _call(self, action: Callable[[], object]) -> None:
        _guarded(self._impl, self.endpoint.url(""), action)

    def close(self) -> None:
        self._impl.close()


class _Closable(Protocol):
    def close(self) -> None: ...


class _Connection(_Closable, Protocol):
    def connect(self) -> object: ...

    def send(self, signal: str, body: bytes, idle: Idle = None) -> None: ...


def _guarded(conn: _Closable, where: str, action: Callable[[], object]) -> None:
    """Runs `action` on `conn`; any failure closes it and is raised as ExportError."""
    try:
        action()
    except ExportError:
        conn.close()
        raise
    except (OSError, ProtocolError, ValueError) as exc:
        conn.close()
        raise ExportError(f"{where}: {exc}") from None


class UrlSender:
    """Requests to whole URLs (MeshTrace's Zipkin and Datadog backends): one kept connection,
    replaced when a URL names another host."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._http: Http | None = None

    def connect(self, url: str) -> None:
        """Opens the connection to `url`'s host if it is not open (ExportError otherwise), so
        an exporter encodes nothing for a backend that is down."""
        http, _ = self._at(url)
        _guarded(http, url, http.connect)

    def send(
        self, method: str, url: str, body: bytes, headers: dict[str, str], idle: Idle = None
    ) -> None:
        """Delivers one request; ExportError (the connection dropped) otherwise."""
        http, path = self._at(url)
        _guarded(http, url, lambda: http.request(method, path, body, headers, idle))

    def _at(self, url: str) -> tuple[Http, str]:
        parts = urlsplit(url)
        try:
            where = (parts.scheme, parts.hostname or "", parts.port or _PORTS[parts.scheme])
        except (KeyError, ValueError):
            raise ExportError(f"{url}: not an http(s) URL with a valid port") from None
        if self._http is None or self._http.where != where:
            self.close()
            self._http = Http(*where, timeout=self.timeout)
        return self._http, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
