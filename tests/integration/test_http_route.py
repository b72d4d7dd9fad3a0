"""MeshHTTPRoute on real traffic (issue 14, decision 125): web's sidecar evaluates a route
applied at the global on its outbound to `backend`: a header match sends to backend-v2, a
weighted rule splits 80/20 per request on one keep-alive connection, a rewrite and header
modifiers are seen by the backend and the caller, a redirect is answered by the sidecar, a
mirror copies requests to `shadow`; deleting the route restores the default. One federation
(one zone) for the module."""

from __future__ import annotations

import http.client
import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH
from tests.integration.test_http_world_support import (
    APP,
    BACKEND,
    ZONE,
    World,
    arrivals,
    start_world,
    wait_ready,
)
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

V2, SHADOW = "backend-v2", "shadow"
CALLS = 300


def path_prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def ref(service: str, weight: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "MeshService", "name": service}
    return out if weight is None else {**out, "weight": weight}


ROUTE = {
    "type": "MeshHTTPRoute",
    "name": "backend-routes",
    "mesh": MESH,
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "web"},
        "to": [
            {
                "targetRef": ref(BACKEND),
                "rules": [
                    {
                        "matches": [{"headers": [{"name": "x-version", "value": "v2"}]}],
                        "default": {"backendRefs": [ref(V2)]},
                    },
                    {
                        "matches": [path_prefix("/split")],
                        "default": {"backendRefs": [ref(BACKEND, 80), ref(V2, 20)]},
                    },
                    {
                        "matches": [path_prefix("/old")],
                        "default": {
                            "filters": [
                                {
                                    "type": "URLRewrite",
                                    "urlRewrite": {
                                        "path": {
                                            "type": "ReplacePrefixMatch",
                                            "replacePrefixMatch": "/new",
                                        }
                                    },
                                },
                                {
                                    "type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {
                                        "set": [{"name": "x-routed", "value": "yes"}],
                                        "remove": ["x-drop"],
                                    },
                                },
                                {
                                    "type": "ResponseHeaderModifier",
                                    "responseHeaderModifier": {
                                        "add": [{"name": "x-route", "value": "rewrite"}]
                                    },
                                },
                            ]
                        },
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/go-away"}}],
                        "default": {
                            "filters": [
                                {
                                    "type": "RequestRedirect",
                                    "requestRedirect": {
                                        "scheme": "https",
                                        "hostname": "example.com",
                                        "statusCode": 301,
                                    },
                                }
                            ]
                        },
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/mirror"}}],
                        "default": {
                            "filters": [
                                {
                                    "type": "RequestMirror",
                                    "requestMirror": {"backendRef": ref(SHADOW)},
                                }
                            ]
                        },
                    },
                ],
            }
        ],
    },
}


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("httproute")
    procs = Procs(root)
    try:
        w = start_world(procs, root, backends=1, reachable=[V2, SHADOW])
        for name, service in (("v2-1", V2), ("shadow-1", SHADOW)):
            w.others[name] = w.mesh.workload(
                ZONE, name, service, protocol="http", app_module=APP, wait=False
            )
        wait_ready(list(w.others.values()))
        yield w
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def rules(w: World) -> list[Any]:
    config = admin_json(w.web.admin, "/config")
    outbound = next(o for o in config["outbounds"] if o["address"] == w.vip)
    return list(outbound.get("httpRules", []))


def ready_rules(w: World) -> bool:
    """The route is at web's sidecar with every backend's endpoints."""
    got = rules(w)
    splits = [s for r in got for s in r.get("splits", [])]
    mirrors = [f["requestMirror"]["backend"] for r in got for f in r.get("filters", [])
               if f.get("requestMirror")]  # fmt: skip
    return len(got) == 5 and all(s["endpoints"] for s in [*splits, *mirrors])


def call(
    w: World, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    conn = http.client.HTTPConnection(w.vip, w.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": BACKEND, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    return resp.status, got, json.loads(body) if body.startswith(b"{") else {}


def test_http_route_on_real_traffic(w: World) -> None:
    assert call(w, "/who", {"x-version": "v2"})[2]["name"] == "backend-1"  # no route yet
    w.mesh.apply(ROUTE)
    wait_until(lambda: ready_rules(w), timeout=20, interval=0.05, what="the route at web")

    # A header match: backend-v2; without the header: the service itself.
    assert call(w, "/who", {"x-version": "v2"})[2]["name"] == "v2-1"
    assert call(w, "/who")[2]["name"] == "backend-1"

    # 80/20 per request on one keep-alive connection (4 sd of the binomial count).
    conn = http.client.HTTPConnection(w.vip, w.port, timeout=10)
    got: Counter[str] = Counter()
    clients: set[str] = set()
    try:
        for _ in range(CALLS):
            conn.request("GET", "/split", headers={"Host": BACKEND})
            resp = conn.getresponse()
            assert resp.status == 200
            body = json.loads(resp.read())
            got[body["name"]] += 1
            clients.add(conn.sock.getsockname())  # type: ignore[union-attr]
    finally:
        conn.close()
    assert len(clients) == 1  # one client connection all along
    assert set(got) == {"backend-1", "v2-1"}, got
    assert abs(got["v2-1"] - CALLS * 0.2) <= 4 * math.sqrt(CALLS * 0.2 * 0.8), got

    # URLRewrite and the header modifiers: what the backend and the caller see.
    status, headers, body = call(w, "/old/x?q=1", {"x-drop": "1", "x-routed": "no"})
    assert status == 200 and body["path"] == "/new/x?q=1", body
    assert body["headers"]["x-routed"] == "yes" and "x-drop" not in body["headers"], body
    assert headers["x-route"] == "rewrite", headers

    # The redirect: answered by the sidecar, the backend never sees it.
    status, headers, _ = call(w, "/go-away?a=b")
    assert status == 301 and headers["location"] == "https://example.com/go-away?a=b", headers
    everyone = [*w.backends, *w.others.values()]
    assert "/go-away?a=b" not in {t for b in everyone for t in _targets(b)}

    # The mirror: the caller's answer comes from backend, a copy reaches shadow.
    assert call(w, "/mirror")[2]["name"] == "backend-1"
    shadow = w.others["shadow-1"]
    wait_until(lambda: arrivals([shadow], "/mirror"), timeout=5, what="the mirrored request")

    # Deleting the route restores the default within a second.
    w.delete("meshhttproutes", "backend-routes")
    deleted = time.monotonic()
    wait_until(lambda: rules(w) == [], timeout=5, interval=0.02, what="no rules")
    assert time.monotonic() - deleted < 1.0
    assert {call(w, "/split", {"x-version": "v2"})[2]["name"] for _ in range(10)} == {"backend-1"}
    assert call(w, "/go-away")[0] == 200


def _targets(backend: Any) -> list[str]:
    conn = http.client.HTTPConnection(backend.app_address, backend.app_port, timeout=5)
    try:
        conn.request("GET", "/control/arrivals")
        return list(json.loads(conn.getresponse().read()))
    finally:
        conn.close()
