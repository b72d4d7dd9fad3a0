"""The policy fields meshfed's sidecar enforces, as data, and the check that names the others.

DESIGN.md: once mesh-dp exists, every accepted field must change what sidecars do. The
sidecar is a TCP proxy (HTTP passes through as bytes), so it enforces the connection-level
subset below; `unenforced_fields` reports everything else, path by path, for the API to
refuse with a 400. The policies' validators call it (meshfed/resources/types/policies.py), so
REST, dry runs and KDS all refuse the same fields.

| policy                    | section | enforced `default` fields                              |
|---------------------------|---------|--------------------------------------------------------|
| MeshTrafficPermission     | from[]  | action (callers by Mesh, MeshService, MeshSubset or    |
|                           |         | MeshServiceSubset with any tags: meshfed/policy/       |
|                           |         | callers.py; no '*' or '/' in a caller's tag value)     |
|                           | rules[] | allow, deny, allowWithShadowDeny (spiffeID Exact/Prefix)|
| MeshTimeout               | to[],   | connectionTimeout, idleTimeout, http.requestTimeout,   |
|                           | rules[] | http.streamIdleTimeout, http.maxStreamDuration,        |
|                           |         | http.maxConnectionDuration, http.requestHeadersTimeout |
| MeshRetry                 | to[]    | tcp.maxConnectAttempt, http.numRetries,                |
|                           |         | http.perTryTimeout, http.backOff (baseInterval,        |
|                           |         | maxInterval), http.retryOn (every value but            |
|                           |         | Http3PostConnectFailure; bodies above 64 KiB are not   |
|                           |         | retried: mesh_dp/http/retry.py)                        |
| MeshHealthCheck           | to[]    | interval, timeout, unhealthyThreshold,                 |
|                           |         | healthyThreshold, tcp.disabled (TCP connect checks),   |
|                           |         | http.disabled / path / expectedStatuses /              |
|                           |         | requestHeadersToAdd (HTTP checks of http services)     |
| MeshCircuitBreaker        | to[]    | connectionLimits.maxConnections, maxPendingRequests,   |
|                           |         | maxRequests, maxRetries, maxConnectionPools;           |
|                           |         | outlierDetection.disabled, interval, baseEjectionTime, |
|                           |         | maxEjectionPercent, splitExternalAndLocalErrors,       |
|                           |         | detectors (all five; not healthyPanicThreshold)        |
| MeshLoadBalancingStrategy | to[]    | loadBalancer.type RoundRobin / Random / LeastRequest / |
|                           |         | RingHash / Maglev, leastRequest.choiceCount,           |
|                           |         | ringHash (hashFunction XXHash, minRingSize,            |
|                           |         | maxRingSize), maglev.tableSize, hashPolicies (Header,  |
|                           |         | Cookie name, Connection sourceIP, QueryParameter,      |
|                           |         | terminal), localityAwareness (disabled, localZone      |
|                           |         | affinityTags, crossZone failover, failoverThreshold)   |
| MeshTCPRoute              | to[]    | rules[].default.backendRefs: kind MeshService (name or |
|                           |         | labels; name and a MeshService `port`, decision 166) / |
|                           |         | MeshServiceSubset (tags), weight; a subset             |
|                           |         | pinned to a zone by `kuma.io/zone` may carry no other  |
|                           |         | tag (another zone's ingress cannot pick by tag)        |
| MeshHTTPRoute             | to[]    | rules[].matches (all of Kuma's; regular expressions    |
|                           |         | must compile with Python's `re`, the sidecar's engine),|
|                           |         | rules[].default.backendRefs as MeshTCPRoute's, filters:|
|                           |         | RequestHeaderModifier, ResponseHeaderModifier,         |
|                           |         | RequestRedirect, URLRewrite (hostname, path),          |
|                           |         | RequestMirror (percentage, backendRef kind/name/labels/|
|                           |         | tags/port) (mesh_dp/http/route.py)                     |
| MeshFaultInjection        | from[], | http[].abort, delay, responseBandwidth; callers by     |
|                           | rules[] | service or tags (from[]) or SPIFFE ID (rules[])        |
| MeshRateLimit             | from[], | local.http (disabled, requestRate, onRateLimit status, |
|                           | rules[] | headers set/add), local.tcp (disabled, connectionRate);|
|                           |         | not `rules[].matches` (one bucket per inbound)         |
| MeshAccessLog             | to[],   | backends File (path, format) and Tcp (address, format);|
|                           | from[], | format Plain / Json with the placeholders of           |
|                           | rules[] | meshfed/policy/observability.py, omitEmptyValues;      |
|                           |         | OpenTelemetry (endpoint, body, attributes)             |
| MeshMetric                | default | backends Prometheus (port, path, tls Disabled /        |
|                           |         | ProvidedTLS), OpenTelemetry (endpoint,                 |
|                           |         | refreshInterval); applications, sidecar (regex,        |
|                           |         | includeUnused, profiles); clientId (zone MADS: which   |
|                           |         | Prometheus discovers the sidecar, zone_cp/mads.py)     |
| MeshTrace                 | default | backends Zipkin (url, traceId128bit, apiVersion        |
|                           |         | httpJson, sharedSpanContext), Datadog (url,            |
|                           |         | splitService), OpenTelemetry (endpoint); sampling      |
|                           |         | overall / client / random; tags literal / header       |

Top-level and `to[]` targetRefs are all enforced (matching happens in the control plane),
a MeshService by `name` or by `labels` (meshfed/policy/targetref.py).
What the enforced fields mean for the sidecar is in meshfed/dpconfig/policies.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from meshfed.policy.observability import access_log_formats
from meshfed.policy.otlp import access_log_errors, metric_errors, trace_errors
from meshfed.resources.errors import FieldError, index, join, key
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list
from meshfed.resources.types.targetref import MESH_SERVICE_SUBSET, MESH_SUBSET

NOT_ENFORCED: Final = "is not enforced by meshfed's sidecar"


class _AnyValue:
    """Every value of the field is enforced (its validator already bounds it)."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyValue()


