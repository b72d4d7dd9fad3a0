"""The config server's store edge: writes skipped when nothing changes, and the sweep that
marks offline what a crashed instance left marked connected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshfed.resources.model import Resource
from meshfed.store.memory import MemoryStore
from tests.unit.policy.factories import dataplane, inbound
from zone_cp import dpstate
from zone_cp.dprecords import Records

ZONE = "zone-1"


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


async def test_unchanged_writes_are_skipped(store: MemoryStore) -> None:
    records = Records(store, ZONE)
    dp = dpstate.registered_dataplane(dataplane("web-1", inbound("web", 8080)), ZONE, None)
    await records.register(dp, None)
    revision = await store.revision()
    await records.register(dp, await records.get("Dataplane", "default", "web-1"))
    await records.set_health(dp, {})
    assert await store.revision() == revision
    await records.set_health(dp, {0: True})
    stored = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(stored) == {0: True}


async def connected(records: Records, name: str, instance: str) -> None:
    dp = dpstate.registered_dataplane(dataplane(name, inbound("web", 8080)), ZONE, None)
    await records.register(dp, None)
    await records.set_health(dp, {0: True})
    sub = dpstate.Subscription(f"{name}-sub", instance, "t0", "v").to_json()
    await records.write_insight("sidecar", "default", name, [sub], None, None)


async def test_a_crashed_instance_leaves_nothing_marked_connected(store: MemoryStore) -> None:
    records = Records(store, ZONE)
    await connected(records, "gone", "old-cp")  # its proxy never came back
    await connected(records, "back", "old-cp")  # reconnected: live here now
    await connected(records, "mine", "new-cp")  # connected to this instance
    assert (await records.close_stale({"new-cp"}, live={("default", "back")})).closed == 1
    for name, ready in (("gone", False), ("back", True), ("mine", True)):
        dp = await store.get("Dataplane", "default", name)
        assert dpstate.health_of(dp) == {0: ready}, name
    insight = await store.get("DataplaneInsight", "default", "gone")
    assert "disconnectTime" in insight.spec["subscriptions"][-1]
    assert (await records.close_stale({"new-cp"}, live=set())).closed == 1  # "back" went away since


class Reconnecting(MemoryStore):
    """The proxy reconnects to another replica right after the sweep marked it not ready:
    that replica's registration writes a new open subscription before the sweep closes the
    old one."""

    def __init__(self) -> None:
        super().__init__()
        self.records: Records | None = None

    async def update(self, resource: Resource, expected_version: str | None = None) -> Resource:
        written = await super().update(resource, expected_version)
        if resource.type == "Dataplane" and self.records is not None:
            records, self.records = self.records, None
            sub = dpstate.Subscription("again", "cp-b", "t1", "v").to_json()
            await records.write_insight("sidecar", "default", "web-1", [sub], None, None)
        return written


async def test_a_proxy_that_reconnects_during_the_sweep_is_left_to_its_new_replica() -> None:
    store = Reconnecting()
    records = Records(store, ZONE)
    await connected(records, "web-1", "cp-dead")
    store.records = records
    swept = await records.close_stale({"cp-b"}, live=set())
    assert (swept.closed, swept.clean) == (0, False)
    dp = await store.get("Dataplane", "default", "web-1")
    assert dpstate.health_of(dp) == {0: True}  # put back: the sweep's write is undone
    insight = await store.get("DataplaneInsight", "default", "web-1")
    assert dpstate.previous_subscriptions(insight)[-1]["controlPlaneInstanceId"] == "cp-b"
    assert not dpstate.held_by_gone(insight, {"cp-b"})


async def test_replicas_sweep_only_what_a_dead_replica_held(store: MemoryStore) -> None:
    """Zone replicas on etcd: proxies held by a live replica are that replica's, whatever
    this one knows; only the dead replica's are closed."""
    records = Records(store, ZONE)
    await connected(records, "on-a", "cp-a")  # a live replica
    await connected(records, "on-dead", "cp-dead")
    await connected(records, "on-me", "cp-me")
    swept = await records.close_stale({"cp-me", "cp-a"}, live={("default", "on-me")})
    assert (swept.closed, swept.clean) == (1, True)
    for name, ready in (("on-a", True), ("on-dead", False), ("on-me", True)):
        dp = await store.get("Dataplane", "default", name)
        assert dpstate.health_of(dp) == {0: ready}, name
    assert (await records.close_stale({"cp-me", "cp-a"}, live=set())).closed == 0
