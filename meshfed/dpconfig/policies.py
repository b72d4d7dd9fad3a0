"""From matched policies to the `OutboundPolicies` a sidecar enforces for one outbound.

What each enforced field means (the set itself is in meshfed/policy/enforced.py):

- MeshTimeout `connectionTimeout`: how long a connect to one endpoint (TCP and the TLS
  handshake) may take; `idleTimeout`: close a proxied connection after this long with no
  bytes in either direction (`0s`: never). Its `rules` (inbound_timeouts) bound an inbound
  the same way, the application standing for the endpoint: the connect to it, the caller
  connection's quiet time, and on an `http` inbound each exchange with the application
  (requestTimeout, streamIdleTimeout, maxStreamDuration, requestHeadersTimeout) and the age
  of the pooled connections to it (maxConnectionDuration), as Kuma sets them on the
  inbound's listener and local cluster.
- MeshRetry `tcp.maxConnectAttempt`: how many endpoints to try for one accepted connection
  before giving up (a refused or timed-out connect moves on to the next choice).
- MeshHealthCheck: checks of each endpoint every `interval` (each may take `timeout`);
  `unhealthyThreshold` failures in a row take an endpoint out of the choices,
  `healthyThreshold` successes bring it back. `http` (path, expectedStatuses,
  requestHeadersToAdd; Kuma's defaults "/" and [200]) checks http outbounds with a GET over
  mTLS; others get a TCP connect unless `tcp.disabled: true`; both off: no checks.
  Kuma's defaults fill what the merged conf leaves out (1m, 15s, 5, 1).
- MeshCircuitBreaker `connectionLimits.maxConnections`: connections open at once through
  this outbound; more are refused at accept (tcp) or wait as pending requests (http).
  `maxPendingRequests`, `maxRequests`, `maxRetries`, `maxConnectionPools`: HTTP request
  limits with Envoy's meaning and defaults (mesh_dp/http/limits.py). `outlierDetection`:
  passive ejection per endpoint (mesh_dp/http/outlier.py); only the detectors set run, a
  detector's `consecutive` defaults to Envoy's 5.
- MeshLoadBalancingStrategy `loadBalancer.type`: RoundRobin, Random, or LeastRequest
  (sample `leastRequest.choiceCount` endpoints, take the one with fewest active
  connections), RingHash (`minRingSize`, `maxRingSize`) or Maglev (`tableSize`) with
  `hashPolicies` (mesh_dp/http/hashing.py); `localityAwareness` (`disabled`, `localZone`,
  `crossZone`): meshfed/dpconfig/locality.py.

MeshTCPRoute (tcp_route): the route of an outbound is the `to[].rules[0].default` of the
matched MeshTCPRoutes whose `to[].targetRef` selects its service, merged as every other
`default` (least specific first; `backendRefs` is a list, so the most specific one replaces it
whole, as Kuma's rule merge does). Each backendRef becomes a RouteBackend: a service by `name`
or by `labels`, a subset of its instances by `tags` (MeshServiceSubset), a zone pinned by the
`kuma.io/zone` tag or label, and its `weight` (Kuma's default 1). The builder turns each into a
weighted endpoint set (meshfed/dpconfig/build.py).

Each type's merged `default` (Kuma merges them as JSON, meshfed/policy/merge.py) is read
through its model (meshfed/resources/models/policies.py), which holds Kuma's defaults: there
is one declaration of each field and its default. Fields outside the enforced set are
refused by the API, so none reaches here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import msgspec

from meshfed.dpconfig.model import (
    DEFAULT_HTTP_RETRY_ON,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_STREAM_IDLE_TIMEOUT,
    FailurePercentage,
    HashConf,
    HashPolicy,
    HealthCheck,
    HttpCheck,
    HttpRetry,
    InboundTimeouts,
    LbAlgorithm,
    OutboundPolicies,
    Outlier,
    SuccessRate,
)
from meshfed.policy.rules import Entry, Matched, entries, merge_entries, outbound_conf, to_selects
from meshfed.policy.targetref import WILDCARD, ServiceLabels, kind_rank
from meshfed.resources.errors import ValidationError
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.models.base import Model, parse
from meshfed.resources.models.load_balancing import LoadBalancingConf, Maglev, RingHash
from meshfed.resources.models.policies import (
    CircuitBreakerConf,
    Consecutive,
    Detectors,
    HealthCheckConf,
    HttpTimeouts,
    RetryConf,
    TimeoutConf,
)
from meshfed.resources.types.common import SERVICE_TAG, as_list
from meshfed.resources.types.targetref import MESH, MESH_SERVICE_SUBSET

log = logging.getLogger("meshfed.dpconfig")

MESH_TIMEOUT = "MeshTimeout"
MESH_RETRY = "MeshRetry"
MESH_HEALTH_CHECK = "MeshHealthCheck"
MESH_CIRCUIT_BREAKER = "MeshCircuitBreaker"
MESH_LOAD_BALANCING_STRATEGY = "MeshLoadBalancingStrategy"
OUTBOUND_TYPES = (
    MESH_TIMEOUT,
    MESH_RETRY,
    MESH_HEALTH_CHECK,
    MESH_CIRCUIT_BREAKER,
    MESH_LOAD_BALANCING_STRATEGY,
)

MESH_TCP_ROUTE = "MeshTCPRoute"
DEFAULT_BACKEND_WEIGHT = 1  # Kuma's default backendRef weight

C = TypeVar("C", bound=Model)


def read_conf(model: type[C], conf: dict[str, Any], type_name: str) -> C:
    """A merged `default` as its model; Kuma's defaults when nothing matched. A merge of valid
    confs that breaks a cross-field rule (possible: Kuma merges as JSON) counts as unset, with
    a warning naming the problems, rather than failing the whole dataplane's config."""
    if conf:
        try:
            return parse(model, conf)
        except ValidationError as exc:
            log.warning("merged %s default is not valid, using defaults: %s", type_name, exc)
    return model.model_construct()


