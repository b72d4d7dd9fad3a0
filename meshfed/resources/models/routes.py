"""Traffic routing and traffic policies (issue 14): MeshHTTPRoute, MeshTCPRoute,
MeshFaultInjection and MeshRateLimit, Kuma 2.14's full `spec` of each with its validation rules.

Where the kinds and sections differ from the other policies (Kuma's per-policy validators):

| policy             | top level | to[].targetRef | from[].targetRef, rules[] | backendRefs        |
|--------------------|-----------|----------------|---------------------------|--------------------|
| MeshHTTPRoute      | all five  | MeshService    | -                         | MeshService(Subset)|
| MeshTCPRoute       | all five  | MeshService    | -                         | MeshService(Subset)|
| MeshFaultInjection | all five  | (gateways)     | Mesh, MeshService(Subset),| -                  |
|                    |           |                | MeshSubset; rules         |                    |
| MeshRateLimit      | all five  | (gateways)     | Mesh; rules               | -                  |

The routes' `default` sits in `to[].rules[]` (Kuma: a rule's `matches` is the key its
`default` merges under). Kuma accepts `to[]` of MeshFaultInjection and MeshRateLimit only when
the policy selects gateways and refuses `from[]` when it does; meshfed has no built-in gateways,
so `to[]` is refused and `from[]` is fine with any top-level kind. Fields for gateways only
(`hostnames`, `hostToBackendHostname`) and for MeshService resources (`port`, issue 17) are
declared and refused. Declaring a field does not accept it: the enforcement gate after the model
(meshfed/policy/enforced.py) refuses what the sidecar does not act on yet.
Kuma's pages: https://kuma.io/docs/2.14.x/policies/meshhttproute/ (and meshtcproute,
meshfaultinjection, meshratelimit).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import (
    NOT_SUPPORTED,
    Also,
    Choice,
    Model,
    Range,
    Text,
    by_type,
    problem,
)
from meshfed.resources.models.common import UINT32, NonEmpty, Port
from meshfed.resources.models.policies import (
    CallerMatch,
    DecimalPercent,
    Duration,
    HeaderMatch,
    HeaderValue,
    PolicySpec,
)
from meshfed.resources.models.targetref import (
    CallerRef,
    FromMeshRef,
    InboundTopLevelRef,
    TargetRef,
    TopLevelRef,
)
from meshfed.resources.types.targetref import (
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
)
from meshfed.resources.values import parse_duration

_GATEWAYS = f"{NOT_SUPPORTED}: it applies to built-in gateways, and meshfed has none"
_PORTS = f"{NOT_SUPPORTED}: only a MeshService's port is a backendRef's port (decision 166)"
_PORT_BY_NAME = "needs name: a MeshService's port is found by the MeshService's name"
_MAX_HEADERS = 16

# Kuma's HeaderName: lower case (headers match case-insensitively, RFC 7230 section 3.2).
LowerHeaderName = Annotated[
    str,
    Text(
        pattern=r"[a-z0-9!#$%&'*+\-.^_`|~]{1,256}",
        message="must be a lower-case HTTP header name",
    ),
]


def _hostname(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return True
    return False


# Kuma's PreciseHostname: an RFC 1123 name, lower case, no IP address.
PreciseHostname = Annotated[
    str,
    Text(
        pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
        max_len=253,
        predicate=_hostname,
        message="must be a lower-case DNS name (RFC 1123), not an IP address",
    ),
]


def _at_most(n: int) -> Also:
    def rule(value: Any) -> list[InitErrorDetails]:
        if isinstance(value, list) and len(value) > n:
            return [problem((), f"must have at most {n} item{'' if n == 1 else 's'}")]
        return []

    return Also(rule)


# --- backendRefs and the routes' targetRefs -------------------------------------------------


class RouteToRef(TargetRef):
    """The destination of a route's `to[]` entry: a service (Kuma also takes
    MeshExternalService and MeshMultiZoneService, and Mesh for gateways)."""

    kinds = (MESH_SERVICE,)
    kind: Literal["MeshService"]
    service_ports = True  # `sectionName`: one MeshService port's outbound (decision 166)


class BackendRef(TargetRef):
    """Where a route sends traffic, with its share: a service, or a subset of its instances
    by tags (`kuma.io/zone: zone-2` pins a zone); MeshService `labels` select the same way."""

    kinds = (MESH_SERVICE, MESH_SERVICE_SUBSET)
    kind: Literal["MeshService", "MeshServiceSubset"]
    weight: Annotated[int, Range(0, UINT32)] = 1
    port: Port | None = None

    @classmethod
    def refused_for_kind(cls, kind: str) -> dict[str, str]:
        refused = super().refused_for_kind(kind)
        return dict(refused) if kind == MESH_SERVICE else {**refused, "port": _PORTS}

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """`port`: that port of the MeshService `name` (decision 166)."""
        out = super().rules(data)
        if "port" in data and "name" not in data:
            out.append(problem(("port",), _PORT_BY_NAME))
        return out


class MirrorBackendRef(BackendRef):
    """The one destination of a RequestMirror: a weight means nothing there."""

    @classmethod
    def refused_for_kind(cls, kind: str) -> dict[str, str]:
        weight = "must not be set on a mirror's backendRef (it has one destination)"
        return {**super().refused_for_kind(kind), "weight": weight}


# --- MeshHTTPRoute -------------------------------------------------------------------------


class PathMatch(Model):
    type: Annotated[Literal["Exact", "PathPrefix", "RegularExpression"], Choice()]
    value: NonEmpty

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind, value = data.get("type"), data.get("value")
        if not isinstance(value, str) or not value or kind not in ("Exact", "PathPrefix"):
            return []
        out: list[InitErrorDetails] = []
        if kind == "PathPrefix" and value != "/" and value.endswith("/"):
            out.append(
                problem(
                    ("value",),
                    "must not end with '/': a prefix matches whole '/'-separated segments",
                )
            )
        if not value.startswith("/"):
            out.append(problem(("value",), "must be an absolute path (start with '/')"))
        return out


class RouteHeaderMatch(HeaderMatch):
    """A request header to match (type Exact when not set); Present and Absent take no value."""

    name: LowerHeaderName

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        kind = data.get("type")
        if kind in ("Present", "Absent") and data.get("value") not in (None, ""):
            return [problem(("value",), f"must not be set when type is {kind}")]
        return []


class QueryParamMatch(Model):
    type: Annotated[Literal["Exact", "RegularExpression"], Choice()]
    name: NonEmpty
    value: str


def _query_names_once(params: list[Any]) -> list[InitErrorDetails]:
    seen: set[str] = set()
    out: list[InitErrorDetails] = []
    for i, p in enumerate(params):
        name = p.get("name") if isinstance(p, dict) else None
        if isinstance(name, str):
            if name in seen:
                out.append(problem((i, "name"), f"multiple entries for name {name}"))
            seen.add(name)
    return out


class HttpMatch(Model):
    """One way a request matches a rule; every field set must match (AND)."""

    path: PathMatch | None = None
    method: (
        Annotated[
            Literal["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"],
            Choice(),
        ]
        | None
    ) = None
    query_params: Annotated[list[QueryParamMatch], Also(_query_names_once)] | None = None
    headers: list[RouteHeaderMatch] | None = None


class HeaderKeyValue(HeaderValue):
    name: LowerHeaderName


HeaderList = Annotated[list[HeaderKeyValue], _at_most(_MAX_HEADERS)]


class HeadersToSetOrAdd(Model):
    """Headers to set (replacing a value) or add (appending one)."""

    set: HeaderList | None = None
    add: HeaderList | None = None


class HeaderModifier(HeadersToSetOrAdd):
    """A filter's header changes: one action per header name."""

    at_least_one = ("set", "add", "remove")
    remove: Annotated[list[LowerHeaderName], _at_most(_MAX_HEADERS)] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        seen: set[str] = set()
        out: list[InitErrorDetails] = []
        for field in ("set", "add", "remove"):
            items = data.get(field)
            for i, item in enumerate(items if isinstance(items, list) else []):
                name = item.get("name") if isinstance(item, dict) else item
                if not isinstance(name, str):
                    continue
                if name in seen:
                    loc: tuple[str | int, ...] = (
                        (field, i) if field == "remove" else (field, i, "name")
                    )
                    out.append(problem(loc, "duplicate header name"))
                seen.add(name)
        return out


