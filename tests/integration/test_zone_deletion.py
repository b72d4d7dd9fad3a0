"""DELETE /zones/zone-1 while zone-1 restarts (real processes): whatever the interleaving, once
zone-1 is back the global holds its whole inventory."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from meshfed.store.sqlite import SqliteStore
from tests.integration.federation_support import Cluster, eventually
from tests.support import Procs

pytestmark = pytest.mark.integration

DP_SPEC = {
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
    }
}


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
    """DELETE /zones/zone-1 while zone-1 restarts, twice.
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
