"""Top-level targetRef selection and policy order, as Kuma defines them."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.policy.rules import match, sort_policies, to_selects
from meshfed.policy.targetref import selected_inbounds, service_labels, view_of
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, mtp, svc

ZONE = "zone-1"
ZONE_L = "kuma.io/zone"

# One proxy with three inbounds: two services, one of them with two versions.
DP = dataplane(
    "backend-1",
    inbound("backend", 8080, name="main", tags={"version": "v1", "env": "prod"}),
    inbound("backend", 8081, tags={"version": "v2", "env": "prod"}),
    inbound("admin", 9901, name="admin", tags={"env": "prod"}),
    labels={"app": "backend", "team": "core"},
)
VIEW = view_of(DP, ZONE)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (None, {0, 1, 2}),
        (MESH_REF, {0, 1, 2}),
        ({"kind": "Mesh", "proxyTypes": ["Sidecar"]}, {0, 1, 2}),
        ({"kind": "MeshSubset"}, {0, 1, 2}),
        ({"kind": "MeshSubset", "tags": {"env": "prod"}}, {0, 1, 2}),
        ({"kind": "MeshSubset", "tags": {"version": "v2"}}, {1}),
        ({"kind": "MeshSubset", "tags": {"version": "v3"}}, set()),
        # The zone tag is implied on every inbound, as Kuma's zone CP adds it.
        ({"kind": "MeshSubset", "tags": {"kuma.io/zone": ZONE}}, {0, 1, 2}),
        ({"kind": "MeshSubset", "tags": {"kuma.io/zone": "zone-2"}}, set()),
        (svc("backend"), {0, 1}),
        (svc("admin"), {2}),
        (svc("web"), set()),
        # MeshService by labels (Kuma 2.9+): the service's MeshService labels, not its tags
        ({"kind": "MeshService", "labels": {LABEL_DISPLAY_NAME: "admin"}}, {2}),
        ({"kind": "MeshService", "labels": {LABEL_DISPLAY_NAME: "backend", ZONE_L: ZONE}}, {0, 1}),
        ({"kind": "MeshService", "labels": {LABEL_DISPLAY_NAME: "backend", ZONE_L: "z9"}}, set()),
        ({"kind": "MeshService", "labels": {"kuma.io/mesh": "default", ZONE_L: "*"}}, {0, 1, 2}),
        ({"kind": "MeshService", "labels": {"k8s.kuma.io/namespace": "kuma-demo"}}, set()),
        ({"kind": "MeshService", "labels": {"env": "prod"}}, set()),
        ({"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v1"}}, {0}),
        ({"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "*"}}, {0, 1}),
        ({"kind": "MeshServiceSubset", "name": "admin", "tags": {"version": "*"}}, set()),
        ({"kind": "Dataplane"}, {0, 1, 2}),
        ({"kind": "Dataplane", "name": "backend-1"}, {0, 1, 2}),
        ({"kind": "Dataplane", "name": "backend-2"}, set()),
        ({"kind": "Dataplane", "labels": {"app": "backend"}}, {0, 1, 2}),
        ({"kind": "Dataplane", "labels": {"app": "web"}}, set()),
        ({"kind": "Dataplane", "labels": {"app": "backend"}, "sectionName": "admin"}, {2}),
        # sectionName names an inbound, or else is its port.
        ({"kind": "Dataplane", "name": "backend-1", "sectionName": "8081"}, {1}),
        # ... of an unnamed inbound only (8080 is the inbound named "main")
        ({"kind": "Dataplane", "sectionName": "8080"}, set()),
        ({"kind": "Dataplane", "sectionName": "nope"}, set()),
    ],
)
def test_selected_inbounds(ref: Any, expected: set[int]) -> None:
    assert selected_inbounds(ref, VIEW) == expected


def test_dataplane_name_is_the_display_name_when_labelled() -> None:
    synced = dataplane(
        "backend-1.0123456789",
        inbound("backend", 8080),
        labels={LABEL_DISPLAY_NAME: "backend-1"},
    )
    view = view_of(synced, ZONE)
    assert selected_inbounds({"kind": "Dataplane", "name": "backend-1"}, view) == {0}
    assert selected_inbounds({"kind": "Dataplane", "name": "backend-1.0123456789"}, view) == set()


def test_a_zone_tag_on_the_inbound_wins_over_the_implied_one() -> None:
    dp = dataplane("x", inbound("x", 1000, tags={"kuma.io/zone": "elsewhere"}))
    assert view_of(dp, ZONE).inbounds[0].tags["kuma.io/zone"] == "elsewhere"


def test_policies_of_other_meshes_never_match() -> None:
    other = mtp("allow", MESH_REF, mesh="other", rules=RULES)
    assert match([other], VIEW) == []


def names(policies: list[Any]) -> list[str]:
    return [p.meta.name for p in policies]


def test_order_is_by_kind_then_inverted_name() -> None:
    policies = [
        mtp("dp-name", {"kind": "Dataplane", "name": "backend-1"}, rules=RULES),
        mtp(
            "dp-labels-section",
            {"kind": "Dataplane", "labels": {"a": "b"}, "sectionName": "x"},
            rules=RULES,
        ),
        mtp("dp-name-section", {"kind": "Dataplane", "name": "n", "sectionName": "x"}, rules=RULES),
        mtp("dp-labels", {"kind": "Dataplane", "labels": {"a": "b"}}, rules=RULES),
        mtp("mss", {"kind": "MeshServiceSubset", "name": "a", "tags": {"v": "1"}}, rules=RULES),
        mtp("ms", svc("a"), rules=RULES),
        mtp("subset", {"kind": "MeshSubset", "tags": {"v": "1"}}, rules=RULES),
        mtp("mesh-b", MESH_REF, rules=RULES),
        mtp("mesh-a", MESH_REF, rules=RULES),
        mtp("mesh-c", None, rules=RULES),
        mtp("dp-section", {"kind": "Dataplane", "sectionName": "x"}, rules=RULES),
        mtp("dp-any", {"kind": "Dataplane"}, rules=RULES),
    ]
    # Kuma 2.14's order (decision 154): Dataplane above Mesh, below the tag-based kinds.
    assert names(sort_policies(policies)) == [
        # Equal kinds: the lexicographically first name has the highest priority (last).
        "mesh-c",
        "mesh-b",
        "mesh-a",
        "dp-any",
        "dp-labels",
        "dp-section",  # ties with dp-labels-section: inverted name order
        "dp-labels-section",
        "dp-name",
        "dp-name-section",
        "subset",
        "ms",
        "mss",
    ]


def test_order_puts_zone_origin_after_global_and_uses_display_names() -> None:
    a = mtp("zzz", MESH_REF, rules=RULES, labels={LABEL_ORIGIN: "zone"})
    b = mtp("aaa", MESH_REF, rules=RULES, labels={LABEL_ORIGIN: "global"})
    assert names(sort_policies([a, b])) == ["aaa", "zzz"]
    # A synced copy is ordered by its display name, not its hashed name.
    c = mtp("b.99999", MESH_REF, rules=RULES, labels={LABEL_DISPLAY_NAME: "a"})
    d = mtp("a.00000", MESH_REF, rules=RULES, labels={LABEL_DISPLAY_NAME: "b"})
    assert names(sort_policies([c, d])) == ["a.00000", "b.99999"]


def test_match_keeps_only_policies_selecting_an_inbound() -> None:
    policies = [
        mtp("for-web", svc("web"), rules=RULES),
        mtp("for-admin", svc("admin"), rules=RULES),
        mtp("everyone", MESH_REF, rules=RULES),
    ]
    matched = match(policies, VIEW)
    assert [(m.policy.meta.name, set(m.inbounds)) for m in matched] == [
        ("everyone", {0, 1, 2}),
        ("for-admin", {2}),
    ]


RULES = [{"default": {"allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]}}]


def test_to_selects_a_service_by_labels_against_its_zones() -> None:
    labels = service_labels("default", "backend", ("zone-1", "zone-2"))
    by = {"kind": "MeshService", "labels": {LABEL_DISPLAY_NAME: "backend", ZONE_L: "zone-2"}}
    assert to_selects(by, "backend", labels)
    assert not to_selects(by, "web", service_labels("default", "web", ("zone-2",)))
    assert not to_selects({**by, "labels": {ZONE_L: "zone-3"}}, "backend", labels)
    assert to_selects({"kind": "MeshService", "name": "backend"}, "backend", labels)
    # without the catalog's labels, only the display name is known
    assert to_selects({"kind": "MeshService", "labels": {LABEL_DISPLAY_NAME: "x"}}, "x")
