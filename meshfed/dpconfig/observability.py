"""MeshAccessLog and MeshMetric in the sidecar config (issue 18): what zone-cp resolves from
the matched policies, and the config parts that carry it (msgspec, as model.py; their own
base so model.py can import them).

Access logs: an outbound's are the backends of the `to[]` entries selecting its service, an
inbound's those of the `from[]` and `rules[]` entries of the policies selecting it; backends
of every matching entry are appended in policy order (least specific first), a backend equal
to an earlier one once (Kuma merges MeshAccessLog backends by appending them).

Metrics: the `default`s of the MeshMetrics selecting the Dataplane, merged as JSON (lists
replaced whole, the most specific policy winning); None without any, and the sidecar serves
its metrics on the admin endpoint only, as before.

OpenTelemetry (decisions 142-144): an access-log backend of kind `otel` carries its body and
attributes in its LogFormat; a MeshMetric's pushes, its Prometheus backends' ProvidedTLS and
`sidecar.regex` are fields of `Metrics`.

The sidecar imports this module for its config parts only: the functions that resolve them
import the rules engine themselves, so a sidecar does not load it (decision 187).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from meshfed.policy.merge import merge_confs
from meshfed.policy.otlp import body_text
from meshfed.resources.fields import as_list
from meshfed.resources.values import parse_duration

if TYPE_CHECKING:
    from meshfed.policy.rules import Entry, Matched
    from meshfed.policy.targetref import ServiceLabels

MESH_ACCESS_LOG = "MeshAccessLog"
MESH_METRIC = "MeshMetric"
DEFAULT_METRICS_PORT = 5670  # Kuma's Prometheus backend defaults
DEFAULT_METRICS_PATH = "/metrics"
DEFAULT_APP_ADDRESS = "127.0.0.1"
DEFAULT_PUSH_SECONDS = 60.0  # Kuma's OpenTelemetry refreshInterval default

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class _Part(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=False):
    """Base of these config parts: immutable, camelCase, unknown fields ignored."""


class LogFormat(_Part, frozen=True):
    """`plain` or `json` (key, format) pairs; neither: Kuma's default formats."""

    plain: str = ""
    json: tuple[tuple[str, str], ...] = ()  # otel: the attributes
    omit_empty_values: bool = False
    body: str = ""  # otel: Kuma's `body` as JSON text ("": the default format as a string)


class AccessLog(_Part, frozen=True):
    """One backend: a `file` path, a `tcp` host:port or an `otel` endpoint, with its format."""

    kind: Literal["file", "tcp", "otel"]
    target: str
    format: LogFormat = LogFormat()
    source: str = ""  # the policy, `MeshAccessLog/name`


class Selector(_Part, frozen=True):
    type: Literal["Prefix", "Regex", "Exact", "Contains"]
    match: str


class App(_Part, frozen=True):
    """An application's own metrics endpoint, scraped and served with the sidecar's."""

    port: Port
    path: str = DEFAULT_METRICS_PATH
    address: str = DEFAULT_APP_ADDRESS
    name: str = ""


class MetricsEndpoint(_Part, frozen=True):
    """A Prometheus backend: the sidecar serves its metrics at http://address:port/path
    (https with `tls`: Kuma's ProvidedTLS)."""

    port: Port = DEFAULT_METRICS_PORT
    path: str = DEFAULT_METRICS_PATH
    tls: bool = False


class MetricsPush(_Part, frozen=True):
    """An OpenTelemetry backend: the sidecar pushes its metrics to `endpoint` every
    `interval` seconds (meshfed/policy/otlp.py reads the endpoint)."""

    endpoint: str
    interval: float = DEFAULT_PUSH_SECONDS


class Metrics(_Part, frozen=True):
    address: str  # the Dataplane's address
    endpoints: tuple[MetricsEndpoint, ...] = ()
    applications: tuple[App, ...] = ()
    include_unused: bool = False
    profiles: tuple[Literal["All", "Basic", "None"], ...] = ()  # empty: Basic
    exclude: tuple[Selector, ...] = ()
    include: tuple[Selector, ...] = ()
    sources: tuple[str, ...] = ()
    pushes: tuple[MetricsPush, ...] = ()
    regex: str = ""  # Kuma's `sidecar.regex`: families whose name it matches (search)


def _format(raw: Any) -> LogFormat:
    if not isinstance(raw, dict):
        return LogFormat()
    pairs = tuple(
        (str(p.get("key")), str(p.get("value")))
        for p in as_list(raw.get("json"))
        if isinstance(p, dict)
    )
    plain = raw.get("plain")
    return LogFormat(
        plain=plain if isinstance(plain, str) else "",
        json=pairs,
        omit_empty_values=raw.get("omitEmptyValues") is True,
    )