class PathRewrite(Model):
    type: Annotated[Literal["ReplaceFullPath", "ReplacePrefixMatch"], Choice()]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(
            data,
            "type",
            {"ReplaceFullPath": "replaceFullPath", "ReplacePrefixMatch": "replacePrefixMatch"},
            required=True,
        )


class RequestRedirect(Model):
    """Answer with a redirect (`Location` built from the request and these fields)."""

    scheme: Annotated[Literal["http", "https"], Choice()] | None = None
    hostname: PreciseHostname | None = None
    path: PathRewrite | None = None
    port: Port | None = None
    status_code: Annotated[Literal[301, 302, 303, 307, 308], Choice()] = 302


class UrlRewrite(Model):
    """Rewrite the request's host and/or path before it is forwarded."""

    hostname: PreciseHostname | None = None
    path: PathRewrite | None = None
    host_to_backend_hostname: bool | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        if data.get("hostToBackendHostname") is True:
            return [problem(("hostToBackendHostname",), _GATEWAYS)]
        return []


class RequestMirror(Model):
    """Send a copy of `percentage` of the requests (all when not set) to another service."""

    percentage: DecimalPercent | None = None
    backend_ref: MirrorBackendRef


_FILTER_BLOCKS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "RequestMirror": "requestMirror",
}


