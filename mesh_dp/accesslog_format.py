"""MeshAccessLog lines: one `Event` (an HTTP request or a TCP connection) rendered with a
format's command operators (meshfed/policy/observability.py parses them). Pure: no I/O.

Plain: the operators replaced in the text, `-` for a value that does not exist (`""` with
omitEmptyValues), one line (CR/LF in values are escaped). Json: one object per line, in
the given key order, every value a string as in Kuma's example output; a value that does not
exist is null, left out with omitEmptyValues. Without a format, Kuma's default formats (HTTP, and
TCP for connections) with the operators meshfed fills in.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mesh_dp.http.parse import Framing, RequestHead
from meshfed.dpconfig.observability import LogFormat
from meshfed.policy.observability import Op, Token, tokens

DEFAULT_HTTP = (
    '[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    '%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" '
    '"%KUMA_DESTINATION_SERVICE%" "%UPSTREAM_HOST%"'
)
DEFAULT_TCP = (
    "[%START_TIME%] %KUMA_MESH% (%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%"
    "(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, "
    "received: %BYTES_RECEIVED% bytes"
)


@dataclass(slots=True)
class Event:
    """What one line can tell: an HTTP request (`head` set) or a TCP connection."""

    direction: str  # "inbound" / "outbound"
    mesh: str
    source: str  # the calling service ("" when unknown)
    destination: str  # the called service
    start: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    status: int = 0
    sent: int = 0
    received: int | None = 0
    upstream: str = ""
    head: RequestHead | None = None
    version: str = ""  # "1.1" / "1.0"; "" for TCP


Value = str | int | None


def _start(e: Event) -> Value:
    stamp = dt.datetime.fromtimestamp(e.start, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _received(e: Event) -> Value:
    if e.head is None:
        return e.received
    if e.head.framing is Framing.NONE:
        return 0
    return e.head.length if e.head.framing is Framing.LENGTH else None  # chunked: unknown


def _header(e: Event, names: str) -> Value:
    """REQ(a?b): the first of the headers present (Envoy's alternates)."""
    head = e.head
    if head is None:
        return None
    for name in names.split("?"):
        low = name.strip().lower()
        if low == ":method":
            raw: bytes | None = head.method
        elif low == ":path":
            raw = head.target
        elif low == ":authority":
            raw = head.header(b"host")
        else:
            raw = head.header(low.encode("latin-1", errors="replace"))
        if raw:
            return raw.decode("latin-1")
    return None


_FIELDS: dict[str, Callable[[Event], Value]] = {
    "START_TIME": _start,
    "DURATION": lambda e: int(e.duration * 1000),
    "RESPONSE_CODE": lambda e: e.status,
    "BYTES_SENT": lambda e: e.sent,
    "BYTES_RECEIVED": _received,
    "PROTOCOL": lambda e: f"HTTP/{e.version}" if e.version else None,
    "UPSTREAM_HOST": lambda e: e.upstream or None,
    "KUMA_MESH": lambda e: e.mesh or None,
    "KUMA_SOURCE_SERVICE": lambda e: e.source or None,
    "KUMA_DESTINATION_SERVICE": lambda e: e.destination or None,
    "KUMA_TRAFFIC_DIRECTION": lambda e: e.direction.upper(),
}


def value(op: Op, e: Event) -> Value:
    """One operator's value for `e`; None: it does not exist for this event."""
    got = _header(e, op.arg) if op.name == "REQ" else _FIELDS[op.name](e)
    if op.limit and isinstance(got, str):
        return got[: op.limit]
    return got


def _escape(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n") if "\n" in text or "\r" in text else text


def _render(parts: Sequence[Token], e: Event, empty: str) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            v = value(p, e)
            out.append(empty if v is None or v == "" else _escape(str(v)))
    return "".join(out)


Formatter = Callable[[Event], str]


def compile_format(fmt: LogFormat) -> Formatter:
    """The line writer of one backend's format (raises meshfed.policy.observability's
    FormatError for an operator the control plane would have refused)."""
    empty = "" if fmt.omit_empty_values else "-"
    if fmt.json:
        pairs = [(k, tokens(v)) for k, v in fmt.json]

        def as_json(e: Event) -> str:
            obj: dict[str, str | None] = {}
            for k, parts in pairs:
                if len(parts) == 1 and isinstance(parts[0], Op):
                    v = value(parts[0], e)
                    text = None if v is None or v == "" else str(v)
                else:
                    text = _render(parts, e, "-")
                if text is None and fmt.omit_empty_values:
                    continue
                obj[k] = text
            return json.dumps(obj, separators=(",", ":"))

        return as_json
    if fmt.plain:
        parts = tokens(fmt.plain)
        return lambda e: _render(parts, e, empty)
    http, tcp = tokens(DEFAULT_HTTP), tokens(DEFAULT_TCP)
    return lambda e: _render(http if e.head is not None else tcp, e, empty)
