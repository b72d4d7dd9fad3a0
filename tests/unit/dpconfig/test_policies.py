"""From matched policies to the settings one outbound enforces."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.dpconfig.model import HealthCheck, LbAlgorithm, OutboundPolicies
from meshfed.dpconfig.policies import outbound_policies, read_conf
from meshfed.policy.rules import Matched, match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from meshfed.resources.models.policies import RetryConf
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc, to

VIEW = view_of(dataplane("web-1", inbound("web", 8080)), "zone-1")


def matched(*policies: Resource) -> dict[str, list[Matched]]:
    by_type: dict[str, list[Resource]] = {}
    for p in policies:
        by_type.setdefault(p.type, []).append(p)
    return {t: match(ps, VIEW) for t, ps in by_type.items()}


def one(type_: str, default: dict[str, Any], ref: dict[str, Any] = MESH_REF) -> Resource:
    return policy(type_, type_.lower(), MESH_REF, to=[to(ref, default)])


def test_no_policy_means_the_defaults() -> None:
    assert outbound_policies({}, "backend") == OutboundPolicies()


def test_every_enforced_field_reaches_the_outbound() -> None:
    got = outbound_policies(
        matched(
            one("MeshTimeout", {"connectionTimeout": "1500ms", "idleTimeout": "0s"}),
            one("MeshRetry", {"tcp": {"maxConnectAttempt": 3}}),
            one(
                "MeshHealthCheck",
                {"interval": "5s", "timeout": "1s", "unhealthyThreshold": 2, "tcp": {}},
            ),
            one("MeshCircuitBreaker", {"connectionLimits": {"maxConnections": 10}}),
            one(
                "MeshLoadBalancingStrategy",
                {
                    "loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 4}},
                    "localityAwareness": {"disabled": True},
                },
            ),
        ),
        "backend",
    )
    assert got == OutboundPolicies(
        connect_timeout=1.5,
        idle_timeout=0.0,
        max_connect_attempts=3,
        # Kuma's defaults fill in what the policy leaves out (healthyThreshold 1).
        health_check=HealthCheck(5.0, 1.0, 2, 1),
        max_connections=10,
        load_balancer=LbAlgorithm.LEAST_REQUEST,
        least_request_choices=4,
        locality_aware=False,
        sources=(
            "MeshTimeout/meshtimeout",
            "MeshRetry/meshretry",
            "MeshHealthCheck/meshhealthcheck",
            "MeshCircuitBreaker/meshcircuitbreaker",
            "MeshLoadBalancingStrategy/meshloadbalancingstrategy",
        ),
    )


def test_policies_are_per_service() -> None:
    m = matched(
        policy(
            "MeshTimeout",
            "t",
            MESH_REF,
            to=[
                to(MESH_REF, {"connectionTimeout": "2s"}),
                to(svc("backend"), {"idleTimeout": "30s"}),
            ],
        )
    )
    backend = outbound_policies(m, "backend")
    other = outbound_policies(m, "other")
    assert (backend.connect_timeout, backend.idle_timeout) == (2.0, 30.0)
    assert (other.connect_timeout, other.idle_timeout) == (2.0, 3600.0)


def test_health_checks_default_and_can_be_turned_off() -> None:
    defaults = outbound_policies(matched(one("MeshHealthCheck", {"tcp": {}})), "x")
    assert defaults.health_check == HealthCheck(60.0, 15.0, 5, 1)
    off = outbound_policies(
        matched(
            one("MeshHealthCheck", {"interval": "1s", "tcp": {}}),
            policy(
                "MeshHealthCheck",
                "off-for-x",
                MESH_REF,
                to=[to(svc("x"), {"tcp": {"disabled": True}})],
            ),
        ),
        "x",
    )
    assert off.health_check is None


def test_maglev_and_its_hash_policies_reach_the_sidecar_config() -> None:
    lb = {
        "type": "Maglev",
        "maglev": {
            "tableSize": 1021,
            "hashPolicies": [
                {"type": "Header", "header": {"name": "x-user"}, "terminal": True},
                {"type": "Connection", "connection": {"sourceIP": True}},
                {"type": "QueryParameter", "queryParameter": {"name": "q"}},
                {"type": "Cookie", "cookie": {"name": "session"}},
            ],
        },
    }
    maglev = policy(
        "MeshLoadBalancingStrategy", "maglev", MESH_REF, to=[to(MESH_REF, {"loadBalancer": lb})]
    )
    got = outbound_policies(matched(maglev), "x")
    assert got.load_balancer is LbAlgorithm.MAGLEV
    assert got.hash.table_size == 1021
    assert [(p.type, p.name, p.terminal, p.source_ip) for p in got.hash.policies] == [
        ("Header", "x-user", True, False),
        ("Connection", "", False, True),
        ("QueryParameter", "q", False, False),
        ("Cookie", "session", False, False),
    ]
    assert outbound_policies(matched(), "x").hash.policies == ()


def test_a_merge_that_breaks_a_rule_falls_back_to_the_defaults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each entry is valid; Kuma's JSON merge of the two is not (maxInterval < baseInterval).
    # The MeshRetry conf counts as unset, with a warning; the rest still applies.
    conf = {"http": {"backOff": {"baseInterval": "10s", "maxInterval": "1s"}}}
    with caplog.at_level("WARNING", logger="meshfed.dpconfig"):
        got = read_conf(RetryConf, conf, "MeshRetry")
    assert got.max_connect_attempt == 5 and got.http is None
    assert "merged MeshRetry default is not valid" in caplog.text
