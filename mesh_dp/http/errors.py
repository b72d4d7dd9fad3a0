"""The responses the sidecar writes itself. Pure.

Each carries `x-meshfed-error: <kind>`, so a caller (and a test) can tell a sidecar's
answer from the application's, and a short text body saying what happened:

| kind                 | status | when                                                  |
|----------------------|--------|-------------------------------------------------------|
| bad-request          | 400    | the request is not valid HTTP/1.1 (then the connection closes) |
| header-too-large     | 431    | request line and headers above 64 KiB                  |
| method-not-allowed   | 405    | CONNECT (the sidecar tunnels only Upgrade)              |
| permission-denied    | 403    | MeshTrafficPermission denies the caller (inbound)       |
| no-healthy-endpoint  | 503    | the service has no endpoint to try                     |
| circuit-open         | 503    | MeshCircuitBreaker: the upstream connection cap is reached |
| connect-failed       | 502    | every connect attempt failed (refused, TLS, wrong identity) |
| upstream-reset       | 502    | the upstream closed or broke HTTP before answering     |
| timeout              | 504    | a MeshTimeout deadline passed before the response head |
| request-headers-timeout | 408 | the head took over requestHeadersTimeout (then a close) |
"""

from __future__ import annotations

ERROR_HEADER = b"x-meshfed-error"

KINDS: dict[str, tuple[int, bytes]] = {
    "bad-request": (400, b"Bad Request"),
    "header-too-large": (431, b"Request Header Fields Too Large"),
    "method-not-allowed": (405, b"Method Not Allowed"),
    "permission-denied": (403, b"Forbidden"),
    "no-healthy-endpoint": (503, b"Service Unavailable"),
    "circuit-open": (503, b"Service Unavailable"),
    "connect-failed": (502, b"Bad Gateway"),
    "upstream-reset": (502, b"Bad Gateway"),
    "timeout": (504, b"Gateway Timeout"),
    "request-headers-timeout": (408, b"Request Timeout"),
}


def status_of(kind: str) -> int:
    return KINDS[kind][0]


def error_response(kind: str, detail: str, *, close: bool, head_only: bool = False) -> bytes:
    """A complete response for `kind`; `detail` ends up in the body (one line).
    `head_only`: the request was HEAD (headers say the length, no body follows)."""
    status, reason = KINDS[kind]
    text = detail.replace("\r", " ").replace("\n", " ")
    body = f"meshfed sidecar: {kind}: {text}\n".encode(errors="replace")
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"%s: %s\r\n" % (ERROR_HEADER, kind.encode()),
    ]
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + (b"" if head_only else body)
