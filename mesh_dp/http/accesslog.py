"""One access-log line per request (mesh-dp `--access-log`). Pure: formats, never writes.

    2025-01-01T00:00:00.123Z outbound backend "GET /a HTTP/1.1" 200 512 3.2ms \
        upstream=10.0.0.5:8080 error=-

(one line; wrapped here).

Fields: time (UTC), direction, service, request line (method, target cut at 256 bytes,
version), status (0: no response), response body bytes, duration, the endpoint that answered
(`-` when the sidecar answered) and the sidecar's error kind (`-`: none).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mesh_dp.http.parse import RequestHead

MAX_TARGET = 256


@dataclass(slots=True)
class Record:
    direction: str  # "inbound" / "outbound"
    service: str
    method: bytes = b""
    target: bytes = b""
    version: str = "1.1"
    status: int = 0
    sent: int = 0  # response body bytes to the client
    duration: float = 0.0  # seconds
    upstream: str = ""
    error: str = ""
    head: RequestHead | None = None  # the request (MeshAccessLog %REQ(...)%)
    peer: str | None = None  # the caller's SPIFFE ID (inbound, with mTLS)
    trace: tuple[bytes, bytes, bytes, bool] | None = None  # a sampled MeshTrace span (tracing/)


def _safe(raw: bytes, limit: int) -> str:
    text = raw[:limit].decode("ascii", errors="replace")
    return "".join(c if c.isprintable() and c not in ' "' else f"%{ord(c):02X}" for c in text)


def format_line(r: Record, when: float) -> str:
    stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return (
        f'{stamp}Z {r.direction} {r.service} "{_safe(r.method, 32)} '
        f'{_safe(r.target, MAX_TARGET)} HTTP/{r.version}" {r.status} {r.sent} '
        f"{r.duration * 1000:.1f}ms upstream={r.upstream or '-'} error={r.error or '-'}"
    )