def _http_check(hc: HealthCheckConf) -> HttpCheck | None:
    http = hc.http
    if http is None or http.disabled:
        return None
    headers = http.request_headers_to_add
    return HttpCheck(
        path=http.path or "/",
        expected_statuses=tuple(http.expected_statuses or (200,)),
        set_headers=tuple((h.name, h.value) for h in (headers and headers.set) or ()),
        add_headers=tuple((h.name, h.value) for h in (headers and headers.add) or ()),
    )


def _health_check(conf: dict[str, Any]) -> HealthCheck | None:
    if not conf:
        return None  # no MeshHealthCheck: no checks
    hc = read_conf(HealthCheckConf, conf, MESH_HEALTH_CHECK)
    tcp = hc.tcp is None or not hc.tcp.disabled
    http = _http_check(hc)
    if not tcp and http is None:
        return None
    return HealthCheck(
        interval=hc.interval.total_seconds(),
        timeout=hc.timeout.total_seconds(),
        unhealthy_threshold=hc.unhealthy_threshold,
        healthy_threshold=hc.healthy_threshold,
        tcp=tcp,
        http=http,
    )


def _outlier(breaker: CircuitBreakerConf) -> Outlier | None:
    od = breaker.outlier_detection
    if od is None or od.disabled:
        return None
    d = od.detectors or Detectors()
    base = Outlier()
    sr, fp = d.success_rate, d.failure_percentage
    return Outlier(
        interval=od.interval.total_seconds() if od.interval else base.interval,
        base_ejection_time=(
            od.base_ejection_time.total_seconds()
            if od.base_ejection_time
            else base.base_ejection_time
        ),
        max_ejection_percent=_or(od.max_ejection_percent, base.max_ejection_percent),
        split_external_and_local_errors=bool(od.split_external_and_local_errors),
        total_failures=_consecutive(d.total_failures),
        gateway_failures=_consecutive(d.gateway_failures),
        local_origin_failures=_consecutive(d.local_origin_failures),
        success_rate=None
        if not sr
        else SuccessRate(
            minimum_hosts=sr.minimum_hosts or SuccessRate().minimum_hosts,
            request_volume=sr.request_volume or SuccessRate().request_volume,
            standard_deviation_factor=float(
                sr.standard_deviation_factor or SuccessRate().standard_deviation_factor
            ),
        ),
        failure_percentage=None
        if not fp
        else FailurePercentage(
            minimum_hosts=fp.minimum_hosts or FailurePercentage().minimum_hosts,
            request_volume=fp.request_volume or FailurePercentage().request_volume,
            threshold=FailurePercentage().threshold if fp.threshold is None else fp.threshold,
        ),
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


DEFAULT_CONSECUTIVE = 5  # Envoy's consecutive_5xx / gateway / local-origin default


def _consecutive(detector: Consecutive | None) -> int | None:
    if detector is None:
        return None
    return detector.consecutive or DEFAULT_CONSECUTIVE


def _limits(breaker: CircuitBreakerConf) -> dict[str, int]:
    """The request limits the merged conf sets (OutboundPolicies' defaults for the rest)."""
    limits = breaker.connection_limits
    if limits is None:
        return {}
    fields = {
        "max_pending_requests": limits.max_pending_requests,
        "max_requests": limits.max_requests,
        "max_retries": limits.max_retries,
        "max_connection_pools": limits.max_connection_pools,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _seconds(value: timedelta | None, default: float = 0.0) -> float:
    return default if value is None else value.total_seconds()


def _http_seconds(http: HttpTimeouts | None) -> dict[str, float]:
    """MeshTimeout `http` in seconds, by the field names of OutboundPolicies and
    InboundTimeouts; Kuma's defaults for what is unset."""
    h = http or HttpTimeouts.model_construct()
    return {
        "request_timeout": _seconds(h.request_timeout, DEFAULT_REQUEST_TIMEOUT),
        "stream_idle_timeout": _seconds(h.stream_idle_timeout, DEFAULT_STREAM_IDLE_TIMEOUT),
        "max_stream_duration": _seconds(h.max_stream_duration),
        "max_connection_duration": _seconds(h.max_connection_duration),
        "request_headers_timeout": _seconds(h.request_headers_timeout),
    }


def _http_timeouts(http: HttpTimeouts | None, policies: OutboundPolicies) -> OutboundPolicies:
    """MeshTimeout `http` on OutboundPolicies; Kuma's defaults for what is unset."""
    return msgspec.structs.replace(policies, **_http_seconds(http))


def inbound_timeouts(matched: Sequence[Matched], inbound: int) -> InboundTimeouts:
    """MeshTimeout `rules` for the inbound at index `inbound`, from the MeshTimeouts matched
    to the dataplane (their top-level targetRef selects the inbound). Without any, the
    inbound keeps its own defaults (InboundTimeouts()); with one, the fields it leaves out
    take Kuma's defaults, as on an outbound."""
    merged = merge_entries(entries(matched, "rules", inbound))
    if merged.empty:
        return InboundTimeouts()
    conf = read_conf(TimeoutConf, merged.conf, MESH_TIMEOUT)
    return InboundTimeouts(
        connect_timeout=conf.connection_timeout.total_seconds(),
        idle_timeout=conf.idle_timeout.total_seconds(),
        sources=merged.sources,
        **_http_seconds(conf.http),
    )


def _http_retry(retry: RetryConf) -> HttpRetry:
    """MeshRetry `http`; the fields it leaves out keep Kuma's default policy's values."""
    h = retry.http
    if h is None:
        return HttpRetry()
    default = HttpRetry()
    base = _seconds(h.back_off.base_interval if h.back_off else None, default.base_interval)
    return HttpRetry(
        num_retries=default.num_retries if h.num_retries is None else h.num_retries,
        per_try_timeout=_seconds(h.per_try_timeout, default.per_try_timeout),
        base_interval=base,
        max_interval=_seconds(h.back_off.max_interval if h.back_off else None, 10 * base),
        retry_on=tuple(h.retry_on) if h.retry_on else DEFAULT_HTTP_RETRY_ON,
    )


def _hash_conf(lb: LoadBalancingConf) -> HashConf:
    """RingHash / Maglev parameters and hash policies (FilterState is refused by the API)."""
    params: RingHash | Maglev | None = None
    if lb.load_balancer is not None:
        params = lb.load_balancer.ring_hash or lb.load_balancer.maglev
    if params is None:
        return HashConf()
    policies = tuple(
        HashPolicy(
            type=p.type,
            name=(
                (p.header.name if p.header else "")
                or (p.cookie.name if p.cookie else "")
                or (p.query_parameter.name if p.query_parameter else "")
            ),
            terminal=bool(p.terminal),
            source_ip=bool(p.connection and p.connection.source_ip),
        )
        for p in params.hash_policies or ()
        if p.type != "FilterState"
    )
    base = HashConf(policies=policies)
    if isinstance(params, RingHash):
        return HashConf(
            policies=policies,
            min_ring_size=params.min_ring_size or base.min_ring_size,
            max_ring_size=params.max_ring_size or base.max_ring_size,
        )
    return HashConf(policies=policies, table_size=params.table_size or base.table_size)


def load_balancing_conf(
    matched: Mapping[str, Sequence[Matched]],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> LoadBalancingConf:
    """The merged MeshLoadBalancingStrategy `default` for the outbound to `service` (to its
    MeshService port named `section`, when given)."""
    merged = outbound_conf(matched.get(MESH_LOAD_BALANCING_STRATEGY, ()), service, labels, section)
    return read_conf(LoadBalancingConf, merged.conf, MESH_LOAD_BALANCING_STRATEGY)


def outbound_policies(
    matched: Mapping[str, Sequence[Matched]],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> OutboundPolicies:
    """The enforced settings for the outbound to `service` (with `labels`, for targetRefs
    selecting a MeshService by labels), from the policies of each type already matched to
    the dataplane (rules.match), keyed by type name. Locality fields are the builder's
    (meshfed/dpconfig/locality.py: they depend on the caller's zone and tags)."""
    merged = {
        t: outbound_conf(matched.get(t, ()), service, labels, section) for t in OUTBOUND_TYPES
    }
    timeout = read_conf(TimeoutConf, merged[MESH_TIMEOUT].conf, MESH_TIMEOUT)
    retry = read_conf(RetryConf, merged[MESH_RETRY].conf, MESH_RETRY)
    breaker = read_conf(CircuitBreakerConf, merged[MESH_CIRCUIT_BREAKER].conf, MESH_CIRCUIT_BREAKER)
    lb = read_conf(
        LoadBalancingConf,
        merged[MESH_LOAD_BALANCING_STRATEGY].conf,
        MESH_LOAD_BALANCING_STRATEGY,
    )
    sources: list[str] = []
    for t in OUTBOUND_TYPES:
        sources += [s for s in merged[t].sources if s not in sources]
    policies = OutboundPolicies(
        connect_timeout=timeout.connection_timeout.total_seconds(),
        idle_timeout=timeout.idle_timeout.total_seconds(),
        max_connect_attempts=retry.max_connect_attempt,
        health_check=_health_check(merged[MESH_HEALTH_CHECK].conf),
        max_connections=breaker.max_connections,
        load_balancer=LbAlgorithm(lb.algorithm),
        hash=_hash_conf(lb),
        least_request_choices=lb.least_request_choices,
        locality_aware=lb.locality_aware,
        outlier=_outlier(breaker),
        http_retry=_http_retry(retry),
        sources=tuple(sources),
    )
    policies = msgspec.structs.replace(policies, **_limits(breaker))
    return _http_timeouts(timeout.http, policies)


@dataclass(frozen=True, slots=True)
class RouteBackend:
    """One backendRef of a MeshTCPRoute, as far as it resolves without the catalog."""

    weight: int
    name: str | None = None  # the service, when named
    labels: dict[str, str] = field(default_factory=dict)  # MeshService labels, when not
    tags: dict[str, str] = field(default_factory=dict)  # the subset (no service, no zone tag)
    zone: str | None = None  # the pinned zone
    port: int | None = None  # a port of the MeshService `name` (decision 166)


@dataclass(frozen=True, slots=True)
class TcpRoute:
    """The effective MeshTCPRoute of one outbound and the policies it came from."""

    backends: tuple[RouteBackend, ...]
    sources: tuple[str, ...]


def _route_entries(matched: Sequence[Matched]) -> Iterator[Entry]:
    """The `to[]` entries of matched routes with their one rule's `default` as the entry's,
    in merge order (rules.entries' order: by the entry's targetRef kind, stably)."""
    out: list[Entry] = []
    for m in matched:
        for raw in as_list(m.policy.spec.get("to")):
            if not isinstance(raw, dict):
                continue
            ref = raw.get("targetRef")
            rules = as_list(raw.get("rules"))
            default = rules[0].get("default") if rules and isinstance(rules[0], dict) else None
            out.append(
                Entry(
                    ref if isinstance(ref, dict) else {"kind": MESH},
                    default if isinstance(default, dict) else {},
                    m.policy,
                )
            )
    out.sort(key=lambda e: kind_rank(e.target_ref))
    yield from out


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def route_backend(ref: Mapping[str, Any]) -> RouteBackend:
    """A backendRef as a RouteBackend. A subset's `kuma.io/service` tag equal to its name
    adds nothing and is dropped (another value selects no instance, as in Kuma)."""
    weight = ref.get("weight")
    name = ref.get("name") if isinstance(ref.get("name"), str) else None
    labels = _str_map(ref.get("labels"))
    tags = _str_map(ref.get("tags")) if ref.get("kind") == MESH_SERVICE_SUBSET else {}
    if name is not None and tags.get(SERVICE_TAG) == name:
        del tags[SERVICE_TAG]
    zone = tags.pop(LABEL_ZONE, None)
    if zone is None and labels.get(LABEL_ZONE, WILDCARD) != WILDCARD:
        zone = labels[LABEL_ZONE]
    return RouteBackend(
        weight=weight if isinstance(weight, int) else DEFAULT_BACKEND_WEIGHT,
        name=name,
        labels=labels,
        tags=tags,
        zone=zone,
        port=ref.get("port") if isinstance(ref.get("port"), int) else None,
    )


def tcp_route(
    matched: Mapping[str, Sequence[Matched]],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> TcpRoute | None:
    """The MeshTCPRoute of the outbound to `service` (to its MeshService port named
    `section`, when given); None when no route selects it."""
    merged = merge_entries(
        e
        for e in _route_entries(matched.get(MESH_TCP_ROUTE, ()))
        if to_selects(e.target_ref, service, labels, section)
    )
    refs = merged.conf.get("backendRefs")
    if merged.empty or not isinstance(refs, list) or not refs:
        return None
    backends = tuple(route_backend(r) for r in refs if isinstance(r, dict))
    return TcpRoute(backends, merged.sources)


ANY_SERVICE = "*"  # a ref whose service is known only with the catalog (labels)


def _ref_service(ref: Any) -> str:
    """The service a MeshService(Subset) ref names: by `name`, or its display-name label;
    ANY_SERVICE when only the catalog can tell."""
    if not isinstance(ref, dict):
        return ANY_SERVICE
    name = ref.get("name")
    if isinstance(name, str):
        return name
    labels = ref.get("labels")
    shown = labels.get(LABEL_DISPLAY_NAME) if isinstance(labels, dict) else None
    return shown if isinstance(shown, str) and shown != WILDCARD else ANY_SERVICE


def _mirrors(default: Any) -> list[Any]:
    """The backendRefs of a MeshHTTPRoute rule's RequestMirror filters."""
    filters = default.get("filters") if isinstance(default, dict) else None
    return [
        f["requestMirror"].get("backendRef")
        for f in (filters if isinstance(filters, list) else [])
        if isinstance(f, dict) and isinstance(f.get("requestMirror"), dict)
    ]


def route_targets(routes: Iterable[Resource]) -> dict[str, set[str]]:
    """For zone-cp's narrowed catalogs and rebuilds: each service a MeshTCPRoute or
    MeshHTTPRoute sends to (its backendRefs, a mirror's), mapped to the services it routes
    (its `to[]`), over every route given (matched or not: a superset is safe). ANY_SERVICE
    stands for a ref by labels alone."""
    out: dict[str, set[str]] = {}
    for route in routes:
        for to in as_list(route.spec.get("to")):
            if not isinstance(to, dict):
                continue
            routed = _ref_service(to.get("targetRef"))
            for rule in as_list(to.get("rules")):
                default = rule.get("default") if isinstance(rule, dict) else None
                refs = default.get("backendRefs") if isinstance(default, dict) else None
                refs = [*(refs if isinstance(refs, list) else []), *_mirrors(default)]
                for ref in refs:
                    out.setdefault(_ref_service(ref), set()).add(routed)
    return out


def routed_services(service: str, routes: Iterable[Resource]) -> set[str]:
    """The services whose outbounds a MeshTCPRoute may send to `service` (ANY_SERVICE: any):
    a sidecar calling one of them depends on `service`'s endpoints too."""
    targets = route_targets(routes)
    return targets.get(service, set()) | targets.get(ANY_SERVICE, set())


def with_route_backends(
    wanted: frozenset[str], routes: Iterable[Resource]
) -> frozenset[str] | None:
    """`wanted` (the services a sidecar calls) with every service a route of them sends to;
    None (every service) when a route sends by labels alone."""
    out = set(wanted)
    for backend, routed in route_targets(routes).items():
        if ANY_SERVICE in routed or routed & wanted:
            if backend == ANY_SERVICE:
                return None
            out.add(backend)
    return frozenset(out)
