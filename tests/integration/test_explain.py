"""`meshctl explain` against real processes (issue 15): a global, two zones, echo apps with
sidecars and an ingress. Each broken hop is produced for real and the output names it:
no ingress in the remote zone, no permission (a Deny names its policy), an unknown service,
the caller's sidecar not connected; and the healthy path, where every hop passes and the
call really goes through."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, allow, answered_by, try_get
from tests.support import VENV_BIN, Procs, wait_until

pytestmark = pytest.mark.integration


def meshctl(mesh: Mesh, api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "meshctl"), "explain", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "MESHFED_API": api,
            "MESHFED_API_TOKEN": mesh.cluster.admin_token(),
            "MESHCTL_CONFIG": str(mesh.root / "meshctl.yaml"),
        },
        check=False,
    )


def explain(mesh: Mesh, *args: str, api: str | None = None) -> tuple[int, dict[str, Any]]:
    """Exit status and the JSON answer of `meshctl explain ... -o json` (at the global)."""
    done = meshctl(mesh, api or mesh.glob.base, *args, "-o", "json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def broken_at(mesh: Mesh, hop: str, *args: str) -> dict[str, Any]:
    """Waits until the first broken hop is `hop` (the control planes converge), returns it."""

    def check() -> dict[str, Any] | None:
        status, body = explain(mesh, *args)
        if status == 1 and body["brokenHop"] == hop:
            return next(h for h in body["hops"] if h["hop"] == hop)
        return None

    found: dict[str, Any] = wait_until(check, timeout=20, interval=0.2, what=f"broken at {hop}")
    return found


def test_explain_names_each_broken_hop_and_passes_a_healthy_path(
    procs: Procs, tmp_path: Path
) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    mesh.workload("zone-2", "backend-1", "backend")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    path = ("--from", "web", "--to", "backend")

    # backend runs only in zone-2, which has no ingress yet
    hop = broken_at(mesh, "ingress", *path)
    assert "zone-2: no ZoneIngress in the zone" in hop["detail"]

    # the healthy path: every hop passes, and the call does go through
    mesh.ingress("zone-2")
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="a call through")

    def healthy() -> dict[str, Any] | None:
        status, body = explain(mesh, *path, "--zone", "zone-1")
        verdicts = {h["hop"]: h["verdict"] for h in body["hops"]}
        return body if status == 0 and set(verdicts.values()) == {"ok"} else None

    body = wait_until(healthy, timeout=20, interval=0.2, what="every hop ok")
    hops = {h["hop"]: h for h in body["hops"]}
    assert hops["dns"]["vip"] == vip
    assert f"{vip}:{port}" in hops["outbound"]["detail"]
    assert "MeshTrafficPermission/web-to-backend" in hops["permission"]["detail"]
    # the table form, timed: the answer comes from what the global holds
    start = time.monotonic()
    table = meshctl(mesh, mesh.glob.base, *path)
    elapsed = time.monotonic() - start
    assert table.returncode == 0, table.stdout + table.stderr
    assert "every hop passes" in table.stdout
    assert "✗" not in table.stdout and table.stdout.count("✓") == len(hops)
    assert elapsed < 5, elapsed  # a process start included; the API answer itself is below
    # a zone-cp explains its own zone from what it holds
    status, at_zone = explain(mesh, *path, api=mesh.zones["zone-1"].http.base)
    assert status == 0, at_zone
    assert at_zone["zone"] == "zone-1"

    # no permission: a Deny for web names the policy that decides
    mesh.glob.put(
        f"/meshes/{MESH}/meshtrafficpermissions/deny-web",
        {
            "type": "MeshTrafficPermission",
            "name": "deny-web",
            "mesh": MESH,
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "from": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "web"},
                        "default": {"action": "Deny"},
                    }
                ],
            },
        },
    )
    hop = broken_at(mesh, "permission", *path)
    assert "MeshTrafficPermission/deny-web" in hop["detail"]
    wait_until(lambda: try_get(vip, port, timeout=1) is None, timeout=20, what="call refused")
    table = meshctl(mesh, mesh.glob.base, *path)
    assert table.returncode == 1
    assert "broken at: permission" in table.stdout
    assert "MeshTrafficPermission/deny-web" in table.stdout
    mesh.glob.delete(f"/meshes/{MESH}/meshtrafficpermissions/deny-web")

    # an unknown service
    hop = broken_at(mesh, "service", "--from", "web", "--to", "bakend")
    assert "unknown service 'bakend'" in hop["detail"]

    # the caller's sidecar not connected
    web.sidecar.stop()
    hop = broken_at(mesh, "sidecar", *path)
    assert "web-1: sidecar not connected" in hop["detail"]
