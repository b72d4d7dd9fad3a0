"""Bad policies: every problem is reported at once, each with its full path and a clear reason.

These check Kuma's shape (the schema), so they validate without the enforcement gate, which
would add its own errors for the fields the sidecar does not enforce (test_enforcement_gate).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.errors import ValidationError
from tests.unit.policy.factories import schema_registry


def errors(text: str) -> list[tuple[str, str]]:
    """The (field, reason) pairs a YAML document is rejected with; fails if it is accepted."""
    doc = yaml.safe_load(text)
    with pytest.raises(ValidationError) as info:
        resource_from_dict(doc, schema_registry())
    return [(e.field, e.reason) for e in info.value.errors]


def policy(kind: str, spec: str) -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return f"type: {kind}\nmesh: default\nname: p\nspec:\n{body}\n"


def test_several_errors_at_once_with_full_paths() -> None:
    got = errors(
        policy(
            "MeshTrafficPermission",
            """
targetRef:
  kind: MeshGatewayRoute
from:
  - targetRef:
      kind: Mesh
    default:
      action: allow
  - targetRef: {kind: MeshService}
    default: {action: Deny, extra: 1}
""",
        )
    )
    assert got == [
        (
            "spec.targetRef.kind",
            "MeshGatewayRoute is not supported by meshfed (there are no built-in gateways); "
            "must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane, "
            "MeshExternalService",
        ),
        ("spec.from[0].default.action", "must be one of Allow, Deny, AllowWithShadowDeny"),
        ("spec.from[1].targetRef.name", "is required"),
        ("spec.from[1].default.extra", "unknown field (allowed: action)"),
    ]


@pytest.mark.parametrize(
    ("kind", "spec", "field", "reason"),
    [
        (
            "MeshRetry",
            "to: [{targetRef: {kind: Dataplane}, default: {tcp: {maxConnectAttempt: 1}}}]",
            "spec.to[0].targetRef.kind",
            "'Dataplane' is not allowed here; must be one of Mesh, MeshService, "
            "MeshMultiZoneService, MeshExternalService",
        ),
        (
            "MeshTimeout",
            "from: [{targetRef: {kind: MeshService, name: a}, default: {idleTimeout: 1s}}]",
            "spec.from[0].targetRef.kind",
            "'MeshService' is not allowed here; must be one of Mesh",
        ),
        (
            "MeshTrafficPermission",
            "from: [{targetRef: {kind: Dataplane}, default: {action: Allow}}]",
            "spec.from[0].targetRef.kind",
            "'Dataplane' is not allowed here; "
            "must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset",
        ),
        (
            "MeshLoadBalancingStrategy",
            "targetRef: {kind: MeshMultiZoneService, name: a}\n"
            "to: [{targetRef: {kind: Mesh}, default: {localityAwareness: {disabled: true}}}]",
            "spec.targetRef.kind",
            "MeshMultiZoneService is not supported by meshfed here (a destination: name it in "
            "to[]); must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane",
        ),
        (
            "MeshAccessLog",
            "to: [{targetRef: {kind: MeshExternalService, name: a}, default: {backends: []}}]",
            "spec.to[0].targetRef.kind",
            "MeshExternalService is not supported by meshfed here (only as the top-level "
            "targetRef of a MeshTrafficPermission, or in to[] of MeshTimeout, MeshRetry, "
            "MeshCircuitBreaker, MeshHealthCheck and MeshLoadBalancingStrategy); "
            "must be one of Mesh, MeshService, MeshMultiZoneService",
        ),
        (
            "MeshTimeout",
            "targetRef: {kind: MeshHTTPRoute, name: r}\n"
            "to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1s}}]",
            "spec.targetRef.kind",
            "MeshHTTPRoute is not supported by meshfed (policies cannot target routes yet); "
            "must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane",
        ),
        (
            "MeshCircuitBreaker",
            "targetRef: {}\nto: [{targetRef: {kind: Mesh}, default: {connectionLimits: {}}}]",
            "spec.targetRef.kind",
            "is required; must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset, "
            "Dataplane",
        ),
    ],
)
def test_target_ref_kinds_per_position(kind: str, spec: str, field: str, reason: str) -> None:
    assert errors(policy(kind, spec)) == [(field, reason)]


def test_target_ref_fields_per_kind() -> None:
    got = errors(
        policy(
            "MeshTimeout",
            """
