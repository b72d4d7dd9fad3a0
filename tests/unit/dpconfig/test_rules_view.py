"""Kuma's inspect rules view of one dataplane (decision 138): per type, the merged conf the
builder computes and the policies it came from."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.rules_view import dataplane_rules, outbound_services
from meshfed.policy.targetref import service_labels
from meshfed.resources.model import Meta, Resource
from tests.unit.policy.factories import MESH_REF, dataplane, frm, inbound, mtp, policy, svc, to

WEB = dataplane("web-1", inbound("web", 8080), labels={"app": "web"})
SERVICES = {s: service_labels("default", s, ["zone-1"]) for s in ("backend", "db")}


def rules_of(*policies: Resource) -> dict[str, dict[str, Any]]:
    by_type: dict[str, list[Resource]] = {}
    for p in policies:
        by_type.setdefault(p.type, []).append(p)
    return {r["type"]: r for r in dataplane_rules(WEB, "zone-1", by_type, SERVICES)}


def origins(rule: dict[str, Any]) -> list[str]:
    return [o["resourceMeta"]["name"] for o in rule["origin"]]


def timeout(name: str, ref: dict[str, Any], default: dict[str, Any]) -> Resource:
    return policy("MeshTimeout", name, MESH_REF, to=[to(ref, default)])


def test_to_rules_merge_per_outbound_service_with_their_origins() -> None:
    got = rules_of(
        timeout("mesh-wide", MESH_REF, {"connectionTimeout": "2s", "idleTimeout": "20s"}),
        timeout("for-backend", svc("backend"), {"idleTimeout": "5s"}),
    )["MeshTimeout"]
    by_service = {r["matchers"][0]["value"]: r for r in got["toRules"]}
    assert by_service["backend"]["matchers"] == [
        {"key": "kuma.io/service", "value": "backend", "not": False}
    ]
    assert by_service["backend"]["conf"] == {"connectionTimeout": "2s", "idleTimeout": "5s"}
    assert origins(by_service["backend"]) == ["mesh-wide", "for-backend"]
    assert by_service["db"]["conf"] == {"connectionTimeout": "2s", "idleTimeout": "20s"}
    assert origins(by_service["db"]) == ["mesh-wide"]
    assert got["fromRules"] == got["inboundRules"] == got["singleItemRules"] == []


def test_a_type_with_no_policy_selecting_the_dataplane_is_absent() -> None:
    other = policy(
        "MeshTimeout", "not-web", {"kind": "MeshService", "name": "db"},
        to=[to(MESH_REF, {"idleTimeout": "1s"})],
    )  # fmt: skip
    assert rules_of(other) == {}


def test_from_rules_per_inbound_and_caller_subset() -> None:
    got = rules_of(
        mtp("allow-all", MESH_REF, from_=[frm(MESH_REF, "Allow")]),
        mtp("deny-db", MESH_REF, from_=[frm(svc("db"), "Deny")]),
    )["MeshTrafficPermission"]
    [per_inbound] = got["fromRules"]
    assert per_inbound["inbound"]["port"] == 8080
    assert per_inbound["inbound"]["tags"]["kuma.io/service"] == "web"
    everyone, db = per_inbound["rules"]
    assert everyone["matchers"] == [] and everyone["conf"] == {"action": "Allow"}
    assert db["matchers"] == [{"key": "kuma.io/service", "value": "db", "not": False}]
    assert db["conf"] == {"action": "Deny"}  # the narrower entry wins over Mesh's
    assert origins(db) == ["allow-all", "deny-db"]
    assert got["toRules"] == []


def test_inbound_rules_merge_the_rules_section() -> None:
    rule = {"default": {"connectionTimeout": "3s"}}
    got = rules_of(policy("MeshTimeout", "inbound", MESH_REF, rules=[rule]))["MeshTimeout"]
    [per_inbound] = got["inboundRules"]
    assert per_inbound["inbound"]["port"] == 8080
    [merged] = per_inbound["rules"]
    assert merged["conf"] == {"connectionTimeout": "3s"} and origins(merged) == ["inbound"]


def test_http_route_rules_are_merged_and_ordered_as_the_sidecar_tries_them() -> None:
    v2 = {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}}
    rules = [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "default": {}},
        {
            "matches": [{"path": {"type": "Exact", "value": "/v2"}}],
            "default": {"backendRefs": [{**v2, "weight": 1}]},
        },
    ]
    route = policy(
        "MeshHTTPRoute", "r", MESH_REF, to=[{"targetRef": svc("backend"), "rules": rules}]
    )
    [rule] = rules_of(route)["MeshHTTPRoute"]["toRules"]
    assert rule["matchers"][0]["value"] == "backend" and origins(rule) == ["r"]
    first, second = rule["conf"]["rules"]
    assert first["matches"] == [{"path": {"type": "Exact", "value": "/v2"}}]
    [backend] = first["default"]["backendRefs"]
    assert backend["name"] == "backend" and backend["tags"] == {"version": "v2"}
    assert second["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert second["default"]["backendRefs"] == []  # the service itself


def test_tcp_route_backends_with_weights() -> None:
    refs = [
        {"kind": "MeshService", "name": "backend", "weight": 90},
        {"kind": "MeshService", "name": "db", "weight": 10},
    ]
    to_ = [{"targetRef": svc("backend"), "rules": [{"default": {"backendRefs": refs}}]}]
    [rule] = rules_of(policy("MeshTCPRoute", "split", MESH_REF, to=to_))["MeshTCPRoute"]["toRules"]
    assert [(b["name"], b["weight"]) for b in rule["conf"]["backendRefs"]] == [
        ("backend", 90),
        ("db", 10),
    ]


def test_a_top_level_default_is_a_single_item_rule() -> None:
    """A type configured by a top-level `default` (as MeshMetric, MeshTrace): merged over every
    matched policy, least priority first."""

    def single(name: str, default: dict[str, Any]) -> Resource:
        spec = {"targetRef": MESH_REF, "default": default}
        return Resource("MeshExample", Meta(name, "default"), spec)

    got = rules_of(single("zzz", {"a": 1, "b": 1}), single("aaa", {"b": 2}))["MeshExample"]
    [rule] = got["singleItemRules"]
    assert rule["conf"] == {"a": 1, "b": 2}  # on a tie the first name in order wins
    assert origins(rule) == ["zzz", "aaa"] and rule["matchers"] == []


def test_outbound_services_come_from_dataplanes_and_named_targets() -> None:
    backend = dataplane("backend-1", inbound("backend", 9090), labels={"kuma.io/zone": "zone-2"})
    named = timeout("t", svc("ghost"), {"idleTimeout": "1s"})
    assert outbound_services([WEB, backend], [named]) == {
        "web": set(),
        "backend": {"zone-2"},
        "ghost": set(),
    }
