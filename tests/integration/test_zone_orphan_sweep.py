"""A standalone zone removes, at start, the resources whose Mesh is gone (a crash between a
Mesh's deletion and its cascade left them behind)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from meshfed.store.sqlite import SqliteStore
from tests.integration.federation_support import Http
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration

DP_SPEC = {
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
    }
}


async def _seed_zone(data: Path) -> None:
    store = await SqliteStore.open(data)
    own = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    await store.create(Resource("Mesh", Meta("default", labels={LABEL_ORIGIN: "global"})))
    await store.create(Resource("Mesh", Meta("gone", labels={LABEL_ORIGIN: "global"})))
    for mesh in ("default", "gone"):
        await store.create(Resource("Dataplane", Meta("dp-1", mesh, dict(own)), DP_SPEC))
    await store.delete("Mesh", "", "gone")  # the Mesh went; its Dataplane stayed (a crash)
    await store.close()


def test_a_standalone_zone_sweeps_resources_whose_mesh_is_gone(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "zone-1"
    asyncio.run(_seed_zone(data))
    port = free_port()
    argv = [procs.script("zone-cp"), "run", "--zone", "zone-1"]
    proc = procs.start(
        "zone-1", [*argv, "--api-address", f"127.0.0.1:{port}", "--data-dir", str(data)]
    )
    http = Http(port)
    wait_until(lambda: proc.alive() and http.ready(), timeout=30, what="zone-1 ready")
    wait_until(lambda: http.get("/dataplanes")["total"] == 1, timeout=10, what="orphan swept")
    [left] = http.get("/dataplanes")["items"]
    assert (left["mesh"], left["name"]) == ("default", "dp-1")
    assert "removed 1 resource(s) whose Mesh no longer exists" in proc.log()