targetRef:
  kind: Mesh
  name: everything
  namespace: kuma-demo
to:
  - targetRef: {kind: MeshService, name: a, labels: {app: b}}
    default: {idleTimeout: 1s}
  - targetRef: {kind: Mesh, proxyTypes: [Sidecar]}
    default: {idleTimeout: 1s}
from:
  - targetRef: {kind: Mesh, tags: {a: b}}
    default: {idleTimeout: 1s}
""",
        )
    )
    assert got == [
        ("spec.targetRef.name", "must not be set with kind Mesh"),
        (
            "spec.targetRef.namespace",
            "is not supported by meshfed: meshfed runs in Universal mode, without Kubernetes "
            "namespaces",
        ),
        ("spec.to[0].targetRef.labels", "either labels or name must be specified"),
        ("spec.to[1].targetRef.proxyTypes", "must not be set with kind Mesh"),
        ("spec.from[0].targetRef.tags", "must not be set with kind Mesh"),
    ]


def test_dataplane_target_ref_rules() -> None:
    got = errors(
        policy(
            "MeshRetry",
            """
targetRef: {kind: Dataplane, name: web-01, labels: {app: web}, sectionName: http,
            proxyTypes: [Gateway]}
to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: 2}}}]
""",
        )
    )
    assert got == [
        (
            "spec.targetRef.sectionName",
            "can only be used with inbound policies (those with from or rules)",
        ),
        ("spec.targetRef.proxyTypes", "must not be set with kind Dataplane"),
        ("spec.targetRef.labels", "either labels or name must be specified"),
    ]
    gateway = errors(
        policy(
            "MeshRetry",
            "targetRef: {kind: Mesh, proxyTypes: [Gateway]}\n"
            "to: [{targetRef: {kind: Mesh}, default: {tcp: {maxConnectAttempt: 2}}}]",
        )
    )
    assert gateway == [
        (
            "spec.targetRef.proxyTypes[0]",
            "Gateway is not supported by meshfed (there are no built-in gateways)",
        )
    ]


def test_wrong_json_types() -> None:
    got = errors(
        policy(
            "MeshRetry",
            """
targetRef: Mesh
to:
  - targetRef: {kind: Mesh}
    default:
      http: {numRetries: "3", perTryTimeout: 5, retryOn: 5xx}
      tcp: {maxConnectAttempt: true}
""",
        )
    )
    assert got == [
        ("spec.targetRef", "must be an object"),
        ("spec.to[0].default.http.numRetries", "must be an integer between 0 and 4294967295"),
        (
            "spec.to[0].default.http.perTryTimeout",
            'must be a duration such as "10s", "1m30s" or "500ms"',
        ),
        ("spec.to[0].default.http.retryOn", "must be a list"),
        ("spec.to[0].default.tcp.maxConnectAttempt", "must be an integer between 1 and 4294967295"),
    ]
    assert errors("type: MeshTimeout\nmesh: default\nname: p\nspec: [1]\n") == [
        ("spec", "must be an object"),
        ("spec", "at least one of 'to', 'from', 'rules' must be defined"),
    ]
    assert errors(policy("MeshTimeout", "to: {targetRef: {kind: Mesh}}")) == [
        ("spec.to", "must be a list"),
        ("spec", "at least one of 'to', 'from', 'rules' must be defined"),
    ]


def test_unknown_and_missing_fields() -> None:
    got = errors(
        policy(
            "MeshTimeout",
            """
default: {idleTimeout: 1s}
to:
  - default: {idleTimeout: 1s, http: {requestTimeout: 1s, retries: 3}}
  - targetRef: {kind: Mesh}