@dataclass(frozen=True)
class OneOf:
    """Only these values of the field are enforced."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class EachOf:
    """A list field: each item must be one of `values`, or an HTTP status code as a string
    when `status_codes`."""

    values: tuple[str, ...]
    status_codes: bool = False

    def allows(self, item: Any) -> bool:
        if item in self.values:
            return True
        return self.status_codes and isinstance(item, str) and item.isdigit()


# A field tree: name -> ANY, OneOf, EachOf, or the tree of an object's fields.
Fields = Mapping[str, "_AnyValue | OneOf | EachOf | Fields"]

HTTP_TIMEOUTS: Final = (
    "requestTimeout",
    "streamIdleTimeout",
    "maxStreamDuration",
    "maxConnectionDuration",
    "requestHeadersTimeout",
)
HTTP_RETRY_ON: Final = (
    "5xx",
    "5XX",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    *(
        f"HttpMethod{m}"
        for m in ("Connect", "Delete", "Get", "Head", "Options", "Patch", "Post", "Put", "Trace")
    ),
)


@dataclass(frozen=True)
class Enforced:
    """What one policy type enforces, per section; None: nothing in that section is."""

    to: Fields | None = None
    from_: Fields | None = None
    rules: Fields | None = None
    # a route: `to[]` holds `rules[].default` rather than `default` (MeshTCPRoute)
    routes: bool = False
    # `rules[].matches` (callers by SPIFFE ID) is acted on
    rule_matches: bool = True
    default: Fields | None = None  # the top-level `default` (MeshMetric, MeshTrace)


# One RingHash / Maglev hash policy (mesh_dp/http/hashing.py). A cookie is hashed when the
# request has it; generating one (`ttl`, `path`) is not done.
_HASH_POLICY: Final[Fields] = {
    "type": OneOf(("Header", "Cookie", "Connection", "QueryParameter")),
    "terminal": ANY,
    "header": ANY,
    "cookie": {"name": ANY},
    "connection": ANY,
    "queryParameter": ANY,
}

# A route's backendRef: one weighted endpoint set (meshfed/dpconfig/build.py)
_BACKEND_REF: Final[Fields] = {
    "kind": ANY,
    "name": ANY,
    "labels": ANY,
    "tags": ANY,
    "weight": ANY,
    "port": ANY,  # a MeshService port (meshfed/dpconfig/meshservices.py port_split)
}
# MeshFaultInjection: Envoy's fault filter per item, delay then abort (mesh_dp/http/faults.py)
_FAULTS: Final[Fields] = {"http": {"abort": ANY, "delay": ANY, "responseBandwidth": ANY}}
# MeshRateLimit: Envoy's local rate limits, one token bucket per inbound (mesh_dp/ratelimit.py)
_RATE_LIMIT: Final[Fields] = {
    "local": {
        "http": {
            "disabled": ANY,
            "requestRate": ANY,
            "onRateLimit": {"status": ANY, "headers": {"set": ANY, "add": ANY}},
        },
        "tcp": {"disabled": ANY, "connectionRate": ANY},
    }
}
_LOG_FORMAT: Final[Fields] = {"type": ANY, "plain": ANY, "json": ANY, "omitEmptyValues": ANY}
_ACCESS_LOG: Final[Fields] = {
    "backends": {
        "type": OneOf(("File", "Tcp", "OpenTelemetry")),
        "file": {"path": ANY, "format": _LOG_FORMAT},
        "tcp": {"address": ANY, "format": _LOG_FORMAT},
        # OTLP LogRecords (meshfed/policy/otlp.py, mesh_dp/otlp/)
        "openTelemetry": {"endpoint": ANY, "body": ANY, "attributes": ANY},
    }
}
_METRIC: Final[Fields] = {
    "sidecar": {
        "regex": ANY,  # a family-name filter before the profiles (mesh_dp/metrics_filter.py)
        "includeUnused": ANY,
        "profiles": {"appendProfiles": ANY, "exclude": ANY, "include": ANY},
    },
    "applications": {"name": ANY, "path": ANY, "port": ANY, "address": ANY},
    "backends": {
        "type": OneOf(("Prometheus", "OpenTelemetry")),
        # ProvidedTLS: the sidecar's --metrics-cert-file/--metrics-key-file (decision 144)
        "prometheus": {
            "clientId": ANY,  # the Prometheus that discovers it (zone MADS, decision 163)
            "port": ANY,
            "path": ANY,
            "tls": {"mode": OneOf(("Disabled", "ProvidedTLS"))},
        },
        "openTelemetry": {"endpoint": ANY, "refreshInterval": ANY},  # OTLP push
    },
}

# MeshTrace (meshfed/dpconfig/tracing.py, mesh_dp/tracing/): one backend; Zipkin as JSON only
_TRACE: Final[Fields] = {
    "backends": {
        "type": ANY,
        "zipkin": {
            "url": ANY,
            "traceId128bit": ANY,
            "apiVersion": OneOf(("httpJson",)),
            "sharedSpanContext": ANY,
        },
        "datadog": {"url": ANY, "splitService": ANY},
        "openTelemetry": {"endpoint": ANY},
    },
    "sampling": {"overall": ANY, "client": ANY, "random": ANY},
    "tags": {"name": ANY, "literal": ANY, "header": {"name": ANY, "default": ANY}},
}

ENFORCED: Final[Mapping[str, Enforced]] = {
    "MeshTrafficPermission": Enforced(
        from_={"action": ANY},
        rules={"allow": ANY, "deny": ANY, "allowWithShadowDeny": ANY},
    ),
    "MeshTimeout": Enforced(
        to={
            "connectionTimeout": ANY,
            "idleTimeout": ANY,
            "http": {name: ANY for name in HTTP_TIMEOUTS},
        },
        # inbound: the connect to the application, the caller's quiet time, the HTTP
        # exchanges with the application (meshfed/dpconfig/policies.py, inbound_timeouts)
        rules={
            "connectionTimeout": ANY,
            "idleTimeout": ANY,
            "http": {name: ANY for name in HTTP_TIMEOUTS},
        },
    ),
    "MeshRetry": Enforced(
        to={
            "tcp": {"maxConnectAttempt": ANY},
            "http": {
                "numRetries": ANY,
                "perTryTimeout": ANY,
                "backOff": {"baseInterval": ANY, "maxInterval": ANY},
                "retryOn": EachOf(HTTP_RETRY_ON, status_codes=True),
            },
        }
    ),
    "MeshHealthCheck": Enforced(
        to={
            "interval": ANY,
            "timeout": ANY,
            "unhealthyThreshold": ANY,
            "healthyThreshold": ANY,
            "tcp": {"disabled": ANY},
            "http": {
                "disabled": ANY,
                "path": ANY,
                "expectedStatuses": ANY,
                "requestHeadersToAdd": ANY,
            },
        }
    ),
    "MeshCircuitBreaker": Enforced(
        to={
            "connectionLimits": {
                "maxConnections": ANY,
                "maxPendingRequests": ANY,
                "maxRequests": ANY,
                "maxRetries": ANY,
                "maxConnectionPools": ANY,
            },
            "outlierDetection": {
                "disabled": ANY,
                "interval": ANY,
                "baseEjectionTime": ANY,
                "maxEjectionPercent": ANY,
                "splitExternalAndLocalErrors": ANY,
                "detectors": ANY,
            },
        }
    ),
    "MeshLoadBalancingStrategy": Enforced(
        to={
            "loadBalancer": {
                "type": OneOf(("RoundRobin", "Random", "LeastRequest", "RingHash", "Maglev")),
                "roundRobin": {},
                "random": {},
                "leastRequest": {"choiceCount": ANY},
                "ringHash": {
                    # no xxHash in the standard library: a stable BLAKE2b-64 stands for it
                    "hashFunction": OneOf(("XXHash",)),
                    "minRingSize": ANY,
                    "maxRingSize": ANY,
                    "hashPolicies": _HASH_POLICY,
                },
                "maglev": {"tableSize": ANY, "hashPolicies": _HASH_POLICY},
            },
            "localityAwareness": {
                "disabled": ANY,
                "localZone": {"affinityTags": ANY},
                "crossZone": {"failover": ANY, "failoverThreshold": ANY},
            },
        }
    ),
    # Issue 14: Kuma's schemas are in, the sidecar does not act on them yet.
    # meshfed/dpconfig/policies.py (tcp_route) and build.py: one weighted endpoint set each
    "MeshTCPRoute": Enforced(to={"backendRefs": _BACKEND_REF}, routes=True),
    # meshfed/dpconfig/http_route.py merges and orders, mesh_dp/http/route.py evaluates
    "MeshHTTPRoute": Enforced(
        to={
            "backendRefs": _BACKEND_REF,
            "filters": {
                "type": ANY,
                "requestHeaderModifier": ANY,
                "responseHeaderModifier": ANY,
                "requestRedirect": ANY,
                "urlRewrite": {"hostname": ANY, "path": ANY, "hostToBackendHostname": ANY},
                "requestMirror": {
                    "percentage": ANY,
                    "backendRef": {
                        "kind": ANY,
                        "name": ANY,
                        "labels": ANY,
                        "tags": ANY,
                        "port": ANY,
                    },
                },
            },
        },
        routes=True,
    ),
    # meshfed/dpconfig/traffic_rules.py, mesh_dp/http/faults.py, mesh_dp/ratelimit.py
    "MeshFaultInjection": Enforced(from_=_FAULTS, rules=_FAULTS),
    "MeshRateLimit": Enforced(from_=_RATE_LIMIT, rules=_RATE_LIMIT, rule_matches=False),
    # Issue 18 (meshfed/policy/observability.py): access logs to files and TCP collectors
    "MeshAccessLog": Enforced(to=_ACCESS_LOG, from_=_ACCESS_LOG, rules=_ACCESS_LOG),
    "MeshMetric": Enforced(default=_METRIC),
    "MeshTrace": Enforced(default=_TRACE),
}

_SECTIONS: Final = (("to", "to"), ("from_", "from"), ("rules", "rules"))


def _names(fields: Fields) -> str:
    return ", ".join(fields) if fields else "none"


def _check_fields(value: Any, allowed: Fields, path: str) -> list[FieldError]:
    if not isinstance(value, dict):
        return []  # the validator reports wrong types
    errors: list[FieldError] = []
    for name, sub in value.items():
        if sub is None:
            continue  # null counts as absent (and removes a field when merged)
        rule = allowed.get(name)
        where = join(path, name)
        if rule is None:
            errors.append(FieldError(where, f"{NOT_ENFORCED} (enforced here: {_names(allowed)})"))
        elif isinstance(rule, OneOf):
            if sub not in rule.values:
                errors.append(
                    FieldError(
                        where,
                        f"{sub!r} {NOT_ENFORCED}: use one of {', '.join(rule.values)}",
                    )
                )
        elif isinstance(rule, EachOf):
            errors += [
                FieldError(index(where, i), f"{item!r} {NOT_ENFORCED}")
                for i, item in enumerate(sub if isinstance(sub, list) else [])
                if not rule.allows(item)
            ]
        elif isinstance(rule, _AnyValue):
            continue
        elif isinstance(sub, list):  # a list of objects: each against the tree
            for i, item in enumerate(sub):
                errors += _check_fields(item, rule, index(where, i))
        else:
            errors += _check_fields(sub, rule, where)
    return errors


CALLER_TAG_VALUE: Final = (
    f"{NOT_ENFORCED}: a caller's tags are matched exactly against its certificate's, and no "
    "tag value is '*' or holds '/'"
)


def _caller_tags(ref: Any, path: str) -> list[FieldError]:
    """A caller is known by its certificate: its service and its tags (decision 152), each
    matched exactly, so a selector value no dataplane tag can have would select nobody."""
    if not isinstance(ref, dict) or ref.get("kind") not in (MESH_SUBSET, MESH_SERVICE_SUBSET):
        return []
    tags = ref.get("tags")
    if not isinstance(tags, dict):
        return []
    return [
        FieldError(key(join(path, "tags"), k), CALLER_TAG_VALUE)
        for k, v in tags.items()
        if isinstance(v, str) and (v == "*" or "/" in v)
    ]


ZONE_SUBSET: Final = (
    f"{NOT_ENFORCED}: a MeshServiceSubset pinned to a zone by {LABEL_ZONE} takes no other "
    "tag (callers in other zones reach it through its zone ingress, which routes by service "
    "and mesh only, not by tags)"
)


def _zone_subsets(default: Any, path: str) -> list[FieldError]:
    """A backendRef subset that would need another zone's ingress to pick instances by tag."""
    refs = default.get("backendRefs") if isinstance(default, dict) else None
    errors: list[FieldError] = []
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        if not isinstance(ref, dict) or ref.get("kind") != MESH_SERVICE_SUBSET:
            continue
        tags = ref.get("tags")
        if not isinstance(tags, dict):
            continue
        if LABEL_ZONE in tags:
            errors += [
                FieldError(key(join(index(join(path, "backendRefs"), i), "tags"), k), ZONE_SUBSET)
                for k in tags
                if k not in (LABEL_ZONE, SERVICE_TAG)
            ]
    return errors