class HttpFilter(Model):
    """One change to a matched request; its type names the one block it takes."""

    type: Annotated[
        Literal[
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
            "RequestMirror",
        ],
        Choice(),
    ]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: UrlRewrite | None = Field(None, alias="urlRewrite")
    request_mirror: RequestMirror | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        return by_type(data, "type", _FILTER_BLOCKS, required=True)


class HttpRouteConf(Model):
    """`to[].rules[].default`: the filters and the destinations (by weight) of matched
    requests; no backendRefs: the `to[]` service itself."""

    filters: list[HttpFilter] | None = None
    backend_refs: list[BackendRef] | None = None


def _not_all_prefix(matches: Any) -> bool:
    if not isinstance(matches, list):
        return False
    for m in matches:
        path = m.get("path") if isinstance(m, dict) else None
        if not isinstance(path, dict) or path.get("type") != "PathPrefix":
            return True
    return False


class HttpRouteRule(Model):
    """Requests matching any of `matches` get `default` (Kuma merges rules with equal
    matches across policies)."""

    matches: Annotated[list[HttpMatch], Field(min_length=1)]
    default: HttpRouteConf

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        conf = data.get("default")
        filters = conf.get("filters") if isinstance(conf, dict) else None
        if not isinstance(filters, list) or not _not_all_prefix(data.get("matches")):
            return []
        out: list[InitErrorDetails] = []
        for i, f in enumerate(filters):
            if not isinstance(f, dict):
                continue
            for block in ("requestRedirect", "urlRewrite"):
                spec = f.get(block)
                path = spec.get("path") if isinstance(spec, dict) else None
                if isinstance(path, dict) and path.get("replacePrefixMatch") is not None:
                    out.append(
                        problem(
                            ("default", "filters", i, block, "path", "replacePrefixMatch"),
                            "can only be used when every match is a path PathPrefix",
                        )
                    )
        return out


class HttpRouteTo(Model):
    refused = {"hostnames": _GATEWAYS}
    hostnames: list[str] | None = None
    target_ref: RouteToRef
    rules_: list[HttpRouteRule] = Field(alias="rules")


class MeshHTTPRouteSpec(PolicySpec):
    sections = ("to",)
    target_ref: TopLevelRef | None = None
    to: list[HttpRouteTo] | None = None


# --- MeshTCPRoute --------------------------------------------------------------------------


class TcpRouteConf(Model):
    """`to[].rules[].default`: where connections go, by weight."""

    backend_refs: Annotated[list[BackendRef], Field(min_length=1)]


class TcpRouteRule(Model):
    default: TcpRouteConf


class TcpRouteTo(Model):
    target_ref: RouteToRef
    # without matches a second rule could never apply (Kuma: at most one)
    rules_: Annotated[list[TcpRouteRule], _at_most(1)] = Field(alias="rules")


