"""MeshAccessLog formats: Kuma's (Envoy's) command operators as tokens, and the check that
names an operator meshfed's sidecar cannot fill in.

Pure: the API's gate (meshfed/policy/enforced.py) refuses a format with an operator not in
`PLACEHOLDERS`; mesh-dp renders the tokens (mesh_dp/accesslog_format.py). A format string is
literal text and operators `%NAME%`, `%NAME(ARG)%`, `%NAME(ARG):N%` (N: at most N
characters), as Envoy writes them; `%%` is a literal `%`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from meshfed.resources.errors import FieldError, index, join
from meshfed.resources.fields import as_list

# What each operator the sidecar fills in means (docs/observability.md lists them too).
PLACEHOLDERS: Final[dict[str, str]] = {
    "START_TIME": "when the request (connection) started, RFC 3339 UTC with milliseconds",
    "DURATION": "milliseconds from start to the last byte of the response (connection end)",
    "RESPONSE_CODE": "HTTP status (0: no response; TCP: 0)",
    "BYTES_SENT": "response body bytes to the caller (TCP: bytes to the caller)",
    "BYTES_RECEIVED": "request body bytes from the caller by Content-Length (TCP: bytes read)",
    "PROTOCOL": "HTTP/1.1 or HTTP/1.0 (TCP: -)",
    "REQ": "a request header, REQ(name); :method, :path, :authority as in Envoy",
    "UPSTREAM_HOST": "the endpoint that answered, address:port",
    "KUMA_MESH": "the mesh",
    "KUMA_SOURCE_SERVICE": "the calling service (inbound: from the caller's certificate)",
    "KUMA_DESTINATION_SERVICE": "the called service",
    "KUMA_TRAFFIC_DIRECTION": "INBOUND or OUTBOUND",
}
NEEDS_ARG: Final = frozenset({"REQ"})

_OPERATOR = re.compile(r"%([A-Z_][A-Z0-9_]*)(?:\(([^)%]*)\))?(?::(\d+))?%|%%|%")


@dataclass(frozen=True, slots=True)
class Op:
    """One command operator: its name, argument ("" when none) and length limit (0: none)."""

    name: str
    arg: str = ""
    limit: int = 0


Token = str | Op


class FormatError(ValueError):
    """A format string with an operator the sidecar does not fill in, or a stray `%`."""


def tokens(text: str) -> list[Token]:
    """`text` as literal strings and operators; FormatError names the first bad operator."""
    out: list[Token] = []
    pos = 0
    for m in _OPERATOR.finditer(text):
        if m.start() > pos:
            out.append(text[pos : m.start()])
        pos = m.end()
        whole = m.group(0)
        if whole == "%%":
            out.append("%")
            continue
        if whole == "%":
            raise FormatError(f"has a '%' at {m.start()} that starts no command operator")
        name, arg, limit = m.group(1), m.group(2), m.group(3)
        if name not in PLACEHOLDERS:
            raise FormatError(
                f"command operator %{name}% is not enforced by meshfed's sidecar "
                f"(supported: {', '.join('%' + p + '%' for p in PLACEHOLDERS)})"
            )
        if (name in NEEDS_ARG) != bool(arg):
            want = "needs an argument" if name in NEEDS_ARG else "takes no argument"
            raise FormatError(
                f"command operator %{name}% {want}: "
                "it is not enforced by meshfed's sidecar otherwise"
            )
        out.append(Op(name, arg or "", int(limit) if limit else 0))
    if pos < len(text):
        out.append(text[pos:])
    merged: list[Token] = []
    for t in out:  # adjacent literals as one
        if isinstance(t, str) and merged and isinstance(merged[-1], str):
            merged[-1] += t
        else:
            merged.append(t)
    return merged


def _format_errors(fmt: Any, path: str) -> list[FieldError]:
    if not isinstance(fmt, dict):
        return []
    checks: list[tuple[Any, str]] = [(fmt.get("plain"), join(path, "plain"))]
    for i, pair in enumerate(as_list(fmt.get("json"))):
        if isinstance(pair, dict):
            checks.append((pair.get("value"), join(index(join(path, "json"), i), "value")))
    errors: list[FieldError] = []
    for text, where in checks:
        if isinstance(text, str):
            try:
                tokens(text)
            except FormatError as exc:
                errors.append(FieldError(where, str(exc)))
    return errors


def access_log_formats(spec: dict[str, Any]) -> list[FieldError]:
    """The format strings of a MeshAccessLog spec's file and tcp backends that the sidecar
    cannot render, each at its path."""
    errors: list[FieldError] = []
    for section in ("to", "from", "rules"):
        for i, item in enumerate(as_list(spec.get(section))):
            default = item.get("default") if isinstance(item, dict) else None
            backends = default.get("backends") if isinstance(default, dict) else None
            at = join(join(index(join("spec", section), i), "default"), "backends")
            for j, backend in enumerate(as_list(backends)):
                if not isinstance(backend, dict):
                    continue
                for kind in ("file", "tcp"):
                    block = backend.get(kind)
                    if isinstance(block, dict):
                        where = join(join(index(at, j), kind), "format")
                        errors += _format_errors(block.get("format"), where)
    return errors