""",
        )
    )
    assert got == [
        ("spec.default", "unknown field (allowed: targetRef, to, from, rules)"),
        ("spec.to[0].targetRef", "is required"),
        (
            "spec.to[0].default.http.retries",
            "unknown field (allowed: requestTimeout, streamIdleTimeout, maxStreamDuration, "
            "maxConnectionDuration, requestHeadersTimeout)",
        ),
        ("spec.to[1].default", "is required"),
    ]
    assert errors("type: MeshTimeout\nmesh: default\nname: p\nkind: MeshTimeout\nspec: {}\n") == [
        ("kind", "unknown field"),
        ("spec", "at least one of 'to', 'from', 'rules' must be defined"),
    ]


def test_bad_durations() -> None:
    got = errors(
        policy(
            "MeshTimeout",
            """
to:
  - targetRef: {kind: Mesh}
    default:
      connectionTimeout: 0s
      idleTimeout: "10"
      http: {requestTimeout: -5s, streamIdleTimeout: 1 h, maxStreamDuration: 1d}
""",
        )
    )
    duration = 'must be a duration such as "10s", "1m30s" or "500ms"'
    assert got == [
        ("spec.to[0].default.connectionTimeout", "must be greater than zero"),
        ("spec.to[0].default.idleTimeout", duration),
        ("spec.to[0].default.http.requestTimeout", "must not be negative"),
        ("spec.to[0].default.http.streamIdleTimeout", duration),
        ("spec.to[0].default.http.maxStreamDuration", duration),
    ]


def test_bad_enum_values() -> None:
    got = errors(
        policy(
            "MeshRetry",
            """
to:
  - targetRef: {kind: Mesh}
    default:
      http:
        retryOn: [5xxx, "700", GatewayError, 503]
        rateLimitedBackOff: {resetHeaders: [{name: retry-after, format: Minutes}]}
      grpc: {retryOn: [unavailable]}
""",
        )
    )
    http_retry_on = (
        "must be one of 5xx, GatewayError, Reset, Retriable4xx, ConnectFailure, EnvoyRatelimited, "
        "RefusedStream, Http3PostConnectFailure, HttpMethodConnect, HttpMethodDelete, "
        "HttpMethodGet, HttpMethodHead, HttpMethodOptions, HttpMethodPatch, HttpMethodPost, "
        'HttpMethodPut, HttpMethodTrace, or an HTTP status code as a string (e.g. "503")'
    )
    assert got == [
        ("spec.to[0].default.http.retryOn[0]", http_retry_on),
        ("spec.to[0].default.http.retryOn[1]", http_retry_on),
        ("spec.to[0].default.http.retryOn[3]", http_retry_on),
        (
            "spec.to[0].default.http.rateLimitedBackOff.resetHeaders[0].format",
            "must be one of Seconds, UnixTimestamp",
        ),
        (
            "spec.to[0].default.grpc.retryOn[0]",
            "must be one of Canceled, DeadlineExceeded, Internal, ResourceExhausted, Unavailable",
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        (
            "MeshTrafficPermission",
            "targetRef: {kind: Mesh}",
            [("spec", "at least one of 'from', 'rules' must be defined")],
        ),
        (
            "MeshTrafficPermission",
            "from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]\n"
            "rules: [{default: {allow: [{spiffeID: {type: Prefix, value: 'spiffe://d'}}]}}]",
            [("spec", "'from' must be empty when 'rules' is defined")],
        ),
        (
            "MeshTimeout",
            "to: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1s}}]\n"
            "from: [{targetRef: {kind: Mesh}, default: {idleTimeout: 1s}}]\n"
            "rules: [{default: {idleTimeout: 1s}}]",
            [("spec", "'to' and 'from' must be empty when 'rules' is defined")],
        ),
        ("MeshRetry", "to: []", [("spec.to", "must have at least 1 item")]),
        ("MeshHealthCheck", "targetRef: {kind: Mesh}", [("spec.to", "must have at least 1 item")]),
        ("MeshLoadBalancingStrategy", "{}", [("spec.to", "must have at least 1 item")]),
    ],
)
def test_sections(kind: str, spec: str, expected: list[tuple[str, str]]) -> None:
    assert errors(policy(kind, spec)) == expected


def test_traffic_permission_rules() -> None:
    got = errors(
        policy(
            "MeshTrafficPermission",
            """
