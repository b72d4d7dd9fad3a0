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


_SECOND: list[tuple[int, str]] = [(-1, "")]  # the last second formatted (one writer each)


def _start(e: Event) -> Value:
    """RFC 3339 UTC with milliseconds; the date and time of day computed once per second."""
    second = int(e.start // 1)
    cached = _SECOND[0]
    if cached[0] != second:
        stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        cached = _SECOND[0] = (second, stamp)
    return f"{cached[1]}{round((e.start - second) * 1e6) // 1000 % 1000:03d}Z"


def _received(e: Event) -> Value:
    if e.head is None:
        return e.received
    if e.head.framing is Framing.NONE:
        return 0
    return e.head.length if e.head.framing is Framing.LENGTH else None  # chunked: unknown


def _request_field(name: str) -> Callable[[RequestHead], bytes | None]:
    low = name.strip().lower()
    if low == ":method":
        return lambda h: h.method
    if low == ":path":
        return lambda h: h.target
    wire = b"host" if low == ":authority" else low.encode("latin-1", errors="replace")
    return lambda h: h.header(wire)


def _header(names: str) -> Callable[[Event], Value]:
    """REQ(a?b): the first of the headers present (Envoy's alternates)."""
    getters = [_request_field(n) for n in names.split("?")]

    def get(e: Event) -> Value:
        head = e.head
        if head is None:
            return None
        for field in getters:
            raw = field(head)
            if raw:
                return raw.decode("latin-1")
        return None

    return get


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


Getter = Callable[[Event], Value]


def getter(op: Op) -> Getter:
    """One operator as a function of the event; its value None: it does not exist."""
    get = _header(op.arg) if op.name == "REQ" else _FIELDS[op.name]
    if not op.limit:
        return get
    limit = op.limit

    def cut(e: Event) -> Value:
        got = get(e)
        return got[:limit] if isinstance(got, str) else got

    return cut


def value(op: Op, e: Event) -> Value:
    return getter(op)(e)


def _escape(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n") if "\n" in text or "\r" in text else text


Part = str | Getter


def _compiled(parts: Sequence[Token]) -> list[Part]:
    return [p if isinstance(p, str) else getter(p) for p in parts]


def _render(parts: Sequence[Part], e: Event, empty: str) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            v = p(e)
            out.append(empty if v is None or v == "" else _escape(str(v)))
    return "".join(out)


Formatter = Callable[[Event], str]


def compile_format(fmt: LogFormat) -> Formatter:
    """The line writer of one backend's format (raises meshfed.policy.observability's
    FormatError for an operator the control plane would have refused)."""
    empty = "" if fmt.omit_empty_values else "-"
    if fmt.json:
        pairs = [(k, _compiled(tokens(v))) for k, v in fmt.json]

        def as_json(e: Event) -> str:
            obj: dict[str, str | None] = {}
            for k, parts in pairs:
                if len(parts) == 1 and not isinstance(parts[0], str):
                    v = parts[0](e)
                    text = None if v is None or v == "" else str(v)
                else:
                    text = _render(parts, e, "-")
                if text is None and fmt.omit_empty_values:
                    continue
                obj[k] = text
            return json.dumps(obj, separators=(",", ":"))

        return as_json
    if fmt.plain:
        parts = _compiled(tokens(fmt.plain))
        return lambda e: _render(parts, e, empty)
    http, tcp = _compiled(tokens(DEFAULT_HTTP)), _compiled(tokens(DEFAULT_TCP))
    return lambda e: _render(http if e.head is not None else tcp, e, empty)