class MeshTCPRouteSpec(PolicySpec):
    sections = ("to",)
    target_ref: TopLevelRef | None = None
    to: list[TcpRouteTo] | None = None


# --- MeshFaultInjection --------------------------------------------------------------------


class FaultAbort(Model):
    http_status: Annotated[int, Range(100, 599)]
    percentage: DecimalPercent


class FaultDelay(Model):
    value: Duration
    percentage: DecimalPercent


Bandwidth = Annotated[
    str,
    Text(pattern=r"\d+ ?[GMk]bps", message='must be in kbps/Mbps/Gbps units (e.g. "10kbps")'),
]


class ResponseBandwidth(Model):
    limit: Bandwidth
    percentage: DecimalPercent


class HttpFault(Model):
    """Faults applied in order; each percentage counts the requests the previous left."""

    abort: FaultAbort | None = None
    delay: FaultDelay | None = None
    response_bandwidth: ResponseBandwidth | None = None


class FaultInjectionConf(Model):
    http: list[HttpFault] | None = None


class FaultInjectionFrom(Model):
    target_ref: CallerRef
    default: FaultInjectionConf | None = None


class FaultInjectionTo(Model):
    target_ref: FromMeshRef
    default: FaultInjectionConf | None = None


class FaultInjectionRule(Model):
    matches: list[CallerMatch] | None = None
    default: FaultInjectionConf


class MeshFaultInjectionSpec(PolicySpec):
    sections = ("from", "rules")
    refused = {"to": _GATEWAYS}
    target_ref: InboundTopLevelRef | None = None
    from_: list[FaultInjectionFrom] | None = Field(None, alias="from")
    to: list[FaultInjectionTo] | None = None
    rules_: list[FaultInjectionRule] | None = Field(None, alias="rules")


# --- MeshRateLimit -------------------------------------------------------------------------

_MIN_INTERVAL = timedelta(milliseconds=50)


class Rate(Model):
    """`num` requests (or connections) per `interval`: a token bucket."""

    num: Annotated[int, Range(1, UINT32)]
    interval: Duration

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        interval = data.get("interval")
        ns = parse_duration(interval) if isinstance(interval, str) else None
        if ns is not None and 0 <= ns <= _MIN_INTERVAL.total_seconds() * 1e9:
            return [problem(("interval",), "must be greater than 50ms")]
        return []


class OnRateLimit(Model):
    """The answer to a limited request (Kuma's default status: 429)."""

    status: Annotated[int, Range(100, 599)] | None = None
    headers: HeadersToSetOrAdd | None = None


class LocalHttp(Model):
    at_least_one = ("disabled", "requestRate", "onRateLimit")
    disabled: bool | None = None
    request_rate: Rate | None = None
    on_rate_limit: OnRateLimit | None = None


class LocalTcp(Model):
    at_least_one = ("disabled", "connectionRate")
    disabled: bool | None = None
    connection_rate: Rate | None = None


class LocalRateLimit(Model):
    at_least_one = ("http", "tcp")
    http: LocalHttp | None = None
    tcp: LocalTcp | None = None


class RateLimitConf(Model):
    local: LocalRateLimit


class RateLimitFrom(Model):
    target_ref: FromMeshRef
    default: RateLimitConf


class RateLimitTo(Model):
    target_ref: FromMeshRef
    default: RateLimitConf


class RateLimitRule(Model):
    matches: list[CallerMatch] | None = None
    default: RateLimitConf

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """A connection is limited before the caller's identity is known (Kuma's rule)."""
        conf = data.get("default")
        local = conf.get("local") if isinstance(conf, dict) else None
        if data.get("matches") and isinstance(local, dict) and local.get("tcp") is not None:
            return [
                problem(
                    ("default", "local", "tcp"),
                    "must not be set when matches name callers: "
                    "a connection's rate cannot depend on the caller's identity",
                )
            ]
        return []


class MeshRateLimitSpec(PolicySpec):
    sections = ("from", "rules")
    refused = {"to": _GATEWAYS}
    target_ref: InboundTopLevelRef | None = None
    from_: list[RateLimitFrom] | None = Field(None, alias="from")
    to: list[RateLimitTo] | None = None
    rules_: list[RateLimitRule] | None = Field(None, alias="rules")