targetRef: {kind: Dataplane, sectionName: ""}
rules:
  - default: {}
  - default:
      deny: []
      allow:
        - spiffeID: {type: Exact, value: backend}
        - sni: {type: Exact, value: a.b}
        - spiffeID: {type: Suffix, value: "spiffe://d/x"}
""",
        )
    )
    assert got == [
        ("spec.targetRef.sectionName", "must not be empty"),
        (
            "spec.rules[0].default",
            "at least one of 'allow', 'deny', 'allowWithShadowDeny' must be set",
        ),
        ("spec.rules[1].default.deny", "must have at least 1 item"),
        ("spec.rules[1].default.allow[0].spiffeID.value", "must be a SPIFFE ID (spiffe://...)"),
        ("spec.rules[1].default.allow[1].spiffeID", "is required"),
        (
            "spec.rules[1].default.allow[1].sni",
            "is not supported by meshfed: callers are matched by their SPIFFE ID",
        ),
        ("spec.rules[1].default.allow[2].spiffeID.type", "must be one of Exact, Prefix"),
    ]


def test_retry_details() -> None:
    got = errors(
        policy(
            "MeshRetry",
            """
to:
  - targetRef: {kind: Mesh}
    default:
      http:
        backOff: {baseInterval: 10s, maxInterval: 1s}
        hostSelection:
          - predicate: OmitHostsWithTags
          - predicate: OmitPreviousPriorities
            tags: {a: b}
          - predicate: OmitPreviousPriorities
            updateFrequency: 0
        retriableRequestHeaders: [{type: Exact}]
      grpc: {}
""",
        )
    )
    assert got == [
        ("spec.to[0].default.http.backOff.maxInterval", "must not be less than baseInterval"),
        (
            "spec.to[0].default.http.hostSelection[0].tags",
            "is required when predicate is OmitHostsWithTags",
        ),
        (
            "spec.to[0].default.http.hostSelection[1].tags",
            "can only be set when predicate is OmitHostsWithTags",
        ),
        (
            "spec.to[0].default.http.hostSelection[1].updateFrequency",
            "is required when predicate is OmitPreviousPriorities",
        ),
        (
            "spec.to[0].default.http.hostSelection[2].updateFrequency",
            "must be an integer between 1 and 2147483647",
        ),
        (
            "spec.to[0].default.http.hostSelection[2].predicate",
            "OmitPreviousPriorities must only be specified once",
        ),
        ("spec.to[0].default.http.retriableRequestHeaders[0].name", "is required"),
        (
            "spec.to[0].default.grpc",
            "at least one of 'numRetries', 'perTryTimeout', 'backOff', 'rateLimitedBackOff', "
            "'retryOn' must be set",
        ),
    ]


def test_health_check_details() -> None:
    got = errors(
        policy(
            "MeshHealthCheck",
            """
to:
  - targetRef: {kind: Mesh}
    default:
      interval: 0s
      intervalJitterPercent: 101
      healthyPanicThreshold: "100.5"
      unhealthyThreshold: 0
      http: {path: "", expectedStatuses: [200, 99]}
      tcp: {send: "not base64!"}
  - targetRef: {kind: Mesh}
    default: {interval: 5s}
""",
        )
    )
    assert got == [
        ("spec.to[0].default.interval", "must be greater than zero"),
        ("spec.to[0].default.intervalJitterPercent", "must be an integer between 0 and 100"),
        (
            "spec.to[0].default.healthyPanicThreshold",
            'must be an integer or a decimal string (e.g. "99.5") at least 0 and at most 100',
        ),
        ("spec.to[0].default.unhealthyThreshold", "must be an integer between 1 and 2147483647"),
        ("spec.to[0].default.http.path", "must not be empty"),
        ("spec.to[0].default.http.expectedStatuses[1]", "must be an integer between 100 and 599"),
        ("spec.to[0].default.tcp.send", "must be base64-encoded"),
        ("spec.to[1].default", "at least one of 'http', 'tcp', 'grpc' must be set"),
    ]


def test_circuit_breaker_details() -> None:
    got = errors(
        policy(
            "MeshCircuitBreaker",
            """
