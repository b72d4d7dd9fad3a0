"""MeshTCPRoute on real traffic across two zones (issue 14, decision 124): web (zone-1) calls
backend.mesh over TCP; a route applied at the global splits its connections between backend
and backend-next, then shifts 10 % to zone-2 (through zone-2's ingress); deleting the route
restores the default (the local backend) within a second. An http service (api) is split per
request by its own route: one keep-alive connection sees both of its splits.

Each call is a new connection, so each draws a split. Bounds are 4 standard deviations of the
binomial count either side (failure odds about 6e-5 each)."""

from __future__ import annotations

import http.client
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow, get, try_get
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

CALLS = 400


def tcp_route(name: str, refs: list[dict[str, Any]], service: str = "backend") -> dict[str, Any]:
    return {
        "type": "MeshTCPRoute",
        "name": name,
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": service},
                    "rules": [{"default": {"backendRefs": refs}}],
                }
            ],
        },
    }


def within(count: int, calls: int, share: float) -> bool:
    """`count` of `calls` is within 4 standard deviations of `share`."""
    sd = math.sqrt(calls * share * (1 - share))
    return abs(count - calls * share) <= 4 * sd


def splits(web: Workload, vip: str) -> list[dict[str, Any]] | None:
    """The splits of web's outbound to backend.mesh (None until the sidecar has it)."""
    config = admin_json(web.admin, "/config")
    for o in config["outbounds"]:
        if o["address"] == vip and o.get("zone") is None:
            return list(o.get("splits", []))
    return None


def answers(vip: str, port: int, n: int = CALLS) -> Counter[tuple[str, str]]:
    """Who answered each of `n` new connections: (instance, zone)."""
    return Counter((a["instance"], a["zone"]) for a in (get(vip, port) for _ in range(n)))


def keep_alive_answers(vip: str, port: int, n: int = CALLS) -> Counter[str]:
    """Who answered each of `n` requests on one keep-alive connection."""
    conn = http.client.HTTPConnection(vip, port, timeout=5)
    got: Counter[str] = Counter()
    try:
        for _ in range(n):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            got[json.loads(resp.read())["instance"]] += 1
    finally:
        conn.close()
    return got


def test_tcp_route_splits_shift_zones_and_go_away(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    services = ["backend", "backend-next", "api", "api-next"]
    for service in services[1:]:
        mesh.apply(allow(f"web-to-{service}", service, "web"))
    mesh.workload("zone-1", "backend-1", "backend")
    mesh.workload("zone-1", "api-1", "api", protocol="http")
    mesh.workload("zone-1", "api-next-1", "api-next", protocol="http")
    mesh.workload("zone-2", "backend-z2", "backend")
    mesh.ingress("zone-2")
    # web calls backend and api only: zone-cp adds what their routes send to (decision 124)
    web = mesh.workload("zone-1", "web-1", "web", reachable=services[::2])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-1", "zone-2"])
    api_vip, api_port = mesh.target("zone-1", "api")
    local, next_, remote = (
        ("backend-1", "zone-1"),
        ("backend-next-1", "zone-1"),
        ("backend-z2", "zone-2"),
    )
    wait_until(lambda: try_get(vip, port) is not None, timeout=20, what="backend answers")
    assert set(answers(vip, port, 20)) == {local}  # the default: the local zone first

    # 50/50 between backend and another service, backend-next.
    mesh.apply(
        tcp_route(
            "split",
            [
                {"kind": "MeshService", "name": "backend", "weight": 50},
                {"kind": "MeshService", "name": "backend-next", "weight": 50},
            ],
        )
    )
    api_split = [
        {"kind": "MeshService", "name": "api", "weight": 1},
        {"kind": "MeshService", "name": "api-next", "weight": 3},
    ]
    mesh.apply(tcp_route("api-split", api_split, "api"))
    wait_until(lambda: len(splits(web, vip) or []) == 2, timeout=10, what="the split")
    # backend-next starts after the route: its instance reaches web's split (a rebuild of the
    # sidecars whose routes send to it, though web does not call it)
    mesh.workload("zone-1", "backend-next-1", "backend-next")
    wait_until(
        lambda: all(s["endpoints"] for s in splits(web, vip) or [{"endpoints": []}]),
        timeout=10,
        what="backend-next's endpoint in web's split",
    )
    got = answers(vip, port)
    assert set(got) == {local, next_}, got
    assert within(got[next_], CALLS, 0.5), got

    # The http service: per request, on one keep-alive connection.
    wait_until(lambda: len(splits(web, api_vip) or []) == 2, timeout=10, what="the api split")
    by_request = keep_alive_answers(api_vip, api_port)
    assert set(by_request) == {"api-1", "api-next-1"}, by_request
    assert within(by_request["api-next-1"], CALLS, 0.75), by_request

    # 90 % backend (the local zone first), 10 % pinned to zone-2 through its ingress.
    mesh.apply(
        tcp_route(
            "split",
            [
                {"kind": "MeshService", "name": "backend", "weight": 90},
                {
                    "kind": "MeshServiceSubset",
                    "name": "backend",
                    "tags": {"kuma.io/zone": "zone-2"},
                    "weight": 10,
                },
            ],
        )
    )
    wait_until(
        lambda: [s["service"] for s in splits(web, vip) or []] == ["backend", "backend"],
        timeout=10,
        what="the zone-2 split",
    )
    got = answers(vip, port)
    assert set(got) == {local, remote}, got
    assert within(got[remote], CALLS, 0.1), got

    # Deleting the route restores the default within a second.
    mesh.glob.delete(f"/meshes/{MESH}/meshtcproutes/split")
    deleted = time.monotonic()
    wait_until(lambda: splits(web, vip) == [], timeout=5, interval=0.02, what="no split")
    assert time.monotonic() - deleted < 1.0
    assert set(answers(vip, port, 50)) == {local}
