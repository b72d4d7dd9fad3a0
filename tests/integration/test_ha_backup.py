"""Backup and restore: `meshctl export` from a real global, `meshctl apply -f` into a fresh
one, and the second holds exactly the first's global-owned resources (real processes)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from meshctl.commands.export import exported_types
from meshfed.resources.types import default_registry
from tests.integration.federation_support import (
    Cluster,
    Http,
    Node,
    _listing,
    dataplane,
    digest,
    eventually,
    mt_path,
    timeout_policy,
)
from tests.support import VENV_BIN, Procs

pytestmark = pytest.mark.integration

EXPORTED = [d.name for d in exported_types(default_registry())]


def meshctl(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """meshctl against `node` as its cluster's admin."""
    return subprocess.run(
        [str(VENV_BIN / "meshctl"), "--api", node.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MESHFED_API": "", **node.http.meshctl_env()},
    )


def owned_digest(http: Http) -> str:
    return digest([i for t in EXPORTED for i in _listing(http, t)])


def test_export_then_apply_restores_every_global_owned_resource(
    procs: Procs, tmp_path: Path
) -> None:
    source = Cluster.create(
        procs,
        tmp_path / "source",
        zone_names=("zone-1",),
        zone_args=("--dns-address", "127.0.0.1:0"),
    )
    source.start()
    source.wait_online()
    g, z1 = source.glob.http, source.zones["zone-1"].http
    g.put("/meshes/prod", {"type": "Mesh", "name": "prod", "labels": {"team": "payments"}})
    g.put(mt_path("t1"), timeout_policy("t1", idle="7s"))
    g.put("/meshes/prod/meshtimeouts/t2", timeout_policy("t2", idle="8s", mesh="prod"))
    ca = base64.b64encode(b"-----BEGIN FAKE CA-----").decode()
    g.put("/meshes/prod/secrets/ca", {"type": "Secret", "name": "ca", "mesh": "prod", "data": ca})
    g.put("/zones/zone-off", {"type": "Zone", "name": "zone-off", "enabled": False})
    z1.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="zone inventory at the global")
    eventually(lambda: g.call("GET", "/zone-insights/zone-1")[0] == 200, what="insight")

    backup = tmp_path / "backup.yaml"
    done = meshctl(source.glob, "export", "-o", str(backup))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # it holds CA keys
    docs = list(yaml.safe_load_all(backup.read_text()))
    kinds = [d["type"] for d in docs]
    assert kinds[: kinds.count("Mesh")] == ["Mesh"] * kinds.count("Mesh")  # meshes first
    assert {"Dataplane", "ZoneInsight", "DataplaneInsight", "GlobalSecret"}.isdisjoint(kinds)
    assert {"Mesh", "Zone", "Secret", "MeshTimeout"} <= set(kinds)
    assert all("creationTime" not in d for d in docs)
    prod = next(d for d in docs if d["type"] == "Mesh" and d["name"] == "prod")
    assert prod["labels"] == {"team": "payments"}  # user labels kept, system labels dropped
    # To standard output, the same documents.
    out = meshctl(source.glob, "export")
    assert out.returncode == 0 and list(yaml.safe_load_all(out.stdout)) == docs
    # A zone's API is refused with the reason.
    refused = meshctl(source.zones["zone-1"], "export")
    assert refused.returncode == 1 and "not a global control plane (mode: zone)" in refused.stderr

    target = Cluster.create(
        procs, tmp_path / "target", zone_names=(), global_args=("--default-mesh=false",)
    )
    target.start()
    assert target.glob.http.get("/meshes")["total"] == 0
    applied = meshctl(target.glob, "apply", "-f", str(backup))
    assert applied.returncode == 0, applied.stderr
    assert owned_digest(target.glob.http) == owned_digest(g)
    assert target.glob.http.get("/meshes/prod/secrets/ca")["data"] == ca
    assert target.glob.http.get("/zones/zone-off")["enabled"] is False
    assert target.glob.http.get("/dataplanes")["total"] == 0  # zones send those again

    # Applying the backup again changes nothing.
    again = meshctl(target.glob, "apply", "-f", str(backup))
    assert again.returncode == 0 and "configured" not in again.stdout
    assert again.stdout.count("unchanged") == len(docs)