rules:
  - default:
      connectionLimits: {maxConnections: 0}
      outlierDetection:
        maxEjectionPercent: 101
        detectors:
          successRate: {standardDeviationFactor: "0"}
  - default:
      outlierDetection: {detectors: {}}
  - default: {}
""",
        )
    )
    assert got == [
        (
            "spec.rules[0].default.connectionLimits.maxConnections",
            "must be an integer between 1 and 4294967295",
        ),
        (
            "spec.rules[0].default.outlierDetection.maxEjectionPercent",
            "must be an integer between 0 and 100",
        ),
        (
            "spec.rules[0].default.outlierDetection.detectors.successRate.standardDeviationFactor",
            'must be an integer or a decimal string (e.g. "99.5") greater than 0',
        ),
        (
            "spec.rules[1].default.outlierDetection.detectors",
            "at least one of 'totalFailures', 'gatewayFailures', 'localOriginFailures', "
            "'successRate', 'failurePercentage' must be set",
        ),
        (
            "spec.rules[2].default",
            "at least one of 'connectionLimits', 'outlierDetection' must be set",
        ),
    ]


def test_load_balancing_details() -> None:
    got = errors(
        policy(
            "MeshLoadBalancingStrategy",
            """
to:
  - targetRef: {kind: Mesh}
    default:
      loadBalancer:
        type: RoundRobin
        ringHash: {minRingSize: 10, maxRingSize: 5, hashPolicies: [{type: Header}, {type: Magic}]}
  - targetRef: {kind: Mesh}
    default:
      loadBalancer: {type: Maglev, maglev: {tableSize: 1000}}
      localityAwareness:
        localZone: {affinityTags: [{key: a, weight: 1}, {key: b}]}
        crossZone:
          failover:
            - {to: {type: Any, zones: [z1]}}
            - {from: {zones: []}, to: {type: Only}}
            - {to: {type: Everywhere}}
          failoverThreshold: {percentage: 150}
  - targetRef: {kind: Mesh}
    default: {loadBalancer: {type: Fastest}}
""",
        )
    )
    d0, d1 = "spec.to[0].default", "spec.to[1].default"
    assert got == [
        (f"{d0}.loadBalancer.ringHash.hashPolicies[0].header", "is required when type is Header"),
        (
            f"{d0}.loadBalancer.ringHash.hashPolicies[1].type",
            "must be one of Header, Cookie, Connection, QueryParameter, FilterState",
        ),
        (f"{d0}.loadBalancer.ringHash.minRingSize", "must not be greater than maxRingSize"),
        (f"{d0}.loadBalancer.ringHash", "can only be set when type is RingHash"),
        (f"{d1}.loadBalancer.maglev.tableSize", "must be a prime number"),
        (
            f"{d1}.localityAwareness.localZone.affinityTags",
            "all or none affinity tags should have weight",
        ),
        (
            f"{d1}.localityAwareness.crossZone.failover[0].to.zones",
            "must be empty when type is Any",
        ),
        (f"{d1}.localityAwareness.crossZone.failover[1].from.zones", "must have at least 1 item"),
        (
            f"{d1}.localityAwareness.crossZone.failover[1].to.zones",
            "must not be empty when type is Only",
        ),
        (
            f"{d1}.localityAwareness.crossZone.failover[2].to.type",
            "must be one of Any, Only, AnyExcept, None",
        ),
        (
            f"{d1}.localityAwareness.crossZone.failoverThreshold.percentage",
            'must be an integer or a decimal string (e.g. "99.5") at least 0 and at most 100',
        ),
        (
            "spec.to[2].default.loadBalancer.type",
            "must be one of RoundRobin, LeastRequest, RingHash, Random, Maglev",
        ),
    ]


def test_null_optional_fields_count_as_unset() -> None:
    doc: dict[str, Any] = yaml.safe_load(
        policy(
            "MeshTimeout",
            "targetRef:\nto:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1s, http:}",
        )
    )
    resource_from_dict(doc, schema_registry())
