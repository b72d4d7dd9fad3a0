"""MeshLoadBalancingStrategy applied at the global, observed in a zone's traffic, then
deleted: crossZone failover order (and `None`), RingHash on a header, and a `to[]` MeshService
selected by labels (issue 13)."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, allow, try_get
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

PATH = f"/meshes/{MESH}/meshloadbalancingstrategies"
HTTP = {"kuma.io/protocol": "http"}


def strategy(name: str, to: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "MeshLoadBalancingStrategy", "mesh": MESH, "name": name, "spec": {"to": to}}


def failover(*rules: dict[str, Any]) -> dict[str, Any]:
    return strategy(
        "backend-failover",
        [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"localityAwareness": {"crossZone": {"failover": list(rules)}}},
            }
        ],
    )


def zones_of(vip: str, port: int, n: int = 30) -> Counter[str | None]:
    return Counter((a or {}).get("zone") for a in (try_get(vip, port) for _ in range(n)))


def test_cross_zone_failover_follows_the_rules_in_order(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path, ("zone-1", "zone-2", "zone-3"))
    mesh.apply(allow("web-to-backend", "backend", "web"))
    for zone in ("zone-2", "zone-3"):
        mesh.workload(zone, f"backend-{zone}", "backend")
        mesh.ingress(zone)
    mesh.workload("zone-1", "web-1", "web", reachable=["backend"])  # no backend in zone-1
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2", "zone-3"])

    # Kuma's default: any other zone once the local one has nothing.
    wait_until(lambda: set(zones_of(vip, port)) == {"zone-2", "zone-3"}, what="both zones")

    # zone-3 first, then never leave (None): zone-2 is never used.
    mesh.glob.put(
        f"{PATH}/backend-failover",
        failover(
            {"from": {"zones": ["zone-9"]}, "to": {"type": "Only", "zones": ["zone-2"]}},
            {"to": {"type": "Only", "zones": ["zone-3"]}},
            {"to": {"type": "None"}},
            {"to": {"type": "Any"}},
        ),
    )
    wait_until(lambda: set(zones_of(vip, port, 10)) == {"zone-3"}, what="zone-3 only")
    assert zones_of(vip, port, 60) == {"zone-3": 60}

    # The order decides: zone-2 listed first takes everything while it is healthy.
    mesh.glob.put(
        f"{PATH}/backend-failover",
        failover(
            {"to": {"type": "Only", "zones": ["zone-2"]}},
            {"to": {"type": "AnyExcept", "zones": ["zone-2"]}},
        ),
    )
    wait_until(lambda: set(zones_of(vip, port, 10)) == {"zone-2"}, what="zone-2 first")
    assert zones_of(vip, port, 60) == {"zone-2": 60}

    # Only None: the local zone has nothing, so nothing answers.
    mesh.glob.put(f"{PATH}/backend-failover", failover({"to": {"type": "None"}}))
    wait_until(lambda: set(zones_of(vip, port, 5)) == {None}, what="no other zone")

    mesh.glob.delete(f"{PATH}/backend-failover")
    wait_until(lambda: set(zones_of(vip, port)) == {"zone-2", "zone-3"}, what="default back")


def call(vip: str, port: int, user: str) -> str:
    conn = http.client.HTTPConnection(vip, port, timeout=5)
    try:
        conn.request("GET", "/", headers={"x-user": user})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return str(json.loads(body)["instance"])
    finally:
        conn.close()


def owners(vip: str, port: int, users: list[str], n: int = 6) -> dict[str, set[str]]:
    return {u: {call(vip, port, u) for _ in range(n)} for u in users}


def test_ring_hash_on_a_header_for_the_service_its_labels_select(
    procs: Procs, tmp_path: Path
) -> None:
    mesh = Mesh.start(procs, tmp_path, ("zone-1",))
    for service in ("backend", "other"):
        mesh.apply(allow(f"web-to-{service}", service, "web"))
        for i in (1, 2, 3):
            mesh.workload("zone-1", f"{service}-{i}", service, tags=HTTP)
    mesh.workload("zone-1", "web-1", "web", reachable=["backend", "other"])
    backend = mesh.target("zone-1", "backend")
    other = mesh.target("zone-1", "other")
    users = [f"user-{i}" for i in range(12)]
    wait_until(lambda: all(len(s) == 3 for s in owners(*backend, users[:1], 3).values()), what="rr")

    # Kuma 2.9+'s shape: the MeshService by labels, only backend (in zone-1) matches.
    ref = {
        "kind": "MeshService",
        "labels": {"kuma.io/display-name": "backend", "kuma.io/zone": "zone-1"},
    }
    lb = {
        "type": "RingHash",
        "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]},
    }
    mesh.glob.put(
        f"{PATH}/ring", strategy("ring", [{"targetRef": ref, "default": {"loadBalancer": lb}}])
    )
    wait_until(
        lambda: all(len(s) == 1 for s in owners(*backend, users[:3]).values()), what="sticky"
    )
    sticky = owners(*backend, users)
    assert all(len(s) == 1 for s in sticky.values()), sticky
    assert len(set().union(*sticky.values())) >= 2, sticky  # keys spread over instances
    # other's labels do not match: still round robin, one key reaches every instance
    assert owners(*other, users[:1], 3) == {users[0]: {"other-1", "other-2", "other-3"}}

    mesh.glob.delete(f"{PATH}/ring")
    wait_until(lambda: len(owners(*backend, users[:1], 3)[users[0]]) == 3, what="round robin back")
