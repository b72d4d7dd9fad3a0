"""The Mesh* policies: Kuma's full `spec` of each (targetRef, to[], from[], rules[] and every
field of their `default` confs), with Kuma's defaults on the fields the sidecar reads.

Which targetRef kinds each position accepts follows Kuma 2.x (its per-policy validators),
narrowed to what meshfed enforces (meshfed/resources/types/policies.py has the table). Fields
declared here are Kuma's shape; the descriptor's validator then refuses those the sidecar
does not enforce (meshfed/policy/enforced.py), so declaring a field does not accept it.
Kuma's field lists: https://kuma.io/docs/latest/policies/ (one page per policy).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import (
    NOT_SUPPORTED,
    Also,
    Choice,
    GoDuration,
    IntOrDecimal,
    Model,
    Range,
    Text,
    one_of_text,
    problem,
)
from meshfed.resources.models.common import (
    INT32,
    UINT32,
    Percent,
    PositiveUint32,
    Tags,
    Uint32,
)
from meshfed.resources.models.load_balancing import LoadBalancingConf
from meshfed.resources.models.targetref import (
    CallerRef,
    FromMeshRef,
    InboundTopLevelRef,
    OutboundToRef,
    PermissionTopLevelRef,
    TopLevelRef,
)
from meshfed.resources.values import is_base64, parse_duration

Duration = Annotated[timedelta, GoDuration()]
PositiveDuration = Annotated[timedelta, GoDuration(positive=True)]
DecimalPercent = Annotated[Decimal, IntOrDecimal(Decimal(0), Decimal(100))]
HeaderName = Annotated[
    str,
    Text(pattern=r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}", message="must be a valid HTTP header name"),
]
Base64 = Annotated[str, Text(predicate=is_base64, message="must be base64-encoded")]

# --- MeshTrafficPermission ----------------------------------------------------------------


class TrafficPermissionConf(Model):
    """`from[].default`: what happens to calls from the selected callers."""

    action: Annotated[Literal["Allow", "Deny", "AllowWithShadowDeny"], Choice()]


class SpiffeIdMatch(Model):
    type: Annotated[Literal["Exact", "Prefix"], Choice()]
    value: Annotated[
        str, Text(pattern=r"spiffe://[^/\s]+(/\S*)?", message="must be a SPIFFE ID (spiffe://...)")
    ]


class CallerMatch(Model):
    refused = {"sni": f"{NOT_SUPPORTED}: callers are matched by their SPIFFE ID"}
    spiffe_id: SpiffeIdMatch = Field(alias="spiffeID")
    sni: str | None = None


Matches = Annotated[list[CallerMatch], Field(min_length=1)]


class TrafficPermissionRuleConf(Model):
    """`rules[].default`: callers matched by identity."""

    at_least_one = ("allow", "deny", "allowWithShadowDeny")
    allow: Matches | None = None
    deny: Matches | None = None
    allow_with_shadow_deny: Matches | None = None


# --- MeshTimeout ---------------------------------------------------------------------------


class HttpTimeouts(Model):
    at_least_one = (
        "requestTimeout",
        "streamIdleTimeout",
        "maxStreamDuration",
        "maxConnectionDuration",
        "requestHeadersTimeout",
    )
    request_timeout: Duration | None = None
    stream_idle_timeout: Duration | None = None
    max_stream_duration: Duration | None = None
    max_connection_duration: Duration | None = None
    request_headers_timeout: Duration | None = None


class TimeoutConf(Model):
    """`default` of MeshTimeout's to[], from[] and rules[] (Kuma's defaults)."""

    at_least_one = ("connectionTimeout", "idleTimeout", "http")
    connection_timeout: PositiveDuration = timedelta(seconds=5)
    idle_timeout: Duration = timedelta(hours=1)
    http: HttpTimeouts | None = None


# --- MeshRetry -----------------------------------------------------------------------------


class BackOff(Model):
    at_least_one = ("baseInterval", "maxInterval")
    base_interval: PositiveDuration | None = None
    max_interval: PositiveDuration | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        base, top = data.get("baseInterval"), data.get("maxInterval")
        if not (isinstance(base, str) and isinstance(top, str)):
            return []
        base_ns, top_ns = parse_duration(base), parse_duration(top)
        if base_ns is not None and top_ns is not None and top_ns < base_ns:
            return [problem(("maxInterval",), "must not be less than baseInterval")]
        return []


class ResetHeader(Model):
    name: HeaderName
    format: Annotated[Literal["Seconds", "UnixTimestamp"], Choice()]


class RateLimitedBackOff(Model):
    reset_headers: Annotated[list[ResetHeader], Field(min_length=1)]
    max_interval: PositiveDuration | None = None


HTTP_RETRY_ON = (
    "5xx",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    "Http3PostConnectFailure",
    "HttpMethodConnect",
    "HttpMethodDelete",
    "HttpMethodGet",
    "HttpMethodHead",
    "HttpMethodOptions",
    "HttpMethodPatch",
    "HttpMethodPost",
    "HttpMethodPut",
    "HttpMethodTrace",
)


def _retry_on(value: str) -> bool:
    # Kuma's docs spell the first one "5XX", its code "5xx": accept both.
    if value in HTTP_RETRY_ON or value == "5XX":
        return True
    return value.isdigit() and 100 <= int(value) <= 599


HttpRetryOn = Annotated[
    str,
    Text(
        predicate=_retry_on,
        message=one_of_text(HTTP_RETRY_ON) + ', or an HTTP status code as a string (e.g. "503")',
        message_for_any=True,
    ),
]


class HeaderMatch(Model):
    type: (
        Annotated[Literal["Exact", "Present", "RegularExpression", "Absent", "Prefix"], Choice()]
        | None
    ) = None
    name: HeaderName
    value: str | None = None


class HostPredicate(Model):
    predicate: Annotated[
        Literal["OmitPreviousHosts", "OmitHostsWithTags", "OmitPreviousPriorities"], Choice()
    ]
    tags: Tags | None = None
    update_frequency: Annotated[int, Range(1, INT32)] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind = data.get("predicate")
        out: list[InitErrorDetails] = []
        for needed_by, field in (
            ("OmitHostsWithTags", "tags"),
            ("OmitPreviousPriorities", "updateFrequency"),
        ):
            if kind == needed_by and field not in data:
                out.append(problem((field,), f"is required when predicate is {needed_by}"))
            if kind != needed_by and field in data:
                out.append(problem((field,), f"can only be set when predicate is {needed_by}"))
        return out


def _priorities_once(hosts: list[Any]) -> list[InitErrorDetails]:
    priorities = [
        i
        for i, p in enumerate(hosts)
        if isinstance(p, dict) and p.get("predicate") == "OmitPreviousPriorities"
    ]
    return [
        problem((i, "predicate"), "OmitPreviousPriorities must only be specified once")
        for i in priorities[1:]
    ]


class HttpRetry(Model):
    at_least_one = (
        "numRetries",
        "perTryTimeout",
        "backOff",
        "rateLimitedBackOff",
        "retryOn",
        "retriableResponseHeaders",
        "retriableRequestHeaders",
        "hostSelection",
    )
    num_retries: Uint32 | None = None
    per_try_timeout: Duration | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    retry_on: list[HttpRetryOn] | None = None
    retriable_response_headers: list[HeaderMatch] | None = None
    retriable_request_headers: list[HeaderMatch] | None = None
    host_selection: Annotated[list[HostPredicate], Also(_priorities_once)] | None = None
    host_selection_max_attempts: Annotated[int, Range(0, 2**63 - 1)] | None = None


class GrpcRetry(Model):
    at_least_one = ("numRetries", "perTryTimeout", "backOff", "rateLimitedBackOff", "retryOn")
    num_retries: Uint32 | None = None
    per_try_timeout: Duration | None = None
    back_off: BackOff | None = None
    rate_limited_back_off: RateLimitedBackOff | None = None
    retry_on: (
        list[
            Annotated[
                Literal[
                    "Canceled", "DeadlineExceeded", "Internal", "ResourceExhausted", "Unavailable"
                ],
                Choice(),
            ]
        ]
        | None
    ) = None


class TcpRetry(Model):
    max_connect_attempt: Annotated[int, Range(1, UINT32)]


DEFAULT_MAX_CONNECT_ATTEMPT = 5  # Kuma's MeshRetry default


class RetryConf(Model):
    """`to[].default` of MeshRetry."""

    at_least_one = ("tcp", "http", "grpc")
    tcp: TcpRetry | None = None
    http: HttpRetry | None = None
    grpc: GrpcRetry | None = None

    @property
    def max_connect_attempt(self) -> int:
        """Endpoints tried for one connection (Kuma's default when tcp is not set)."""
        return self.tcp.max_connect_attempt if self.tcp else DEFAULT_MAX_CONNECT_ATTEMPT


# --- MeshHealthCheck -----------------------------------------------------------------------


class TcpHealthCheck(Model):
    disabled: bool = False
    send: Base64 | None = None
    receive: list[Base64] | None = None


class HeaderValue(Model):
    name: HeaderName
    value: str


class HeadersToAdd(Model):
    set: list[HeaderValue] | None = None
    add: list[HeaderValue] | None = None


class HttpHealthCheck(Model):
    disabled: bool = False
    path: Annotated[str, Text(non_empty=True)] | None = None
    request_headers_to_add: HeadersToAdd | None = None
    expected_statuses: list[Annotated[int, Range(100, 599)]] | None = None


class GrpcHealthCheck(Model):
    disabled: bool = False
    service_name: str | None = None
    authority: str | None = None


class HealthCheckConf(Model):
    """`to[].default` of MeshHealthCheck (Kuma's defaults on the TCP check's fields)."""

    at_least_one = ("http", "tcp", "grpc")
    interval: PositiveDuration = timedelta(minutes=1)
    timeout: PositiveDuration = timedelta(seconds=15)
    unhealthy_threshold: Annotated[int, Range(1, INT32)] = 5
    healthy_threshold: Annotated[int, Range(1, INT32)] = 1
    initial_jitter: PositiveDuration | None = None
    interval_jitter: PositiveDuration | None = None
    interval_jitter_percent: Percent | None = None
    healthy_panic_threshold: DecimalPercent | None = None
    fail_traffic_on_panic: bool | None = None
    no_traffic_interval: PositiveDuration | None = None
    event_log_path: Annotated[str, Text(non_empty=True)] | None = None
    always_log_health_check_failures: bool | None = None
    reuse_connection: bool | None = None
    tcp: TcpHealthCheck | None = None
    http: HttpHealthCheck | None = None
    grpc: GrpcHealthCheck | None = None


# --- MeshCircuitBreaker --------------------------------------------------------------------


DEFAULT_MAX_CONNECTIONS = 1024  # Kuma's (Envoy's) default


class ConnectionLimits(Model):
    max_connections: PositiveUint32 | None = None
    max_connection_pools: PositiveUint32 | None = None
    max_pending_requests: PositiveUint32 | None = None
    max_retries: PositiveUint32 | None = None
    max_requests: PositiveUint32 | None = None


class Consecutive(Model):
    consecutive: PositiveUint32 | None = None


class SuccessRate(Model):
    minimum_hosts: PositiveUint32 | None = None
    request_volume: PositiveUint32 | None = None
    standard_deviation_factor: (
        Annotated[Decimal, IntOrDecimal(Decimal(0), exclusive_min=True)] | None
    ) = None


class FailurePercentage(Model):
    minimum_hosts: PositiveUint32 | None = None
    request_volume: PositiveUint32 | None = None
    threshold: Percent | None = None


class Detectors(Model):
    at_least_one = (
        "totalFailures",
        "gatewayFailures",
        "localOriginFailures",
        "successRate",
        "failurePercentage",
    )
    total_failures: Consecutive | None = None
    gateway_failures: Consecutive | None = None
    local_origin_failures: Consecutive | None = None
    success_rate: SuccessRate | None = None
    failure_percentage: FailurePercentage | None = None


class OutlierDetection(Model):
    disabled: bool | None = None
    interval: PositiveDuration | None = None
    base_ejection_time: PositiveDuration | None = None
    max_ejection_percent: Percent | None = None
    split_external_and_local_errors: bool | None = None
    healthy_panic_threshold: DecimalPercent | None = None
    detectors: Detectors | None = None


class CircuitBreakerConf(Model):
    """`default` of MeshCircuitBreaker's to[], from[] and rules[]."""

    at_least_one = ("connectionLimits", "outlierDetection")
    connection_limits: ConnectionLimits | None = None
    outlier_detection: OutlierDetection | None = None

    @property
    def max_connections(self) -> int:
        limits = self.connection_limits
        if limits is None or limits.max_connections is None:
            return DEFAULT_MAX_CONNECTIONS
        return limits.max_connections


# --- the specs: targetRef + sections ------------------------------------------------------


class PolicySpec(Model):
    """targetRef plus the sections a policy has; Kuma's rules: at least one section has
    items, and `rules` replaces `to`/`from`."""

    sections: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        out: list[InitErrorDetails] = []
        present = [s for s in cls.sections if isinstance(data.get(s), list) and data[s]]
        if not present:
            if len(cls.sections) == 1:
                out.append(problem((cls.sections[0],), "must have at least 1 item"))
            else:
                names = ", ".join(f"'{s}'" for s in cls.sections)
                out.append(problem((), f"at least one of {names} must be defined"))
        if "rules" in present:
            others = [s for s in present if s != "rules"]
            if others:
                names = " and ".join(f"'{s}'" for s in others)
                out.append(problem((), f"{names} must be empty when 'rules' is defined"))
        return out


class TrafficPermissionFrom(Model):
    target_ref: CallerRef
    default: TrafficPermissionConf


class TrafficPermissionRule(Model):
    default: TrafficPermissionRuleConf


class MeshTrafficPermissionSpec(PolicySpec):
    sections = ("from", "rules")
    target_ref: PermissionTopLevelRef | None = None
    from_: list[TrafficPermissionFrom] | None = Field(None, alias="from")
    rules_: list[TrafficPermissionRule] | None = Field(None, alias="rules")


class TimeoutTo(Model):
    target_ref: OutboundToRef
    default: TimeoutConf


class TimeoutFrom(Model):
    target_ref: FromMeshRef
    default: TimeoutConf


class TimeoutRule(Model):
    default: TimeoutConf


class MeshTimeoutSpec(PolicySpec):
    sections = ("to", "from", "rules")
    target_ref: InboundTopLevelRef | None = None
    to: list[TimeoutTo] | None = None
    from_: list[TimeoutFrom] | None = Field(None, alias="from")
    rules_: list[TimeoutRule] | None = Field(None, alias="rules")


class RetryTo(Model):
    target_ref: OutboundToRef
    default: RetryConf


class MeshRetrySpec(PolicySpec):
    sections = ("to",)
    target_ref: TopLevelRef | None = None
    to: list[RetryTo] | None = None


class HealthCheckTo(Model):
    target_ref: OutboundToRef
    default: HealthCheckConf


class MeshHealthCheckSpec(PolicySpec):
    sections = ("to",)
    target_ref: TopLevelRef | None = None
    to: list[HealthCheckTo] | None = None


class CircuitBreakerTo(Model):
    target_ref: OutboundToRef
    default: CircuitBreakerConf


class CircuitBreakerFrom(Model):
    target_ref: FromMeshRef
    default: CircuitBreakerConf


class CircuitBreakerRule(Model):
    default: CircuitBreakerConf


class MeshCircuitBreakerSpec(PolicySpec):
    sections = ("to", "from", "rules")
    target_ref: InboundTopLevelRef | None = None
    to: list[CircuitBreakerTo] | None = None
    from_: list[CircuitBreakerFrom] | None = Field(None, alias="from")
    rules_: list[CircuitBreakerRule] | None = Field(None, alias="rules")


class LoadBalancingTo(Model):
    target_ref: OutboundToRef
    default: LoadBalancingConf


class MeshLoadBalancingStrategySpec(PolicySpec):
    sections = ("to",)
    target_ref: TopLevelRef | None = None
    to: list[LoadBalancingTo] | None = None
