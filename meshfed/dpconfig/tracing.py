"""MeshTrace in the sidecar config (issue 18): what zone-cp resolves from the matched
policies, and the config part that carries it (msgspec, as model.py; its own base so
model.py can import it).

Kuma's semantics: the `default`s of the MeshTraces selecting the Dataplane are merged as
JSON (lists replaced whole), least specific first, so the most specific policy wins field by
field and its `backends` (one at most) replace the others'. No MeshTrace, or a merged one
without a backend: None, and the sidecar traces nothing (Kuma configures no tracing then).
The sampling percentages default to 100 (Envoy's), Zipkin's `sharedSpanContext` to true
(Kuma's), as Kuma's configurer reads them (kuma.io/docs/latest/policies/meshtrace/).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from meshfed.policy.merge import merge_confs
from meshfed.resources.fields import as_list

if TYPE_CHECKING:
    from meshfed.policy.rules import Matched

MESH_TRACE = "MeshTrace"


class _Part(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=False):
    """Base of these config parts: immutable, camelCase, unknown fields ignored."""


class TraceTag(_Part, frozen=True):
    """A custom tag: `literal`, or the request `header`'s value (else `default`; neither: no
    tag)."""

    name: str
    literal: str | None = None
    header: str | None = None  # lowercase
    default: str | None = None


class Tracing(_Part, frozen=True):
    """One backend and how requests are sampled and tagged."""

    kind: Literal["zipkin", "otel", "datadog"]
    url: str  # Zipkin's collector URL, the OTLP/HTTP traces URL, the Datadog agent's base URL
    service: str  # the Dataplane's service: the spans' service name
    trace_id128bit: bool = False  # Zipkin: start traces with 128-bit ids
    shared_span_context: bool = True  # Zipkin: the server span reuses the caller's span id
    split_service: bool = False  # Datadog: `<service>_INBOUND`, `<service>_OUTBOUND_<dest>`
    overall: float = 100.0
    client: float = 100.0
    random: float = 100.0
    tags: tuple[TraceTag, ...] = ()
    sources: tuple[str, ...] = ()


def _percent(raw: Any) -> float:
    if raw is None or isinstance(raw, bool):
        return 100.0
    try:
        return float(Decimal(str(raw)))
    except (InvalidOperation, ValueError):
        return 100.0


def _backend(raw: Any) -> dict[str, Any] | None:
    backends = [b for b in as_list(raw) if isinstance(b, dict)]
    return backends[0] if backends else None


def _dict(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _tags(raw: Any) -> tuple[TraceTag, ...]:
    out: list[TraceTag] = []
    for t in as_list(raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        header = t.get("header")
        if isinstance(header, dict) and isinstance(header.get("name"), str):
            default = header.get("default")
            out.append(
                TraceTag(
                    t["name"],
                    header=header["name"].lower(),
                    default=default if isinstance(default, str) else None,
                )
            )
        elif isinstance(t.get("literal"), str):
            out.append(TraceTag(t["name"], literal=t["literal"]))
    return tuple(out)


def tracing(matched: Sequence[Matched], service: str) -> Tracing | None:
    """The merged MeshTrace of a Dataplane (its policies matched least specific first)."""
    from meshfed.policy.rules import source_of  # zone-cp's side (decision 187)

    if not matched:
        return None
    conf = merge_confs(
        m.policy.spec.get("default") or {} for m in matched if isinstance(m.policy.spec, dict)
    )
    backend = _backend(conf.get("backends"))
    if backend is None:
        return None
    sampling = _dict(conf.get("sampling"))
    common: dict[str, Any] = {
        "service": service,
        "overall": _percent(sampling.get("overall")),
        "client": _percent(sampling.get("client")),
        "random": _percent(sampling.get("random")),
        "tags": _tags(conf.get("tags")),
        "sources": tuple(source_of(m.policy) for m in matched),
    }
    zipkin, datadog = _dict(backend.get("zipkin")), _dict(backend.get("datadog"))
    otel = _dict(backend.get("openTelemetry"))
    if isinstance(zipkin.get("url"), str):
        return Tracing(
            "zipkin",
            zipkin["url"],
            trace_id128bit=zipkin.get("traceId128bit") is True,
            shared_span_context=zipkin.get("sharedSpanContext") is not False,
            **common,
        )
    if isinstance(datadog.get("url"), str):
        return Tracing(
            "datadog", datadog["url"], split_service=datadog.get("splitService") is True, **common
        )
    if isinstance(otel.get("endpoint"), str):
        return Tracing("otel", otel["endpoint"], **common)  # meshfed/policy/otlp.py parses it
    return None
