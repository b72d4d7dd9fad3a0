"""`_rules` and `meshctl inspect dataplane` against a real global and zone (decision 138):
policies applied at the global reach the zone over KDS, and both control planes answer the
merged confs for a Dataplane registered at the zone, with their origin policies."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.federation_support import Cluster, Http, dataplane, mt_path, timeout_policy
from tests.support import VENV_BIN, Procs, wait_until

pytestmark = pytest.mark.integration

DATAPLANES = "/meshes/default/dataplanes"
ROUTE = {
    "type": "MeshHTTPRoute",
    "name": "to-v2",
    "mesh": "default",
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [
            {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                        "default": {
                            "backendRefs": [
                                {
                                    "kind": "MeshServiceSubset",
                                    "name": "backend",
                                    "tags": {"version": "v2"},
                                }
                            ]
                        },
                    }
                ],
            }
        ],
    },
}


def by_type(http: Http) -> dict[str, dict[str, Any]]:
    """The `_rules` of web-1 by type; at the global, web-1 is stored under its synced name."""
    [name] = [
        d["name"]
        for d in http.items(DATAPLANES)
        if d.get("labels", {}).get("kuma.io/display-name", d["name"]) == "web-1"
    ]
    status, body = http.call("GET", f"{DATAPLANES}/{name}/_rules")
    return {r["type"]: r for r in body["rules"]} if status == 200 else {}


def both(http: Http) -> dict[str, dict[str, Any]] | None:
    got = by_type(http)
    return got if {"MeshTimeout", "MeshHTTPRoute"} <= set(got) else None


def test_rules_at_the_zone_and_the_global_and_meshctl_prints_them(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    zone = cluster.zones["zone-1"]
    wait_until(lambda: zone.http.call("GET", "/meshes/default")[0] == 200, what="mesh in zone")
    zone.http.put("/meshes/default/dataplanes/web-1", dataplane("web-1", "web"))
    zone.http.put("/meshes/default/dataplanes/backend-1", dataplane("backend-1", "backend"))
    cluster.glob.http.put(mt_path("mesh-wide"), timeout_policy("mesh-wide", idle="20s"))
    cluster.glob.http.put("/meshes/default/meshhttproutes/to-v2", ROUTE)

    for http in (zone.http, cluster.glob.http):  # the global holds the zone's Dataplanes too
        got = wait_until(lambda h=http: both(h), timeout=20, what="both types in _rules")
        to_backend = {r["matchers"][0]["value"]: r for r in got["MeshTimeout"]["toRules"]}[
            "backend"
        ]
        assert to_backend["conf"] == {"idleTimeout": "20s"}
        assert to_backend["origin"][0]["resourceMeta"]["displayName"] == "mesh-wide"
        [route] = got["MeshHTTPRoute"]["toRules"]
        [rule] = route["conf"]["rules"]
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2"}}]
        assert rule["default"]["backendRefs"][0]["tags"] == {"version": "v2"}
    assert zone.http.call("GET", "/meshes/default/dataplanes/nope/_rules")[0] == 404

    def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "meshctl"), "--api", zone.url, "inspect", "dataplane", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **zone.http.meshctl_env(), "MESHCTL_CONFIG": str(tmp_path / "c")},
            check=False,
        )

    table = meshctl("web-1")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["TYPE", "TARGET", "ORIGIN", "CONF"]
    assert any(
        line.split()[:3] == ["MeshTimeout", "->", "backend"] and "mesh-wide" in line
        for line in table.stdout.splitlines()
    ), table.stdout
    as_json = meshctl("web-1", "-m", "default", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["dataplane"] == "web-1"
    missing = meshctl("nope")
    assert missing.returncode != 0 and "nope" in missing.stderr, missing.stderr
