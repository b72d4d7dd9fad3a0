"""Merging `default` blocks: JSON merge patch, and Kuma's order of `to[]` entries."""

from __future__ import annotations

from typing import Any

from meshfed.policy.merge import merge_confs, merge_patch
from meshfed.policy.rules import match, outbound_conf
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc, to

VIEW = view_of(dataplane("web-1", inbound("web", 8080), labels={"app": "web"}), "zone-1")


def timeout(name: str, target: dict[str, Any] | None, *entries: dict[str, Any]) -> Resource:
    return policy("MeshTimeout", name, target, to=list(entries))


def test_merge_patch_follows_kumas_documented_example() -> None:
    first = {"conf": 1, "sub": {"array": [1, 2, 3], "other": 50, "other-array": [3, 4, 5]}}
    second = {"sub": {"array": [], "other": None, "other-array": [5, 6], "extra": 2}}
    assert merge_confs([first, second]) == {
        "conf": 1,
        "sub": {"array": [], "other-array": [5, 6], "extra": 2},
    }
    # Inputs are untouched.
    assert first["sub"] == {"array": [1, 2, 3], "other": 50, "other-array": [3, 4, 5]}


def test_merge_patch_edge_cases() -> None:
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_patch({"a": {"b": 2}}, {"a": 3}) == {"a": 3}
    assert merge_patch("scalar", {"a": None}) == {}
    assert merge_patch({"a": 1}, [1]) == [1]
    assert merge_confs([]) == {}
    assert merge_confs([{"a": 1}, "not an object", {"b": 2}]) == {"b": 2}


def test_more_specific_entry_wins_field_by_field() -> None:
    policies = [
        timeout(
            "defaults",
            MESH_REF,
            to(MESH_REF, {"connectionTimeout": "5s", "idleTimeout": "1h"}),
            to(svc("backend"), {"idleTimeout": "10m"}),
        )
    ]
    matched = match(policies, VIEW)
    assert outbound_conf(matched, "backend").conf == {
        "connectionTimeout": "5s",
        "idleTimeout": "10m",
    }
    assert outbound_conf(matched, "other").conf == {"connectionTimeout": "5s", "idleTimeout": "1h"}


def test_to_kind_comes_before_policy_specificity() -> None:
    # Kuma sorts the concatenated to[] entries by their own targetRef kind: a Mesh-wide
    # recommendation for `backend` beats a web-specific policy's `to: Mesh`.
    producer = timeout("producer", MESH_REF, to(svc("backend"), {"idleTimeout": "30s"}))
    consumer = timeout(
        "consumer",
        {"kind": "Dataplane", "labels": {"app": "web"}},
        to(MESH_REF, {"idleTimeout": "5m"}),
    )
    merged = outbound_conf(match([consumer, producer], VIEW), "backend")
    assert merged.conf == {"idleTimeout": "30s"}
    assert merged.sources == ("MeshTimeout/consumer", "MeshTimeout/producer")
    # Same to-kind: the more specific policy wins.
    consumer2 = timeout(
        "consumer2",
        {"kind": "Dataplane", "labels": {"app": "web"}},
        to(svc("backend"), {"idleTimeout": "5m"}),
    )
    assert outbound_conf(match([consumer2, producer], VIEW), "backend").conf == {
        "idleTimeout": "5m"
    }


def test_equal_policies_tie_on_name_first_in_alphabet_wins() -> None:
    a = timeout("aaa", MESH_REF, to(MESH_REF, {"idleTimeout": "1s"}))
    z = timeout("zzz", MESH_REF, to(MESH_REF, {"idleTimeout": "9s", "connectionTimeout": "2s"}))
    merged = outbound_conf(match([a, z], VIEW), "backend")
    assert merged.conf == {"idleTimeout": "1s", "connectionTimeout": "2s"}
    assert merged.sources == ("MeshTimeout/zzz", "MeshTimeout/aaa")


def test_policy_not_selecting_the_proxy_is_ignored() -> None:
    other = timeout("for-other", svc("other"), to(MESH_REF, {"idleTimeout": "1s"}))
    merged = outbound_conf(match([other], VIEW), "backend")
    assert merged.empty and merged.conf == {}
