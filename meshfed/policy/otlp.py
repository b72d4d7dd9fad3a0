"""OpenTelemetry backends of MeshAccessLog, MeshMetric and MeshTrace (issue 18): the endpoint
forms, Kuma's `body` (an OTLP AnyValue in its JSON form) as a template, and the checks that
name what the sidecar cannot do. Pure: the API's gate (meshfed/policy/enforced.py) and
mesh-dp's exporters (mesh_dp/otlp/, mesh_dp/tracing/) share it.

Endpoints (decision 142): `http://host:port[/path]` or `https://...` is OTLP/HTTP with
protobuf bodies, sent to `path` + `/v1/logs` (`/metrics`, `/traces`) as the OTLP exporters'
`OTEL_EXPORTER_OTLP_ENDPOINT` is; Kuma's own form, a bare `host[:port]` (port 4317 when
left out, Kuma's default), is OTLP/gRPC in plaintext, as Kuma's Envoy and kuma-dp send it.
A path ending in `/v1/<signal>` is refused: it is a prefix, so the request would go to
`.../v1/traces/v1/traces`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from meshfed.policy.observability import FormatError, Token, tokens
from meshfed.resources.errors import FieldError, index, join
from meshfed.resources.fields import as_list

GRPC_PORT: Final = 4317  # Kuma's default when the endpoint names no port
_SIGNAL_PATH: Final = re.compile(r"/v1/(logs|metrics|traces)$")
_HOST: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one OTLP exporter sends: `grpc` (Kuma's bare host:port) or `http`/`https`."""

    scheme: Literal["grpc", "http", "https"]
    host: str  # without IPv6 brackets
    port: int
    path: str = ""  # OTLP/HTTP: the prefix before /v1/logs or /v1/metrics

    def url(self, signal: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "grpc":
            return f"{host}:{self.port}"
        return f"{self.scheme}://{host}:{self.port}{self.path}/v1/{signal}"


class EndpointError(ValueError):
    """An endpoint the sidecar cannot send to."""


def parse_endpoint(text: str) -> Endpoint:
    """`http(s)://host[:port][/path]` or `host[:port]` (gRPC); EndpointError says why not."""
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise EndpointError(
                f"scheme {parts.scheme!r} is not one the sidecar sends to "
                "(http:// or https:// for OTLP/HTTP, or host:port for OTLP/gRPC)"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise EndpointError("has a port that is not a number from 1 to 65535") from None
        if not parts.hostname or parts.query or parts.fragment or parts.username:
            raise EndpointError("must be scheme://host[:port][/path] (no query, user or fragment)")
        path = parts.path.rstrip("/")
        if _SIGNAL_PATH.search(path):
            raise EndpointError(
                f"path {path!r} is a prefix: the sidecar appends /v1/logs, /v1/metrics or "
                "/v1/traces to it (as OTEL_EXPORTER_OTLP_ENDPOINT); leave that part out"
            )
        return Endpoint(parts.scheme, parts.hostname, port, path)  # type: ignore[arg-type]
    host, port = text, GRPC_PORT
    m = re.fullmatch(r"(.+):(\d{1,5})", text)
    if m and (not text.count(":") > 1 or text.startswith("[")):
        host, port = m.group(1), int(m.group(2))
    if not _HOST.fullmatch(host) or not 0 < port < 65536:
        raise EndpointError("must be host:port (OTLP/gRPC) or an http(s):// URL (OTLP/HTTP)")
    return Endpoint("grpc", host.strip("[]"), port)


# --- body and attributes: AnyValue templates ----------------------------------------------

# A template of one AnyValue: ("string", tokens), ("bool"|"int"|"double"|"bytes", value),
# ("array", [templates]), ("kvlist", [(key tokens, template)]).
Template = tuple[str, Any]

_SCALARS: Final = {
    "stringValue": "string",
    "string_value": "string",
    "boolValue": "bool",
    "bool_value": "bool",
    "intValue": "int",
    "int_value": "int",
    "doubleValue": "double",
    "double_value": "double",
    "bytesValue": "bytes",
    "bytes_value": "bytes",
}
_LISTS: Final = {
    "arrayValue": "array",
    "array_value": "array",
    "kvlistValue": "kvlist",
    "kvlist_value": "kvlist",
}


class _NotAnyValue(ValueError):
    """JSON that is not an AnyValue in protobuf's JSON mapping."""


def _scalar(kind: str, raw: Any) -> Template:
    if kind == "string" and isinstance(raw, str):
        return ("string", tokens(raw))
    if kind == "bool" and isinstance(raw, bool):
        return ("bool", raw)
    integer = isinstance(raw, int) or (isinstance(raw, str) and re.fullmatch(r"-?\d+", raw))
    if kind == "int" and integer and not isinstance(raw, bool):
        value = int(raw)
        if -(2**63) <= value < 2**63:
            return ("int", value)
    if kind == "double" and isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            return ("double", float(raw))
        except ValueError:
            pass
    if kind == "bytes" and isinstance(raw, str):
        try:
            return ("bytes", base64.b64decode(raw, validate=True))
        except binascii.Error:
            pass
    raise _NotAnyValue(kind)


def _any_value(raw: Any) -> Template:
    if not isinstance(raw, dict) or len(raw) > 1:
        raise _NotAnyValue("one field")
    if not raw:
        return ("empty", None)
    ((name, value),) = raw.items()
    if name in _SCALARS:
        return _scalar(_SCALARS[name], value)
    if name not in _LISTS or not isinstance(value, dict) or set(value) - {"values"}:
        raise _NotAnyValue(name)
    items = value.get("values") or []
    if not isinstance(items, list):
        raise _NotAnyValue(name)
    if _LISTS[name] == "array":
        return ("array", [_any_value(v) for v in items])
    pairs = []
    for kv in items:
        if not isinstance(kv, dict) or set(kv) - {"key", "value"}:
            raise _NotAnyValue("kvlist")
        key, sub = kv.get("key", ""), kv.get("value")
        if not isinstance(key, str):
            raise _NotAnyValue("kvlist")
        pairs.append((tokens(key), _any_value(sub) if sub is not None else ("empty", None)))
    return ("kvlist", pairs)


def body_template(body_json: str, default: list[Token]) -> Template:
    """Kuma's body, as zone-cp put it in the config (JSON text; "" when not set): an AnyValue
    with placeholders in its strings and keys. Not set: the default format as a string;
    JSON that is not an AnyValue: its text as a string with placeholders (Kuma's fallback).
    FormatError: an operator the sidecar does not fill in."""
    if not body_json:
        return ("string", default)
    raw = json.loads(body_json)
    try:
        return _any_value(raw)
    except _NotAnyValue:
        return ("string", tokens(body_json))


def attribute_templates(pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, list[Token]]]:
    """Kuma's `attributes`: each value a format string (keys are literal)."""
    return [(k, tokens(v)) for k, v in pairs]


def body_text(body: Any) -> str:
    """A policy's `body` as the config carries it: compact JSON text, "" when absent."""
    return "" if body is None else json.dumps(body, separators=(",", ":"), sort_keys=False)


# --- the gate's checks ----------------------------------------------------------------------


def _endpoint_errors(block: Any, where: str) -> list[FieldError]:
    value = block.get("endpoint") if isinstance(block, dict) else None
    if not isinstance(value, str) or not value:
        return []  # the validator reports it
    try:
        parse_endpoint(value)
    except EndpointError as exc:
        return [FieldError(join(where, "endpoint"), f"is not enforced by meshfed's sidecar: {exc}")]
    return []


def _log_errors(block: Any, where: str) -> list[FieldError]:
    if not isinstance(block, dict):
        return []
    errors = _endpoint_errors(block, where)
    try:
        body_template(body_text(block.get("body")), [])
    except FormatError as exc:
        errors.append(FieldError(join(where, "body"), str(exc)))
    for i, pair in enumerate(as_list(block.get("attributes"))):
        value = pair.get("value") if isinstance(pair, dict) else None
        if isinstance(value, str):
            try:
                tokens(value)
            except FormatError as exc:
                at = join(index(join(where, "attributes"), i), "value")
                errors.append(FieldError(at, str(exc)))
    return errors


def access_log_errors(spec: dict[str, Any]) -> list[FieldError]:
    """A MeshAccessLog's openTelemetry backends the sidecar cannot act on, at their paths."""
    errors: list[FieldError] = []
    for section in ("to", "from", "rules"):
        for i, item in enumerate(as_list(spec.get(section))):
            default = item.get("default") if isinstance(item, dict) else None
            backends = default.get("backends") if isinstance(default, dict) else None
            at = join(join(index(join("spec", section), i), "default"), "backends")
            for j, backend in enumerate(as_list(backends)):
                if isinstance(backend, dict):
                    where = join(index(at, j), "openTelemetry")
                    errors += _log_errors(backend.get("openTelemetry"), where)
    return errors


def _default_endpoint_errors(default: dict[str, Any]) -> list[FieldError]:
    """The `openTelemetry` endpoints of `spec.default.backends` (MeshMetric, MeshTrace)."""
    errors: list[FieldError] = []
    for j, backend in enumerate(as_list(default.get("backends"))):
        if isinstance(backend, dict):
            where = join(index("spec.default.backends", j), "openTelemetry")
            errors += _endpoint_errors(backend.get("openTelemetry"), where)
    return errors


def metric_errors(spec: dict[str, Any]) -> list[FieldError]:
    """A MeshMetric's OpenTelemetry endpoints and `sidecar.regex` the sidecar cannot use."""
    default = spec.get("default")
    if not isinstance(default, dict):
        return []
    errors = _default_endpoint_errors(default)
    sidecar = default.get("sidecar")
    regex = sidecar.get("regex") if isinstance(sidecar, dict) else None
    if isinstance(regex, str):
        try:
            re.compile(regex)
        except re.error as exc:
            errors.append(
                FieldError(
                    "spec.default.sidecar.regex",
                    "is not enforced by meshfed's sidecar: its regular expression engine "
                    f"(Python's re) cannot compile it: {exc}",
                )
            )
    return errors


def trace_errors(spec: dict[str, Any]) -> list[FieldError]:
    """A MeshTrace's OpenTelemetry endpoint the sidecar cannot send to (the same forms)."""
    default = spec.get("default")
    return _default_endpoint_errors(default) if isinstance(default, dict) else []