RULE_MATCHES: Final = (
    f"{NOT_ENFORCED}: one token bucket serves every caller of an inbound (leave `matches` out)"
)


def _route_defaults(item: dict[str, Any], at: str) -> list[tuple[Any, str]]:
    """The `rules[].default` blocks of a route's `to[]` entry, with their paths."""
    rules = item.get("rules")
    return [
        (rule.get("default"), join(index(join(at, "rules"), j), "default"))
        for j, rule in enumerate(rules if isinstance(rules, list) else [])
        if isinstance(rule, dict)
    ]


RE_SYNTAX: Final = f"{NOT_ENFORCED}: its regular expression engine (Python's re) cannot compile it"


def _regex_error(value: Any, where: str) -> list[FieldError]:
    if not isinstance(value, str):
        return []
    try:
        re.compile(value)
    except re.error as exc:
        return [FieldError(where, f"{RE_SYNTAX}: {exc}")]
    return []


def _regexes(item: dict[str, Any], at: str) -> list[FieldError]:
    """A MeshHTTPRoute match's regular expressions must compile where they are evaluated:
    Kuma's are RE2, meshfed's sidecar uses Python's `re` (decision 125)."""
    errors: list[FieldError] = []
    for j, rule in enumerate(as_list(item.get("rules"))):
        matches = rule.get("matches") if isinstance(rule, dict) else None
        for k, m in enumerate(matches if isinstance(matches, list) else []):
            if not isinstance(m, dict):
                continue
            where = index(join(index(join(at, "rules"), j), "matches"), k)
            path = m.get("path")
            if isinstance(path, dict) and path.get("type") == "RegularExpression":
                errors += _regex_error(path.get("value"), join(join(where, "path"), "value"))
            for field in ("headers", "queryParams"):
                for n, h in enumerate(as_list(m.get(field))):
                    if isinstance(h, dict) and h.get("type") == "RegularExpression":
                        errors += _regex_error(
                            h.get("value"), join(index(join(where, field), n), "value")
                        )
    return errors


