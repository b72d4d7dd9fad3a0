"""The merge honours Kuma 2.14's top-level order (decision 154): a conflicting field is set by
the policy whose top-level targetRef ranks higher, whatever the names; Dataplane refs rank
among themselves by what they name."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from meshfed.policy.precedence import top_level_rank
from meshfed.policy.rules import match, outbound_conf
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc, to

DP = view_of(
    dataplane(
        "web-1",
        inbound("web", 8080, name="api", tags={"version": "v2"}),
        labels={"app": "web"},
    ),
    "zone-1",
)


def timeout(name: str, target: dict[str, Any] | None, idle: str) -> Resource:
    return policy("MeshTimeout", name, target, to=[to(MESH_REF, {"idleTimeout": idle})])


def winner(*policies: Resource) -> str:
    merged = outbound_conf(match(policies, DP), "backend")
    return str(merged.conf["idleTimeout"])


SUBSET = {"kind": "MeshSubset", "tags": {"version": "v2"}}
SERVICE_SUBSET = {"kind": "MeshServiceSubset", "name": "web", "tags": {"version": "v2"}}
DP_ANY = {"kind": "Dataplane"}
DP_LABELS = {"kind": "Dataplane", "labels": {"app": "web"}}
DP_NAME = {"kind": "Dataplane", "name": "web-1"}


def test_kinds_in_kumas_order_whatever_the_names() -> None:
    # "aaa" would win a tie (inverted name order): each pair shows the kind decides first.
    ladder = [
        (None, "mesh"),
        (DP_ANY, "dp"),
        (SUBSET, "subset"),
        (svc("web"), "service"),
        (SERVICE_SUBSET, "service-subset"),
    ]
    for i in range(len(ladder) - 1):
        low, high = ladder[i][0], ladder[i + 1][0]
        got = winner(timeout("aaa", low, f"{i}s"), timeout("zzz", high, f"{i + 1}s"))
        assert got == f"{i + 1}s", (ladder[i][1], ladder[i + 1][1])


def test_dataplane_refs_by_what_they_name() -> None:
    ladder = [
        (DP_ANY, "any"),
        (DP_LABELS, "labels"),
        ({**DP_LABELS, "sectionName": "api"}, "labels-section"),
        (DP_NAME, "name"),
        ({**DP_NAME, "sectionName": "api"}, "name-section"),
    ]
    for (low, low_name), (high, high_name) in pairwise(ladder):
        assert top_level_rank(low) < top_level_rank(high), (low_name, high_name)
    # (sectionName is for inbound policies: the merge is shown on the outbound ones)
    assert winner(timeout("aaa", DP_LABELS, "1s"), timeout("zzz", DP_NAME, "2s")) == "2s"
    assert winner(timeout("aaa", DP_ANY, "1s"), timeout("zzz", DP_LABELS, "2s")) == "2s"


def test_unknown_kinds_rank_lowest() -> None:
    assert top_level_rank({"kind": "Nope"}) < top_level_rank(MESH_REF) == top_level_rank(None)