def _otel_format(block: dict[str, Any]) -> LogFormat:
    """An openTelemetry backend's body and attributes, carried in a LogFormat."""
    pairs = tuple(
        (str(p.get("key")), str(p.get("value")))
        for p in as_list(block.get("attributes"))
        if isinstance(p, dict)
    )
    return LogFormat(json=pairs, body=body_text(block.get("body")))


def _backends(chosen: Iterable[Entry]) -> tuple[AccessLog, ...]:
    from meshfed.policy.rules import source_of

    out: list[AccessLog] = []
    for e in chosen:
        for b in as_list(e.default.get("backends")):
            if not isinstance(b, dict):
                continue
            kinds: tuple[tuple[Literal["file", "tcp", "otel"], str, str], ...] = (
                ("file", "file", "path"),
                ("tcp", "tcp", "address"),
                ("otel", "openTelemetry", "endpoint"),
            )
            for kind, name, field in kinds:
                block = b.get(name)
                if not isinstance(block, dict) or not isinstance(block.get(field), str):
                    continue
                fmt = _otel_format(block) if kind == "otel" else _format(block.get("format"))
                log = AccessLog(kind, block[field], fmt)
                if all((o.kind, o.target, o.format) != (kind, log.target, log.format) for o in out):
                    out.append(msgspec.structs.replace(log, source=source_of(e.policy)))
    return tuple(out)


def outbound_access_logs(
    matched: Sequence[Matched],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> tuple[AccessLog, ...]:
    """The access-log backends of the outbound to `service` (to its MeshService port named
    `section`, when given)."""
    from meshfed.policy.rules import entries, to_selects

    return _backends(
        e for e in entries(matched, "to") if to_selects(e.target_ref, service, labels, section)
    )


def inbound_access_logs(matched: Sequence[Matched], inbound: int) -> tuple[AccessLog, ...]:
    """The access-log backends of the inbound at index `inbound` (`from[]`, `rules[]`)."""
    from meshfed.policy.rules import entries

    return _backends([*entries(matched, "from", inbound), *entries(matched, "rules", inbound)])


def _dict(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _selectors(raw: Any) -> tuple[Selector, ...]:
    return tuple(
        Selector(s["type"], str(s.get("match", "")))
        for s in as_list(raw)
        if isinstance(s, dict) and s.get("type") in ("Prefix", "Regex", "Exact", "Contains")
    )


def _push(otel: dict[str, Any]) -> list[MetricsPush]:
    endpoint, every = otel.get("endpoint"), otel.get("refreshInterval")
    if not isinstance(endpoint, str) or not endpoint:
        return []
    nanos = parse_duration(every) if isinstance(every, str) else None
    seconds = nanos / 1e9 if nanos and nanos > 0 else DEFAULT_PUSH_SECONDS
    return [MetricsPush(endpoint, seconds)]


def metrics(matched: Sequence[Matched], address: str) -> Metrics | None:
    """The merged MeshMetric of a Dataplane (its policies matched least specific first)."""
    from meshfed.policy.rules import source_of

    if not matched:
        return None
    conf = merge_confs(
        m.policy.spec.get("default") or {} for m in matched if isinstance(m.policy.spec, dict)
    )
    endpoints: list[MetricsEndpoint] = []
    pushes: list[MetricsPush] = []
    for b in as_list(conf.get("backends")):
        prom = b.get("prometheus") if isinstance(b, dict) else None
        if isinstance(b, dict) and b.get("type") == "Prometheus":
            prom = prom if isinstance(prom, dict) else {}
            endpoints.append(
                MetricsEndpoint(
                    port=prom.get("port") or DEFAULT_METRICS_PORT,
                    path=prom.get("path") or DEFAULT_METRICS_PATH,
                    tls=_dict(prom.get("tls")).get("mode") == "ProvidedTLS",
                )
            )
        if isinstance(b, dict) and b.get("type") == "OpenTelemetry":
            pushes += _push(_dict(b.get("openTelemetry")))
    apps = tuple(
        App(
            port=a["port"],
            path=a.get("path") or DEFAULT_METRICS_PATH,
            address=a.get("address") or DEFAULT_APP_ADDRESS,
            name=a.get("name") or "",
        )
        for a in as_list(conf.get("applications"))
        if isinstance(a, dict) and isinstance(a.get("port"), int)
    )
    sidecar = _dict(conf.get("sidecar"))
    profiles = _dict(sidecar.get("profiles"))
    names = tuple(
        p["name"]
        for p in as_list(profiles.get("appendProfiles"))
        if isinstance(p, dict) and p.get("name") in ("All", "Basic", "None")
    )
    return Metrics(
        address=address,
        endpoints=tuple(endpoints),
        applications=apps,
        include_unused=sidecar.get("includeUnused") is True,
        profiles=names,
        exclude=_selectors(profiles.get("exclude")),
        include=_selectors(profiles.get("include")),
        sources=tuple(source_of(m.policy) for m in matched),
        pushes=tuple(pushes),
        regex=regex if isinstance(regex := sidecar.get("regex"), str) else "",
    )