def unenforced_fields(policy: Resource) -> list[FieldError]:
    """Every field of `policy` the sidecar would not act on, with its path (`spec.to[0]...`).

    Empty for types that are not Mesh* policies. Assumes nothing about validity: malformed
    parts are left to the validator.
    """
    enforced = ENFORCED.get(policy.type)
    if enforced is None:
        return []
    errors: list[FieldError] = []
    for attr, section in _SECTIONS:
        items = as_list(policy.spec.get(section))
        fields: Fields | None = getattr(enforced, attr)
        if not items:
            continue
        path = join("spec", section)
        if fields is None:
            errors.append(FieldError(path, f"{NOT_ENFORCED} for {policy.type}"))
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            at = index(path, i)
            if enforced.routes:
                for default, where in _route_defaults(item, at):
                    errors += _check_fields(default, fields, where)
                    errors += _zone_subsets(default, where)
                errors += _regexes(item, at)
                continue
            errors += _check_fields(item.get("default"), fields, join(at, "default"))
            if section == "rules" and not enforced.rule_matches and item.get("matches"):
                errors.append(FieldError(join(at, "matches"), RULE_MATCHES))
            if section == "from":
                errors += _caller_tags(item.get("targetRef"), join(at, "targetRef"))
    if enforced.default is not None and policy.spec.get("default") is not None:
        errors += _check_fields(policy.spec.get("default"), enforced.default, "spec.default")
    if policy.type == "MeshAccessLog":
        errors += access_log_formats(policy.spec)
        errors += access_log_errors(policy.spec)
    if policy.type == "MeshMetric":
        errors += metric_errors(policy.spec)
    if policy.type == "MeshTrace":
        errors += trace_errors(policy.spec)
    return errors
