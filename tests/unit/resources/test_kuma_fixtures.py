"""Policies exactly as Kuma's documentation shows them: Kuma's shape validates and
round-trips unchanged; the API accepts those within what meshfed's sidecar enforces and
refuses the others, naming every field it would not act on (the enforcement gate)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.policy.enforced import NOT_ENFORCED
from meshfed.resources.codec import resource_from_dict, resource_to_dict
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry
from meshfed.resources.types.policies import NOT_YET_ENFORCED, POLICIES
from tests.unit.policy.factories import schema_registry

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kuma"


def load_all() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            docs.append((f"{path.stem}[{i}]:{doc.get('name')}", doc))
    return docs


DOCS = load_all()

# The documented policies the API refuses, and the fields it names: each is a field the
# sidecar would not act on (HTTP-level settings of a TCP proxy, inbound sections it does not
# enforce, callers by tags a certificate does not carry, ...).
REFUSED: dict[str, list[str]] = {
    "MeshHTTPRoute/bad-regex": ["spec.to[0].rules[0].matches[0].path.value"],
    "MeshRateLimit/per-caller": ["spec.rules[0].matches"],
    "MeshAccessLog/response-flags": ["spec.to[0].default.backends[0].file.format.plain"],
    "MeshTrace/trace-zipkin-proto": ["spec.default.backends[0].zipkin.apiVersion"],
    "MeshTCPRoute/zone-2-v2": [
        "spec.to[0].rules[0].default.backendRefs[0].tags['version']",
    ],
    "MeshCircuitBreaker/backend-inbound-outlier-detection": [
        "spec.from",
    ],
    "MeshCircuitBreaker/backend-inbound-rules": [
        "spec.rules",
    ],
    "MeshHealthCheck/web-to-backend-check-full": [
        "spec.to[0].default.initialJitter",
        "spec.to[0].default.intervalJitter",
        "spec.to[0].default.intervalJitterPercent",
        "spec.to[0].default.healthyPanicThreshold",
        "spec.to[0].default.failTrafficOnPanic",
        "spec.to[0].default.noTrafficInterval",
        "spec.to[0].default.eventLogPath",
        "spec.to[0].default.alwaysLogHealthCheckFailures",
        "spec.to[0].default.reuseConnection",
        "spec.to[0].default.tcp.send",
        "spec.to[0].default.tcp.receive",
        "spec.to[0].default.grpc",
    ],
    "MeshHealthCheck/tcp-check": [
        "spec.to[0].default.tcp.send",
        "spec.to[0].default.tcp.receive",
    ],
    "MeshHealthCheck/grpc-check": [
        "spec.to[0].default.healthyPanicThreshold",
        "spec.to[0].default.grpc",
    ],
    # a generated cookie (ttl, path), FilterState and MurmurHash2 are not done
    "MeshLoadBalancingStrategy/least-request": [
        "spec.to[0].default.loadBalancer.leastRequest.activeRequestBias",
        "spec.to[1].default.loadBalancer.maglev.hashPolicies[0].cookie.ttl",
        "spec.to[1].default.loadBalancer.maglev.hashPolicies[0].cookie.path",
        "spec.to[1].default.loadBalancer.maglev.hashPolicies[3].type",
        "spec.to[1].default.loadBalancer.maglev.hashPolicies[3].filterState",
    ],
    "MeshLoadBalancingStrategy/ring-hash-all-options": [
        "spec.to[0].default.loadBalancer.ringHash.hashFunction",
    ],
    "MeshRetry/web-to-backend-retry-grpc": [
        "spec.to[0].default.grpc",
    ],
    "MeshRetry/mesh-retry-all-default": [
        "spec.to[0].default.grpc",
    ],
    "MeshRetry/retry-on-codes": [
        "spec.to[0].default.http.rateLimitedBackOff",
    ],
    "MeshRetry/retry-host-selection": [
        "spec.to[0].default.http.retriableResponseHeaders",
        "spec.to[0].default.http.retriableRequestHeaders",
        "spec.to[0].default.http.hostSelection",
        "spec.to[0].default.http.hostSelectionMaxAttempts",
    ],
    "MeshTimeout/inbound-timeout": [
        "spec.from",
    ],
    "MeshTimeout/timeout-inbound-outbound": [
        "spec.from",
    ],
    "MeshTimeout/mesh-timeout-all-default": [
        "spec.from",
    ],
}


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_documented_policy_has_kumas_shape_and_round_trips(label: str, doc: dict[str, Any]) -> None:
    registry = schema_registry()  # the shape only: the gate is checked below
    res = resource_from_dict(doc, registry)
    back = resource_to_dict(res, registry.get(res.type))
    assert back == doc
    # YAML text -> dict -> Resource -> dict -> YAML text: same document (key order aside,
    # which the codec normalises to Kuma's type/mesh/name/spec order).
    text = yaml.safe_dump(doc, sort_keys=True)
    assert yaml.safe_dump(yaml.safe_load(yaml.safe_dump(back)), sort_keys=True) == text


@pytest.mark.parametrize(("label", "doc"), DOCS, ids=[label for label, _ in DOCS])
def test_api_accepts_only_what_the_sidecar_enforces(label: str, doc: dict[str, Any]) -> None:
    key = f"{doc['type']}/{doc['name']}"
    if key not in REFUSED:
        assert resource_from_dict(doc, default_registry()).type == doc["type"]
        return
    with pytest.raises(ValidationError) as info:
        resource_from_dict(doc, default_registry())
    assert [e.field for e in info.value.errors] == REFUSED[key]
    for error in info.value.errors:
        assert NOT_ENFORCED in error.reason
        assert error.field in str(info.value)  # the message a user sees names the field


def test_some_documented_policies_of_every_type_are_accepted() -> None:
    accepted = {doc["type"] for _, doc in DOCS if f"{doc['type']}/{doc['name']}" not in REFUSED}
    assert accepted == {d.name for d in POLICIES if d not in NOT_YET_ENFORCED}


def test_fixtures_cover_every_policy_and_section() -> None:
    per_type = Counter(doc["type"] for _, doc in DOCS)
    for desc in POLICIES:
        if desc not in NOT_YET_ENFORCED:  # their documented examples: tests/fixtures/kuma-docs
            assert per_type[desc.name] >= 4, desc.name
    sections: dict[str, set[str]] = {}
    for _, doc in DOCS:
        sections.setdefault(doc["type"], set()).update(
            s for s in ("to", "from", "rules") if s in doc["spec"]
        )
    assert sections == {
        "MeshTrafficPermission": {"from", "rules"},
        "MeshTimeout": {"to", "from", "rules"},
        "MeshRetry": {"to"},
        "MeshHealthCheck": {"to"},
        "MeshCircuitBreaker": {"to", "from", "rules"},
        "MeshLoadBalancingStrategy": {"to"},
        "MeshTCPRoute": {"to"},
        "MeshHTTPRoute": {"to"},
        "MeshFaultInjection": {"from", "rules"},
        "MeshRateLimit": {"from", "rules"},
        "MeshAccessLog": {"to", "from", "rules"},
        "MeshMetric": set(),
        "MeshTrace": set(),
    }


def test_fixture_names_are_unique_per_type() -> None:
    keys = [(doc["type"], doc["name"]) for _, doc in DOCS]
    assert len(keys) == len(set(keys))
