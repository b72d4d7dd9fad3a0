"""Federation under faults: killed and restarted processes, rejected resources, resume, a
silent zone, zone deletion, and a randomized run. Real processes, each test its own cluster."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Meta, Resource
from meshfed.store.base import NotFoundError
from meshfed.store.sqlite import SqliteStore
from tests.integration.federation_support import (
    Cluster,
    StoreWatch,
    dataplane,
    eventually,
    global_digest,
    mt_path,
    timeout_policy,
    zone_digest,
    zone_ingress,
)
from tests.support import Procs

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(procs: Procs, tmp_path: Path) -> Cluster:
    return Cluster.create(procs, tmp_path)


def policy_resource(name: str, idle: str) -> Resource:
    spec = timeout_policy(name, idle=idle)["spec"]
    return Resource("MeshTimeout", Meta(name, "default", {LABEL_ORIGIN: ORIGIN_GLOBAL}), spec)


def write_store(data_dir: Path, resources: list[Resource]) -> None:
    """Writes straight into a stopped control plane's SQLite store with the store API."""

    async def write() -> None:
        store = await SqliteStore.open(data_dir)
        try:
            for res in resources:
                try:
                    await store.get(res.type, res.mesh, res.name)
                    await store.update(res)
                except NotFoundError:
                    await store.create(res)
        finally:
            await store.close()

    asyncio.run(write())


def delete_from_store(data_dir: Path, type_name: str, mesh: str, name: str) -> None:
    async def delete() -> None:
        store = await SqliteStore.open(data_dir)
        try:
            await store.delete(type_name, mesh, name)
        except NotFoundError:
            pass
        finally:
            await store.close()

    asyncio.run(delete())


def latest_subscription(cluster: Cluster, zone: str) -> dict[str, Any]:
    subs = cluster.zone_state(zone)["subscriptions"]
    return dict(subs[-1])


@pytest.fixture
def watches() -> Iterator[list[StoreWatch]]:
    opened: list[StoreWatch] = []
    yield opened
    for w in opened:
        w.close()


def test_global_sigkill_zones_keep_serving_then_converge_and_nothing_is_ever_deleted(
    cluster: Cluster, watches: list[StoreWatch]
) -> None:
    cluster.start()
    cluster.wait_online()
    g = cluster.glob.http
    z1, z2 = cluster.zones["zone-1"], cluster.zones["zone-2"]
    for i in range(5):
        g.put(mt_path(f"t{i}"), timeout_policy(f"t{i}"))
    eventually(lambda: z1.http.call("GET", "/meshes/default")[0] == 200, what="mesh in zone-1")
    z1.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    z1.http.put("/zoneingresses/zi-1", zone_ingress("zi-1"))
    cluster.wait_converged()
    eventually(lambda: len(z2.http.items("/zoneingresses")) == 1, what="ingress in zone-2")
    before = {z.name: z.http.items("/meshes/default/meshtimeouts") for z in (z1, z2)}

    watch_2 = StoreWatch(z2.http)
    watches.append(watch_2)
    cluster.stop(cluster.glob, signal.SIGKILL)

    # Zones keep their data and their API while the global is gone.
    for z in (z1, z2):
        eventually(lambda z=z: z.http.get("/_kds")["state"] != "connected", what="noticed")
        assert z.http.items("/meshes/default/meshtimeouts") == before[z.name]
    z1.http.put("/meshes/default/dataplanes/dp-outage", dataplane("dp-outage"))
    # Zone-1 restarts during the outage, and reconnects later: zone-2 must see no deletion.
    cluster.stop(z1)
    cluster.start(z1)
    assert z1.http.items("/meshes/default/meshtimeouts") == before["zone-1"]
    assert z2.http.items("/zoneingresses")[0]["labels"]["kuma.io/zone"] == "zone-1"

    cluster.start(cluster.glob)  # same SQLite directory
    cluster.wait_online()
    g.put(mt_path("after"), timeout_policy("after", idle="5s"))
    cluster.wait_converged()
    eventually(
        lambda: g.get("/meshes/default/dataplanes?name=dp-outage")["total"] == 1,
        what="the outage's dataplane reaches the global",
    )
    assert len(z2.http.items("/zoneingresses")) == 1
    assert g.get("/meshes/default/dataplanes")["total"] == 2

    assert watch_2.kinds("DELETE") == [], watch_2.kinds("DELETE")
    assert watch_2.error is None and not watch_2.ended.is_set()
    assert {e["name"] for e in watch_2.events if e["type"] == "MeshTimeout"} == {"after"}


