"""Observability policies (issue 18): MeshAccessLog, MeshMetric and MeshTrace, Kuma 2.14's
`spec` of each with its validation rules.

| policy        | top level | to[].targetRef     | from[].targetRef | rules | default at top |
|---------------|-----------|--------------------|------------------|-------|----------------|
| MeshAccessLog | all five  | Mesh, MeshService  | Mesh             | yes   | -              |
| MeshMetric    | all five  | -                  | -                | -     | yes            |
| MeshTrace     | all five  | -                  | -                | -     | yes            |

Declaring a field does not accept it: the enforcement gate (meshfed/policy/enforced.py) and
the placeholder check (meshfed/resources/types/policies.py) refuse what the sidecar does not
act on. Kuma's pages: https://kuma.io/docs/2.14.x/policies/meshaccesslog/ (and meshmetric,
meshtrace).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import Choice, Model, by_type, problem
from meshfed.resources.models.common import NonEmpty, Port
from meshfed.resources.models.policies import DecimalPercent, Duration, PolicySpec
from meshfed.resources.models.targetref import FromMeshRef, TopLevelRef, ToRef

# --- MeshAccessLog ---------------------------------------------------------------------------


class JsonValue(Model):
    """One field of a Json format (or an OpenTelemetry attribute): `value` is a format string."""

    key: NonEmpty
    value: str


class Format(Model):
    """How one line is written: `plain` (one format string) or `json` (named format strings)."""

    type: Annotated[Literal["Plain", "Json"], Choice()]
    plain: str | None = None
    json_: list[JsonValue] | None = Field(None, alias="json")
    omit_empty_values: bool | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(data, "type", {"Plain": "plain", "Json": "json"}, required=True)


class FileBackend(Model):
    path: NonEmpty
    format: Format | None = None


class TcpBackend(Model):
    address: NonEmpty  # host:port
    format: Format | None = None


class OtelLogBackend(Model):
    endpoint: NonEmpty
    body: Any = None
    attributes: list[JsonValue] | None = None


class AccessLogBackend(Model):
    type: Annotated[Literal["File", "Tcp", "OpenTelemetry"], Choice()]
    file: FileBackend | None = None
    tcp: TcpBackend | None = None
    open_telemetry: OtelLogBackend | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {"File": "file", "Tcp": "tcp", "OpenTelemetry": "openTelemetry"},
            required=True,
        )


class AccessLogConf(Model):
    backends: list[AccessLogBackend] | None = None


class AccessLogTo(Model):
    target_ref: ToRef
    default: AccessLogConf


class AccessLogFrom(Model):
    target_ref: FromMeshRef
    default: AccessLogConf


class AccessLogRule(Model):
    default: AccessLogConf


class MeshAccessLogSpec(PolicySpec):
    sections = ("to", "from", "rules")
    target_ref: TopLevelRef | None = None
    to: list[AccessLogTo] | None = None
    from_: list[AccessLogFrom] | None = Field(None, alias="from")
    rules_: list[AccessLogRule] | None = Field(None, alias="rules")


# --- MeshMetric -------------------------------------------------------------------------------


class Selector(Model):
    type: Annotated[Literal["Prefix", "Regex", "Exact", "Contains"], Choice()]
    match: NonEmpty


class Profile(Model):
    name: Annotated[Literal["All", "Basic", "None"], Choice()]


class Profiles(Model):
    append_profiles: list[Profile] | None = None
    exclude: list[Selector] | None = None
    include: list[Selector] | None = None


class MetricSidecar(Model):
    regex: str | None = None  # Kuma's older filter (profiles replace it)
    include_unused: bool | None = None
    profiles: Profiles | None = None


class Application(Model):
    name: str | None = None
    path: str | None = None  # Kuma's default: /metrics
    port: Port
    address: str | None = None  # Kuma's default: the inbound's address (meshfed: 127.0.0.1)


class PrometheusTls(Model):
    mode: Annotated[Literal["Disabled", "ProvidedTLS", "ActiveMTLSBackend"], Choice()]


class PrometheusBackend(Model):
    client_id: str | None = None
    port: Port | None = None  # Kuma's default: 5670
    path: str | None = None  # Kuma's default: /metrics
    tls: PrometheusTls | None = None


class OtelMetricBackend(Model):
    endpoint: NonEmpty
    refresh_interval: Duration | None = None


class MetricBackend(Model):
    type: Annotated[Literal["Prometheus", "OpenTelemetry"], Choice()]
    prometheus: PrometheusBackend | None = None
    open_telemetry: OtelMetricBackend | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {"Prometheus": "prometheus", "OpenTelemetry": "openTelemetry"},
            required=True,
        )


class MetricConf(Model):
    sidecar: MetricSidecar | None = None
    applications: list[Application] | None = None
    backends: list[MetricBackend] | None = None


class _DefaultSpec(PolicySpec):
    """A policy whose `default` sits at the top, beside the targetRef (no to/from/rules)."""

    sections: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        if not isinstance(data.get("default"), dict):
            return [problem(("default",), "is required")]
        return []


class MeshMetricSpec(_DefaultSpec):
    target_ref: TopLevelRef | None = None
    default: MetricConf | None = None


# --- MeshTrace --------------------------------------------------------------------------------


class Zipkin(Model):
    url: NonEmpty
    trace_id128bit: bool | None = Field(None, alias="traceId128bit")  # Kuma: lowercase b
    api_version: Annotated[Literal["httpJson", "httpProto"], Choice()] | None = None
    shared_span_context: bool | None = None


class Datadog(Model):
    url: NonEmpty
    split_service: bool | None = None


class OtelTraceBackend(Model):
    endpoint: NonEmpty


class TraceBackend(Model):
    type: Annotated[Literal["Zipkin", "Datadog", "OpenTelemetry"], Choice()]
    zipkin: Zipkin | None = None
    datadog: Datadog | None = None
    open_telemetry: OtelTraceBackend | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {"Zipkin": "zipkin", "Datadog": "datadog", "OpenTelemetry": "openTelemetry"},
            required=True,
        )


class Sampling(Model):
    overall: DecimalPercent | None = None
    client: DecimalPercent | None = None
    random: DecimalPercent | None = None


class HeaderTag(Model):
    name: NonEmpty
    default: str | None = None


class Tag(Model):
    name: NonEmpty
    literal: str | None = None
    header: HeaderTag | None = None


class TraceConf(Model):
    backends: list[TraceBackend] | None = None
    sampling: Sampling | None = None
    tags: list[Tag] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        backends = data.get("backends")
        if isinstance(backends, list) and len(backends) > 1:
            return [problem(("backends",), "must have at most 1 item")]
        return []


class MeshTraceSpec(_DefaultSpec):
    target_ref: TopLevelRef | None = None
    default: TraceConf | None = None
