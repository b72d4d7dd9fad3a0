"""The enforced field set: every enforced field is one the API accepts, and every other field
of a policy is named with its path."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.policy.enforced import ENFORCED, NOT_ENFORCED, unenforced_fields
from meshfed.resources.errors import FieldError
from meshfed.resources.types.policies import POLICIES
from tests.unit.policy.factories import (
    MESH_REF,
    dataplane,
    frm,
    inbound,
    mtp,
    policy,
    resource,
    svc,
    to,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kuma"

# Policies the API refuses (that is what is tested here), built past the enforcement gate.
loose_policy = functools.partial(policy, enforced=False)
loose_mtp = functools.partial(mtp, enforced=False)

# One policy per type using every enforced field at once.
FULLY_ENFORCED = [
    mtp(
        "mtp-from",
        svc("backend"),
        from_=[
            frm(MESH_REF, "Deny"),
            frm({"kind": "MeshSubset", "tags": {"kuma.io/service": "web"}}, "Allow"),
            frm(svc("orders"), "AllowWithShadowDeny"),
            frm({"kind": "MeshServiceSubset", "name": "billing"}, "Allow"),
        ],
    ),
    mtp(
        "mtp-rules",
        {"kind": "Dataplane", "labels": {"app": "backend"}, "sectionName": "api"},
        rules=[
            {
                "default": {
                    "allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}],
                    "deny": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/x"}}],
                    "allowWithShadowDeny": [
                        {"spiffeID": {"type": "Exact", "value": "spiffe://default/y"}}
                    ],
                }
            }
        ],
    ),
    policy(
        "MeshTimeout",
        "timeouts",
        MESH_REF,
        to=[
            to(
                svc("backend"),
                {
                    "connectionTimeout": "2s",
                    "idleTimeout": "0s",
                    "http": {
                        "requestTimeout": "2s",
                        "streamIdleTimeout": "1m",
                        "maxStreamDuration": "10m",
                        "maxConnectionDuration": "1h",
                        "requestHeadersTimeout": "500ms",
                    },
                },
            )
        ],
    ),
    policy(
        "MeshRetry",
        "retry",
        MESH_REF,
        to=[
            to(
                MESH_REF,
                {
                    "tcp": {"maxConnectAttempt": 3},
                    "http": {
                        "numRetries": 3,
                        "perTryTimeout": "1s",
                        "backOff": {"baseInterval": "10ms", "maxInterval": "1s"},
                        "retryOn": [
                            "5xx",
                            "5XX",
                            "GatewayError",
                            "Reset",
                            "Retriable4xx",
                            "ConnectFailure",
                            "EnvoyRatelimited",
                            "RefusedStream",
                            "HttpMethodGet",
                            "503",
                        ],
                    },
                },
            )
        ],
    ),
    policy(
        "MeshHealthCheck",
        "hc",
        MESH_REF,
        to=[
            to(
                MESH_REF,
                {
                    "interval": "5s",
                    "timeout": "1s",
                    "unhealthyThreshold": 2,
                    "healthyThreshold": 1,
                    "tcp": {"disabled": False},
                },
            )
        ],
    ),
    policy(
        "MeshCircuitBreaker",
        "cb",
        MESH_REF,
        to=[to(MESH_REF, {"connectionLimits": {"maxConnections": 100}})],
    ),
    policy(
        "MeshLoadBalancingStrategy",
        "lb",
        MESH_REF,
        to=[
            to(
                MESH_REF,
                {
                    "loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3}},
                    "localityAwareness": {"disabled": True},
                },
            ),
            to(svc("a"), {"loadBalancer": {"type": "RoundRobin", "roundRobin": {}}}),
            to(svc("b"), {"loadBalancer": {"type": "Random", "random": {}}}),
        ],
    ),
]


@pytest.mark.parametrize("p", FULLY_ENFORCED, ids=lambda p: p.meta.name)
def test_every_enforced_field_is_accepted_and_reports_nothing(p: Any) -> None:
    # Built through the validating codec by the factory; nothing left to refuse.
    assert unenforced_fields(p) == []


def test_every_policy_type_has_an_enforced_set() -> None:
    assert set(ENFORCED) == {d.name for d in POLICIES}


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (
            loose_policy(
                "MeshRetry",
                "grpc",
                MESH_REF,
                to=[to(MESH_REF, {"http": {"numRetries": 1}, "grpc": {"numRetries": 1}})],
            ),
            [("spec.to[0].default.grpc", "enforced here: tcp, http")],
        ),
        (
            loose_policy(
                "MeshTimeout", "inbound", MESH_REF, from_=[to(MESH_REF, {"idleTimeout": "1m"})]
            ),
            [("spec.from", "for MeshTimeout")],
        ),
        (
            loose_policy(
                "MeshCircuitBreaker",
                "rules",
                MESH_REF,
                rules=[{"default": {"connectionLimits": {"maxConnections": 1}}}],
            ),
            [("spec.rules", "for MeshCircuitBreaker")],
        ),
        (
            loose_policy(
                "MeshRetry",
                "http",
                MESH_REF,
                to=[
                    to(
                        MESH_REF,
                        {
                            "http": {
                                "numRetries": 3,
                                "retryOn": ["5xx", "503", "Http3PostConnectFailure"],
                                "hostSelection": [{"predicate": "OmitPreviousHosts"}],
                            }
                        },
                    )
                ],
            ),
            [
                ("spec.to[0].default.http.retryOn[2]", "'Http3PostConnectFailure' is not"),
                ("spec.to[0].default.http.hostSelection", "enforced here: numRetries"),
            ],
        ),
        (
            loose_policy(
                "MeshHealthCheck",
                "http",
                MESH_REF,
                to=[
                    to(MESH_REF, {"interval": "1s", "tcp": {}}),
                    to(svc("x"), {"grpc": {"serviceName": "h"}, "tcp": {"send": "aGk="}}),
                    to(svc("y"), {"http": {"path": "/health", "expectedStatuses": [200]}}),
                ],
            ),
            [
                ("spec.to[1].default.grpc", "interval"),
                ("spec.to[1].default.tcp.send", "enforced here: disabled"),
            ],
        ),
        (
            loose_policy(
                "MeshCircuitBreaker",
                "outlier",
                MESH_REF,
                to=[
                    to(
                        MESH_REF,
                        {
                            "connectionLimits": {"maxConnections": 5, "maxPendingRequests": 2},
                            "outlierDetection": {"disabled": False, "healthyPanicThreshold": 50},
                        },
                    )
                ],
            ),
            [("spec.to[0].default.outlierDetection.healthyPanicThreshold", "detectors")],
        ),
        (
            loose_policy(
                "MeshLoadBalancingStrategy",
                "ring",
                MESH_REF,
                to=[
                    to(
                        MESH_REF,
                        {
                            "loadBalancer": {
                                "type": "RingHash",
                                "ringHash": {
                                    "minRingSize": 8,
                                    "hashFunction": "MurmurHash2",
                                    "hashPolicies": [
                                        {"type": "Header", "header": {"name": "x"}},
                                        {"type": "FilterState", "filterState": {"key": "k"}},
                                        {"type": "Cookie", "cookie": {"name": "c", "ttl": "1s"}},
                                    ],
                                },
                            },
                            "localityAwareness": {"localZone": {"affinityTags": [{"key": "k"}]}},
                        },
                    )
                ],
            ),
            [
                ("spec.to[0].default.loadBalancer.ringHash.hashFunction", "use one of XXHash"),
                (
                    "spec.to[0].default.loadBalancer.ringHash.hashPolicies[1].type",
                    "use one of Header, Cookie, Connection, QueryParameter",
                ),
                (
                    "spec.to[0].default.loadBalancer.ringHash.hashPolicies[1].filterState",
                    "terminal",
                ),
                ("spec.to[0].default.loadBalancer.ringHash.hashPolicies[2].cookie.ttl", "name"),
            ],
        ),
        (
            loose_mtp(
                "tags",
                MESH_REF,
                from_=[
                    # any tag names callers (decision 152) ...
                    frm({"kind": "MeshSubset", "tags": {"env": "dev"}}, "Deny"),
                    # ... but not with a value no certificate's tag can have
                    frm(
                        {
                            "kind": "MeshServiceSubset",
                            "name": "web",
                            "tags": {"version": "*", "kuma.io/service": "web", "t": "a/b"},
                        },
                        "Allow",
                    ),
                ],
            ),
            [
                ("spec.from[1].targetRef.tags['version']", "no tag value is '*'"),
                ("spec.from[1].targetRef.tags['t']", "no tag value is '*'"),
            ],
        ),
    ],
    ids=lambda v: v.meta.name if hasattr(v, "meta") else "",
)
def test_unenforced_fields_are_named_with_their_path(
    p: Any, expected: list[tuple[str, str]]
) -> None:
    errors = unenforced_fields(p)
    assert [e.field for e in errors] == [field for field, _ in expected]
    for error, (_, hint) in zip(errors, expected, strict=True):
        assert NOT_ENFORCED in error.reason
        assert hint in error.reason


def test_null_fields_count_as_absent() -> None:
    p = policy(
        "MeshTimeout", "nulls", MESH_REF, to=[to(MESH_REF, {"idleTimeout": "1s", "http": None})]
    )
    assert unenforced_fields(p) == []


def test_non_policies_have_nothing_to_enforce() -> None:
    assert unenforced_fields(dataplane("dp", inbound("a", 1000))) == []


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            out.append((f"{path.stem}[{i}]", doc))
    return out


@pytest.mark.parametrize(("label", "doc"), fixtures(), ids=[label for label, _ in fixtures()])
def test_kuma_examples_are_checked_without_surprises(label: str, doc: dict[str, Any]) -> None:
    res = resource(doc, enforced=False)
    errors = unenforced_fields(res)
    for e in errors:
        assert isinstance(e, FieldError)
        assert e.field.startswith("spec."), e
        assert NOT_ENFORCED in e.reason


def test_malformed_bodies_do_not_crash() -> None:
    p = policy("MeshTimeout", "ok", MESH_REF, to=[to(MESH_REF, {"idleTimeout": "1s"})])
    for spec in (
        {"to": "x"},
        {"to": [1, None, {"default": "x"}, {"default": {"idleTimeout": None}}]},
        {"from": [{}], "rules": [[]]},
    ):
        p.spec = spec
        errors = unenforced_fields(p)
        assert all(e.field.startswith("spec.") for e in errors)


def test_kuma_examples_within_the_enforced_set() -> None:
    clean = {
        doc["name"] for _, doc in fixtures() if not unenforced_fields(resource(doc, enforced=False))
    }
    assert clean == {
        "backend-from-mesh",
        "bandwidth",
        "backend-rate-limit",
        "backend-tcp-rate-limit",
        "default-fault-injection",
        "list-of-faults",
        "rules-list-of-faults",
        "default-logging-outgoing-traffic",
        "incoming-plain",
        "tcp-json",
        "rules-inbound",
        "otel",
        "metrics-default",
        "metrics-otel",
        "trace-zipkin",
        "trace-datadog",
        "trace-otel",
        "trace-otel-http",
        "metrics-apps",
        "metrics-client",  # clientId: zone MADS (decision 163)
        "metrics-profiles",
        "metrics-exclude",
        "backend-next-by-labels",
        "http-split",
        "http-route-modifications",
        "http-route-mirror",
        "route-to-backend-v2",
        "backend-zone-2-canary",
        "tcp-route-1",
        "tcp-route-2",
        "allow-all",
        "all-client-kinds",  # callers by tags (decision 152)
        "example-with-tags",
        "allow-orders",
        "allow-orders-dataplane",
        "allow-orders-legacy",
        "backend-inbound",
        "deny-all",
        "deny-observability",
        "disable-la-to-backend",
        "full-rules",
        "headers-timeout",
        "inbound-timeout-tcp-port",
        "local-zone-affinity-backend",
        "local-zone-affinity-cross-backend",
        "local-zone-affinity-cross-dc",
        "mesh-circuit-breaker-all-default",
        "no-outlier-detection",
        "ring-hash",
        "shadow-deny-legacy",
        "tcp-timeout",
        "timeout-global",
        "web-to-backend-check",
        "web-to-backend-circuit-breaker",
        "web-to-backend-retry-http",
        "web-to-backend-retry-tcp",
    }


def _http_route(match: dict[str, Any], default: dict[str, Any]) -> Any:
    rules = [{"matches": [match], "default": default}]
    return policy(
        "MeshHTTPRoute", "r", MESH_REF, to=[{"targetRef": svc("b"), "rules": rules}], enforced=False
    )


def test_http_routes_enforce_every_match_and_filter() -> None:
    set_a = {"set": [{"name": "a", "value": "1"}]}
    full = {"type": "ReplaceFullPath", "replaceFullPath": "/"}
    rewrite = {"hostname": "h", "hostToBackendHostname": False, "path": full}
    every_filter = [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": set_a},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["a"]}},
        {"type": "URLRewrite", "urlRewrite": rewrite},
        {"type": "RequestMirror", "requestMirror": {"percentage": 5, "backendRef": svc("c")}},
    ]
    match = {
        "path": {"type": "RegularExpression", "value": "/v[0-9]+"},
        "method": "GET",
        "headers": [{"type": "Prefix", "name": "x", "value": "y"}],
        "queryParams": [{"type": "RegularExpression", "name": "q", "value": "a|b"}],
    }
    assert unenforced_fields(_http_route(match, {"filters": every_filter})) == []
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "port": 8443}}
    assert unenforced_fields(_http_route({}, {"filters": [redirect]})) == []


def test_http_route_regexes_must_compile_with_the_sidecars_engine() -> None:
    match = {
        "path": {"type": "RegularExpression", "value": "/(unclosed"},
        "headers": [{"type": "RegularExpression", "name": "x", "value": "[z-a]"}],
        "queryParams": [{"type": "RegularExpression", "name": "q", "value": "ok"}],
    }
    errors = unenforced_fields(_http_route(match, {}))
    at = "spec.to[0].rules[0].matches[0]"
    assert [e.field for e in errors] == [f"{at}.path.value", f"{at}.headers[0].value"]
    assert all("Python's re" in e.reason and NOT_ENFORCED in e.reason for e in errors)
