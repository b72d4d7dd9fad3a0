"""Whether a collector listens, asked before anything is loaded for it (decision 174).

An exporter whose backend is down would otherwise import its HTTP client (http.client, h2) and
its format (the OpenTelemetry protobuf messages, Zipkin's or Datadog's JSON) for a first batch
it cannot send, and keep them: about a megabyte of the sidecar's RSS for nothing
(docs/benchmarks.md). One TCP connect, closed at once, says whether to load them; the
exporters make it before their first connection only.
"""

from __future__ import annotations

import socket

PROBE_SECONDS = 2.0  # as the transport's connect timeout (mesh_dp/otlp/transport.py)


class ExportError(Exception):
    """The collector did not take the request (unreachable, refused, or an error status)."""


def probe(host: str, port: int, timeout: float = PROBE_SECONDS) -> None:
    """ExportError unless a TCP connection to host:port opens."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ExportError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