def test_a_resource_the_zone_rejects_is_nacked_visibly_and_the_rest_of_the_batch_applies(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.wait_online()
    g = cluster.glob
    cluster.stop(g)
    # Version skew: the global holds something the zones' validators refuse.
    write_store(
        g.data_dir,
        [
            policy_resource("a-good", "10s"),
            policy_resource("b-bad", "banana"),
            policy_resource("c-good", "30s"),
        ],
    )
    cluster.start(g)
    cluster.wait_online()
    sessions = {z.name: z.http.get("/_kds")["sessions"] for z in cluster.zones.values()}
    for z in cluster.zones.values():
        eventually(
            lambda z=z: (
                {p["name"] for p in z.http.items("/meshes/default/meshtimeouts")}
                == {"a-good", "c-good"}
            ),
            what=f"{z.name} applied the valid part of the batch",
        )

    def nack_visible(zone: str) -> dict[str, Any] | None:
        stat = latest_subscription(cluster, zone)["status"]["stat"]["MeshTimeout"]
        return stat if stat["responsesRejected"] >= 1 and stat["lastError"] else None

    for zone in cluster.zones:
        stat = eventually(lambda zone=zone: nack_visible(zone), what=f"NACK of {zone}")
        assert "b-bad" in stat["lastError"]
        assert "idleTimeout" in stat["rejected"]["'b-bad' in mesh 'default'"]
        assert stat["pending"] == 1
        assert cluster.zone_state(zone)["inSync"] is False
    sync = g.http.get(mt_path("b-bad") + "/_sync")
    assert all(s["version"] is None and "idleTimeout" in s["lastError"] for s in sync["zones"])

    # The stream stays up: the zones stay online, and later changes still flow.
    g.http.put(mt_path("later"), timeout_policy("later"))
    for z in cluster.zones.values():
        eventually(lambda z=z: z.http.call("GET", mt_path("later"))[0] == 200, what="later")
        assert z.http.get("/_kds")["sessions"] == sessions[z.name]  # never reconnected
    # Fixing the resource clears the error.
    g.http.put(mt_path("b-bad"), timeout_policy("b-bad", idle="15s"))
    eventually(lambda: all(cluster.zone_state(z)["inSync"] for z in cluster.zones), what="in sync")


def test_resume_after_a_restart_sends_only_the_difference(procs: Procs, tmp_path: Path) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    g, z1 = cluster.glob, cluster.zones["zone-1"]
    mesh = Resource("Mesh", Meta("default", "", {LABEL_ORIGIN: ORIGIN_GLOBAL}))
    write_store(g.data_dir, [mesh] + [policy_resource(f"p{i:04d}", "10s") for i in range(1000)])
    cluster.start()
    cluster.wait_online()
    eventually(
        lambda: z1.http.get("/_kds")["received"]["MeshTimeout"]["held"] == 1000,
        timeout=60,
        what="1000 policies in zone-1",
    )

    cluster.stop(z1)
    g.http.put(mt_path("p0500"), timeout_policy("p0500", idle="99s"))
    cluster.start(z1)
    cluster.wait_online()
    cluster.wait_converged()
    received = z1.http.get("/_kds")["received"]
    assert received["MeshTimeout"]["resourcesApplied"] == 1
    assert received["Mesh"]["resourcesApplied"] == 0
    stat = latest_subscription(cluster, "zone-1")["status"]["stat"]
    assert stat["MeshTimeout"]["resourcesSent"] == 1
    assert stat["Mesh"]["resourcesSent"] == 0

    # A global restart with no change in between: nothing is sent again either way.
    cluster.stop(g)
    cluster.start(g)
    cluster.wait_online()
    eventually(lambda: cluster.zone_state("zone-1")["inSync"], what="in sync after restart")
    stat = latest_subscription(cluster, "zone-1")["status"]
    assert stat["total"]["resourcesSent"] == 0
    assert stat["received"]["total"]["resourcesApplied"] == 0


def test_delete_zone_is_refused_while_connected_and_removes_its_inventory_after(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.wait_online()
    g, z1 = cluster.glob.http, cluster.zones["zone-1"]
    g.put(mt_path("p"), timeout_policy("p"))
    eventually(lambda: z1.http.call("GET", mt_path("p"))[0] == 200, what="policy in zone-1")
    z1.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    z1.http.put("/zoneingresses/zi-1", zone_ingress("zi-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="dataplane at the global")
    eventually(lambda: g.call("GET", "/zone-insights/zone-1")[0] == 200, what="insight")

    status, body = g.call("DELETE", "/zones/zone-1")
    assert status == 409
    assert body["detail"] == "zone zone-1 is connected; stop its zone-cp first"
    assert g.get("/dataplanes")["total"] == 1

    cluster.stop(z1)
    eventually(lambda: cluster.zone_state("zone-1")["state"] == "offline", what="offline")
    # Offline is not deleted: the inventory stays until the zone itself is deleted. What the
    # zone held is remembered, across a global restart too.
    assert g.get("/dataplanes")["total"] == 1
    for restarted in (False, True):
        if restarted:
            cluster.stop(cluster.glob)
            cluster.start(cluster.glob)
        sync = g.get(mt_path("p") + "/_sync")
        [held] = [s for s in sync["zones"] if s["zone"] == "zone-1"]
        assert held == {
            "zone": "zone-1",
            "state": "offline",
            "version": sync["version"],
            "inSync": True,
            "lastError": None,
        }
        assert cluster.zone_state("zone-1")["pending"] == 0
    g.delete("/zones/zone-1")
    assert g.call("GET", "/zones/zone-1")[0] == 404
    assert g.call("GET", "/zone-insights/zone-1")[0] == 404
    assert g.get("/dataplanes")["total"] == 0
    assert g.get("/zoneingresses")["total"] == 0
    eventually(lambda: cluster.zones["zone-2"].http.get("/zoneingresses")["total"] == 0)
    assert [z["name"] for z in g.get("/zones+insights")["items"]] == ["zone-2"]


def test_a_silent_zone_is_marked_offline_its_streams_closed_and_it_comes_back(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.wait_online()
    z1 = cluster.zones["zone-1"]
    assert z1.proc is not None
    z1.proc.signal(signal.SIGSTOP)  # connected sockets, but no heartbeat and no message
    try:
        state = eventually(
            lambda: (
                cluster.zone_state("zone-1")
                if cluster.zone_state("zone-1")["state"] == "offline"
                else None
            ),
            what="silent zone marked offline",
        )
        assert state["subscriptions"][-1]["disconnectTime"] is not None
        assert cluster.zone_state("zone-2")["state"] == "online"
    finally:
        z1.proc.signal(signal.SIGCONT)
    cluster.wait_online("zone-1")
    assert len(cluster.zone_state("zone-1")["subscriptions"]) == 2


# Weighted: policy changes are the common step; restarts and stops interleave with them.
ACTIONS = (
    *("put", "put", "put", "delete"),
    *("zone", "zone", "global", "stop-zone", "stop-global", "start"),
)


def test_random_policy_changes_and_restarts_end_with_every_zone_equal_to_the_global(
    cluster: Cluster,
) -> None:
    rng = random.Random(20241125)
    cluster.start()
    cluster.wait_online()
    g = cluster.glob
    names = [f"r{i}" for i in range(6)]
    steps = []
    for _ in range(40):
        action = rng.choice(ACTIONS)
        steps.append(action)
        if action in ("put", "delete"):
            name = rng.choice(names)
            idle = f"{rng.randint(1, 99)}s"
            if g.alive() and action == "put":
                g.http.put(mt_path(name), timeout_policy(name, idle=idle))
            elif g.alive():
                g.http.call("DELETE", mt_path(name))
            elif action == "put":  # the global is down: change its store directly
                write_store(g.data_dir, [policy_resource(name, idle)])
            else:
                delete_from_store(g.data_dir, "MeshTimeout", "default", name)
        elif action == "zone":
            zone = cluster.zones[rng.choice(sorted(cluster.zones))]
            if zone.alive():
                cluster.stop(zone, rng.choice([signal.SIGTERM, signal.SIGKILL]))
            cluster.start(zone)
        elif action == "global":
            if g.alive():
                cluster.stop(g, rng.choice([signal.SIGTERM, signal.SIGKILL]))
            cluster.start(g)
        elif action in ("stop-zone", "stop-global"):
            node = (
                g if action == "stop-global" else cluster.zones[rng.choice(sorted(cluster.zones))]
            )
            if node.alive():
                cluster.stop(node, signal.SIGKILL)
        elif action == "start":
            down = [n for n in cluster.nodes() if not n.alive()]
            if down:
                cluster.start(*down)
    down = [n for n in cluster.nodes() if not n.alive()]
    if down:
        cluster.start(*down)
    cluster.wait_online(timeout=30)
    cluster.wait_converged(timeout=30)
    want = global_digest(g.http)
    assert all(zone_digest(z.http) == want for z in cluster.zones.values()), steps
    assert {"global", "zone", "stop-global"} <= set(steps)


def test_a_disabled_zone_is_refused_and_its_ingresses_leave_the_other_zones(
    cluster: Cluster,
) -> None:
    cluster.start()
    cluster.wait_online()
    g, z1, z2 = cluster.glob.http, cluster.zones["zone-1"], cluster.zones["zone-2"]
    z1.http.put("/zoneingresses/zi-1", zone_ingress("zi-1"))
    eventually(lambda: z2.http.get("/zoneingresses")["total"] == 1, what="ingress relayed")

    g.put("/zones/zone-1", {"type": "Zone", "name": "zone-1", "enabled": False})
    eventually(lambda: cluster.zone_state("zone-1")["state"] == "offline", what="closed")
    eventually(lambda: z2.http.get("/zoneingresses")["total"] == 0, what="ingress withdrawn")
    eventually(
        lambda: "disabled" in (z1.http.get("/_kds")["lastError"] or ""), what="refusal reason"
    )
    assert g.get("/zones/zone-1/_overview")["zone"] == {"enabled": False}
    # The zone keeps what it has, and the global keeps the zone's inventory.
    assert z1.http.get("/meshes")["total"] == 1
    assert g.get("/zoneingresses")["total"] == 1

    g.put("/zones/zone-1", {"type": "Zone", "name": "zone-1", "enabled": True})
    cluster.wait_online("zone-1")
    eventually(lambda: z2.http.get("/zoneingresses")["total"] == 1, what="ingress back")
