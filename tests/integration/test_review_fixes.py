"""Regression tests of the KDS/API review findings that need real processes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from meshfed.store.sqlite import SqliteStore
from tests.integration.federation_support import Cluster, Http, dataplane, eventually
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


# -- finding 2: a zone deleted while it reconnects ---------------------------------------------


async def _seed_dataplanes(data: Path, count: int) -> None:
    store = await SqliteStore.open(data)
    await store.create(Resource("Mesh", Meta("default", labels={LABEL_ORIGIN: "global"})))
    own = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    dps = [
        Resource("Dataplane", Meta(f"dp-{i}", "default", dict(own)), DP_SPEC) for i in range(count)
    ]
    await store.write_batch(dps, [])
    await store.close()


def test_zone_deleted_while_reconnecting_ends_with_its_whole_inventory(
    procs: Procs, tmp_path: Path
) -> None:
    """The reviewer's race with real processes: DELETE /zones/zone-1 while zone-1 restarts.
    Whatever the interleaving, once zone-1 is back the global holds all its Dataplanes."""
    count = 3000
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    zone = cluster.zones["zone-1"]
    asyncio.run(_seed_dataplanes(zone.data_dir, count))
    cluster.start()
    g = cluster.glob.http

    def global_holds() -> int:
        return int(g.get("/dataplanes?size=1")["total"])

    eventually(lambda: global_holds() == count, timeout=60, what="inventory at the global")
    for _ in range(2):
        cluster.stop(zone)
        eventually(lambda: cluster.zone_state("zone-1")["state"] == "offline", what="offline")
        deleting = threading.Thread(target=lambda: g.call("DELETE", "/zones/zone-1"))
        deleting.start()
        cluster.start(zone)
        deleting.join(60)
        assert not deleting.is_alive()

        def back() -> bool:
            kds = zone.http.get("/_kds")
            return bool(
                kds["state"] == "connected"
                and g.call("GET", "/zones/zone-1")[0] == 200
                and global_holds() == count
            )

        eventually(back, timeout=60, what="zone-1 back with its whole inventory")


# -- finding 6: two zone-cps with the same --zone ----------------------------------------------


def test_a_second_zone_cp_with_the_same_zone_is_refused_and_the_first_undisturbed(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    cluster.wait_online()
    g, first = cluster.glob.http, cluster.zones["zone-1"]
    first.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="dp-1 at the global")
    first_sessions = first.http.get("/_kds")["sessions"]

    twin_port = free_port()
    twin_argv = [a if a != str(first.data_dir) else str(tmp_path / "twin") for a in first.argv]
    twin_argv[twin_argv.index(f"127.0.0.1:{first.http.port}")] = f"127.0.0.1:{twin_port}"
    twin = procs.start("zone-1-twin", twin_argv)
    twin_http = Http(twin_port)
    wait_until(lambda: twin.alive() and twin_http.ready(), timeout=30, what="twin ready")

    def refused() -> bool:
        error = twin_http.get("/_kds")["lastError"] or ""
        return "already connected from another zone control plane" in error

    eventually(refused, what="the twin refused with a clear error")
    kds = twin_http.get("/_kds")
    assert kds["lastError"].startswith("ALREADY_EXISTS: ") and kds["state"] != "connected"
    insight = cluster.zone_state("zone-1")
    assert insight["state"] == "online" and len(insight["subscriptions"]) == 1
    assert "already connected" in insight["lastError"]
    # The first zone-cp was never replaced; the twin keeps backing off instead of hammering.
    assert first.http.get("/_kds")["sessions"] == first_sessions
    sessions = kds["sessions"]
    eventually(lambda: twin_http.get("/_kds")["sessions"] > sessions, what="a later retry")
    assert first.http.get("/_kds")["sessions"] == first_sessions
    assert g.get("/dataplanes")["total"] == 1
