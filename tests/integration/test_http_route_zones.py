"""Issue 14's MeshHTTPRoute acceptance across two zones, on real traffic: a route applied at the
global sends `/v2` to the `backend` instances tagged `version: v2` and everything else to v1;
then a 90/10 split between the local zone and zone-2 (through zone-2's ingress) lands within
5 % over 2,000 requests; deleting the route restores the default within a second.

Requests go over one keep-alive connection: the sidecar draws a split per request
(decision 125). The 5 % bound is the issue's; it is 3.7 standard deviations of the binomial
count (failure odds about 2e-4)."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow, try_get
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

REQUESTS = 2000


def subset(tags: dict[str, str], weight: int) -> dict[str, Any]:
    return {"kind": "MeshServiceSubset", "name": "backend", "tags": tags, "weight": weight}


def route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "MeshHTTPRoute",
        "name": "canary",
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": rules}],
        },
    }


def prefix(path: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "default": {"backendRefs": refs},
    }


def http_rules(web: Workload, vip: str) -> list[dict[str, Any]]:
    config = admin_json(web.admin, "/config")
    outbound = next(o for o in config["outbounds"] if o["address"] == vip and not o.get("zone"))
    return list(outbound.get("httpRules", []))


def ready(web: Workload, vip: str, splits_per_rule: list[int]) -> bool:
    """web's sidecar holds the route's rules, each with its splits and their endpoints."""
    got = http_rules(web, vip)
    return [len(r.get("splits", [])) for r in got] == splits_per_rule and all(
        s["endpoints"] for r in got for s in r["splits"]
    )


def answers(vip: str, port: int, path: str, n: int) -> Counter[tuple[str, str]]:
    """(instance, zone) that answered each of `n` requests on one keep-alive connection."""
    conn = http.client.HTTPConnection(vip, port, timeout=10)
    got: Counter[tuple[str, str]] = Counter()
    try:
        for _ in range(n):
            conn.request("GET", path, headers={"Host": "backend"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body)
            answer = json.loads(body)
            got[(answer["instance"], answer["zone"])] += 1
    finally:
        conn.close()
    return got


def test_path_route_and_a_cross_zone_split_on_real_traffic(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    for name, version in (("backend-v1", "v1"), ("backend-v2", "v2")):
        mesh.workload("zone-1", name, "backend", protocol="http", tags={"version": version})
    mesh.workload("zone-2", "backend-z2", "backend", protocol="http", tags={"version": "v1"})
    mesh.ingress("zone-2")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-1", "zone-2"])
    wait_until(lambda: try_get(vip, port) is not None, timeout=20, what="backend answers")
    v1, v2, remote = ("backend-v1", "zone-1"), ("backend-v2", "zone-1"), ("backend-z2", "zone-2")
    assert set(answers(vip, port, "/", 40)) == {v1, v2}  # the default: local instances

    # `/v2` goes to the v2 instances, everything else to v1 (local: a subset by tag).
    mesh.apply(
        route(
            [
                prefix("/v2", [subset({"version": "v2"}, 1)]),
                prefix("/", [subset({"version": "v1"}, 1)]),
            ]
        )
    )
    wait_until(lambda: ready(web, vip, [1, 1]), timeout=20, interval=0.05, what="the route")
    assert answers(vip, port, "/v2/orders", 50) == Counter({v2: 50})
    assert answers(vip, port, "/orders", 50) == Counter({v1: 50})

    # 90 % to the local zone, 10 % to zone-2 through its ingress, per request.
    zone_split = [subset({"kuma.io/zone": "zone-1"}, 90), subset({"kuma.io/zone": "zone-2"}, 10)]
    mesh.apply(route([prefix("/", zone_split)]))
    wait_until(lambda: ready(web, vip, [2]), timeout=20, interval=0.05, what="the zone split")
    got = answers(vip, port, "/", REQUESTS)
    assert set(got) <= {v1, v2, remote} and got[remote] > 0, got
    share = got[remote] / REQUESTS
    assert abs(share - 0.10) <= 0.05, got

    # Deleting the route restores the default within a second.
    mesh.glob.delete(f"/meshes/{MESH}/meshhttproutes/canary")
    deleted = time.monotonic()
    wait_until(lambda: http_rules(web, vip) == [], timeout=5, interval=0.02, what="no rules")
    assert time.monotonic() - deleted < 1.0
    assert set(answers(vip, port, "/", 40)) == {v1, v2}
