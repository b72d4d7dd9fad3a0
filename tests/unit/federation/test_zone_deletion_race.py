"""A zone that reconnects while the global deletes it ends with its whole
inventory at the global (it is refused until the cleanup ends, then sends everything again)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Meta, Resource
from meshfed.store.memory import MemoryStore
from tests.inprocess_federation import Global, zone_kds
from tests.support import async_wait_until

DP_SPEC = {
    "networking": {
        "address": "127.0.0.1",
        "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
    }
}


async def zone_store(count: int) -> MemoryStore:
    store = MemoryStore()
    await store.create(Resource("Mesh", Meta("default", labels={LABEL_ORIGIN: "global"})))
    labels = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    dps = [
        Resource("Dataplane", Meta(f"dp-{i}", "default", dict(labels)), DP_SPEC)
        for i in range(count)
    ]
    await store.write_batch(dps, [])
    return store


async def global_holds(g: Global) -> int:
    return (await g.store.list("Dataplane", size=1)).total


async def holds(g: Global, count: int) -> bool:
    return await global_holds(g) == count


async def offline(g: Global) -> bool:
    assert g.cp.federation is not None
    session = g.cp.federation.kds.sessions.get("zone-1")
    return session is None or not session.connected


async def test_a_zone_reconnecting_during_its_deletion_is_refused_then_resent(
    glob: Global,
) -> None:
    fed = glob.cp.federation
    assert fed is not None
    zstore = await zone_store(300)
    async with zone_kds(glob, "zone-1", zstore):
        await async_wait_until(lambda: holds(glob, 300), what="inventory up")
    await async_wait_until(lambda: offline(glob), what="zone-1 offline")

    # Hold the deletion after the Zone is gone and before its inventory is removed (the
    # cleanup takes the federation's lock), and let the zone come back right then.
    async with fed.zones.lock:
        deleting = asyncio.create_task(glob.call("DELETE", "/zones/zone-1"))
        await async_wait_until(lambda: zone_gone(glob), what="Zone deleted")
        async with zone_kds(glob, "zone-1", zstore) as kds:
            client = kds.client
            assert client is not None

            async def refused() -> bool:
                return "is being deleted at the global" in client.last_error

            await async_wait_until(refused, what="the zone refused during the deletion")
            assert await global_holds(glob) == 300  # nothing removed yet: the lock holds it
            fed.zones.lock.release()
            try:
                status, body = await deleting
            finally:
                await fed.zones.lock.acquire()
            assert status == 200, body

            async def resent() -> bool:
                zone = await _status(glob, "/zones/zone-1")
                return zone == 200 and await global_holds(glob) == 300

            await async_wait_until(resent, what="zone-1 back with its whole inventory")
            assert client.state == "connected"
            owned = await glob.store.list("Dataplane", labels={LABEL_ZONE: "zone-1"}, size=1)
            assert owned.total == 300


async def test_deleting_a_zone_while_it_reconnects_keeps_the_stores_equal(
    glob: Global, tmp_path: Path
) -> None:
    """The race without a pause: whatever the interleaving, once the zone is back
    the global holds exactly the zone's inventory."""
    zstore = await zone_store(2000)
    async with zone_kds(glob, "zone-1", zstore):
        await async_wait_until(lambda: holds(glob, 2000), timeout=30, what="inventory up")
    for _ in range(3):
        await async_wait_until(lambda: offline(glob), what="zone-1 offline")
        deleting = asyncio.create_task(glob.call("DELETE", "/zones/zone-1"))
        async with zone_kds(glob, "zone-1", zstore) as kds:
            status, body = await deleting
            assert status in (200, 409), body  # 409: the zone got in before the check

            async def back() -> bool:
                assert kds.client is not None
                if kds.client.state != "connected" or await _status(glob, "/zones/zone-1") != 200:
                    return False
                return await global_holds(glob) == 2000

            await async_wait_until(back, timeout=30, what="zone-1 back with all 2000")


async def _status(g: Global, path: str) -> int:
    return (await g.call("GET", path))[0]


async def zone_gone(g: Global) -> bool:
    return await _status(g, "/zones/zone-1") == 404
