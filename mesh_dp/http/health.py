"""MeshHealthCheck `http`: the check request and its verdict (pure), and one probe over a
connection the caller opened (mTLS to the endpoint, as traffic goes).

As in Kuma, the check goes to the upstream's sidecar (or another zone's ingress, which passes
it to one instance behind it) and that sidecar's inbound forwards it to the application, so
the verdict covers the whole path a request takes. The request is `GET <path>` with
`Host: <service>`, `user-agent: meshfed-health-check` and `connection: close`;
`requestHeadersToAdd.set` replaces a header of that name, `.add` appends one. Healthy: the
final status is one of `expectedStatuses`; anything else, no answer within the check's
`timeout`, or a broken response is a failure.
"""

from __future__ import annotations

from mesh_dp.http.conn import Conn
from mesh_dp.http.parse import ProtocolError, ResponseHead, ResponseParser
from meshfed.aio import wait_for
from meshfed.dpconfig.model import HttpCheck

__all__ = ["HttpCheck", "check_request", "passed", "probe"]

USER_AGENT = "meshfed-health-check"


def _clean(text: str) -> str:
    """No control characters (a CR LF in a policy must not split the request)."""
    return "".join(c for c in text if c >= " " and c != "\x7f")


def check_request(check: HttpCheck, service: str) -> bytes:
    """The request bytes of one check of `service`."""
    headers: list[tuple[str, str]] = [
        ("host", service),
        ("user-agent", USER_AGENT),
        ("accept", "*/*"),
    ]
    for name, value in check.set_headers:
        headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        headers.append((name, value))
    headers += check.add_headers
    headers.append(("connection", "close"))
    path = _clean(check.path).replace(" ", "%20") or "/"
    fields = (f"{_clean(n)}: {_clean(v)}" for n, v in headers)
    lines = [f"GET {path} HTTP/1.1", *fields, "", ""]
    return "\r\n".join(lines).encode("latin-1", errors="replace")


def passed(check: HttpCheck, status: int) -> bool:
    return status in check.expected_statuses


async def final_status(conn: Conn) -> int | None:
    """The status of the first final (non-1xx) response on `conn`; None when it ends or
    breaks before one."""
    while True:
        try:
            ev = await conn.next()
        except ProtocolError:
            return None
        if ev is None:
            return None
        if isinstance(ev, ResponseHead) and ev.status >= 200:
            return ev.status


async def probe(conn: Conn, check: HttpCheck, service: str, timeout: float) -> bool:
    """Sends one check on a fresh connection and judges the answer (closes `conn`)."""
    conn.expect(ResponseParser(b"GET"))
    conn.write(check_request(check, service))
    try:
        status = await wait_for(final_status(conn), timeout)
    except TimeoutError:
        return False
    finally:
        conn.abort()
    return status is not None and passed(check, status)
