"""MeshAccessLog's OpenTelemetry backend: one access-log `Event` as the parts of an OTLP
LogRecord (body, attributes, times), rendered from the backend's templates. Pure and
protobuf-free: the destination's thread renders, mesh_dp/otlp/encode.py builds the messages.

As Kuma configures Envoy's OpenTelemetry access logger: the body is Kuma's `body` (an
AnyValue whose strings and keys hold placeholders) or, when not set, the default format of
the connection's kind (HTTP or TCP) as a string; each attribute is a string rendered from its
format; a value that does not exist renders as `-`, as in Plain lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mesh_dp.accesslog_format import DEFAULT_HTTP, DEFAULT_TCP, Event, getter
from meshfed.dpconfig.observability import LogFormat
from meshfed.policy.observability import Token, tokens
from meshfed.policy.otlp import Template, attribute_templates, body_template

# A rendered AnyValue: the template's shape with every string filled in.
Value = tuple[str, Any]

Render = Callable[[Event], str]


def _text(parts: list[Token]) -> Render:
    compiled = [p if isinstance(p, str) else getter(p) for p in parts]
    if len(compiled) == 1 and isinstance(compiled[0], str):
        const = compiled[0]
        return lambda e: const

    def render(e: Event) -> str:
        out: list[str] = []
        for p in compiled:
            if isinstance(p, str):
                out.append(p)
            else:
                v = p(e)
                out.append("-" if v is None or v == "" else str(v))
        return "".join(out)

    return render


ValueFn = Callable[[Event], Value]


def _compile(t: Template) -> ValueFn:
    kind, raw = t
    if kind == "string":
        text = _text(raw)
        return lambda e: ("string", text(e))
    if kind == "array":
        items = [_compile(v) for v in raw]
        return lambda e: ("array", [f(e) for f in items])
    if kind == "kvlist":
        pairs = [(_text(k), _compile(v)) for k, v in raw]
        return lambda e: ("kvlist", [(k(e), v(e)) for k, v in pairs])
    return lambda e: t  # bool, int, double, bytes, empty: no placeholders


@dataclass(frozen=True, slots=True)
class LogParts:
    """What one LogRecord carries, rendered."""

    start_ns: int
    body: Value
    attributes: list[tuple[str, str]]


RecordFn = Callable[[Event], LogParts]


def compile_record(fmt: LogFormat) -> RecordFn:
    """The renderer of one openTelemetry backend (`fmt.body`, attributes in `fmt.json`)."""
    http = _compile(body_template(fmt.body, tokens(DEFAULT_HTTP)))
    tcp = http if fmt.body else _compile(("string", tokens(DEFAULT_TCP)))
    attrs = [(k, _text(v)) for k, v in attribute_templates(fmt.json)]

    def record(e: Event) -> LogParts:
        body = (http if e.head is not None else tcp)(e)
        return LogParts(round(e.start * 1e6) * 1000, body, [(k, v(e)) for k, v in attrs])

    return record
