"""Zone-originated policies over KDS (issue 17 item 6; decisions 149-151), on the memory
store: a zone sends its own policies up, never the global's copies; the global stores them
renamed and labelled with the stream's zone, sends them to no zone, and lets no other zone
(nor a malformed payload) change them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshfed.kds.messages import SyncResponse, to_wire
from meshfed.kds.naming import (
    outgoing_from_zone,
    types_global_to_zone,
    types_zone_to_global,
    zone_resource_name,
)
from meshfed.kds.receive import global_receive_side
from meshfed.kds.receiver import ChangeSet
from meshfed.kds.views import GlobalView, ZoneView, global_mirror, zone_mirror
from meshfed.resources.model import Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until

REG = default_registry()
DOWN = types_global_to_zone(REG)
UP = types_zone_to_global(REG)
MT = "MeshTimeout"


def timeout(name: str, labels: dict[str, str], idle: str = "10s") -> Resource:
    spec = {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
    }
    return Resource(MT, Meta(name, "default", dict(labels)), spec)


def in_zone(zone: str) -> dict[str, str]:
    return {"kuma.io/origin": "zone", "kuma.io/zone": zone}


GLOBAL = {"kuma.io/origin": "global"}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


def test_every_policy_type_travels_both_ways() -> None:
    assert MT in UP and MT in DOWN and "MeshTrafficPermission" in UP
    assert "Mesh" not in UP


async def test_a_zone_sends_up_its_own_policies_not_the_globals_copies(
    store: MemoryStore,
) -> None:
    await store.create(timeout("own", in_zone("zone-1")))
    await store.create(timeout("copy", GLOBAL))
    mirror = zone_mirror(store, UP, "zone-1")
    await mirror.start()
    try:
        sent = await ZoneView(mirror, REG, UP).snapshot(MT)
        assert [w.name for w in sent] == ["own"]
        assert sent[0].labels["kuma.io/display-name"] == "own"
        assert sent[0].labels["kuma.io/zone"] == "zone-1"
    finally:
        await mirror.stop()


async def test_the_global_sends_a_zones_policy_to_no_zone(store: MemoryStore) -> None:
    # Kuma syncs a zone's policy on to other zones only for `kuma.io/policy-role: producer`,
    # which it computes from a Kubernetes namespace: never on Universal (decision 149).
    await store.create(Resource("Mesh", Meta("default", labels=dict(GLOBAL))))
    await store.create(timeout("g", GLOBAL))
    name = zone_resource_name("z", "default", "zone-1")
    await store.create(timeout(name, in_zone("zone-1")))
    mirror = global_mirror(store, DOWN)
    await mirror.start()
    try:
        for zone in ("zone-1", "zone-2"):
            sent = await GlobalView(mirror, REG, zone, DOWN).snapshot(MT)
            assert [w.name for w in sent] == ["g"], zone
        await store.update(timeout(name, {**in_zone("zone-1"), "kuma.io/policy-role": "producer"}))

        async def relabelled() -> bool:
            return any("kuma.io/policy-role" in r.meta.labels for r, _ in mirror.entries(MT))

        await async_wait_until(relabelled, timeout=5, what="the update in the mirror")
        for zone in ("zone-1", "zone-2"):
            sent = await GlobalView(mirror, REG, zone, DOWN).snapshot(MT)
            assert [w.name for w in sent] == ["g"], zone
    finally:
        await mirror.stop()


def changes(*upserts: Resource, removes: tuple[Key, ...] = ()) -> ChangeSet:
    return ChangeSet(MT, list(upserts), list(removes))


async def test_the_global_stores_a_zones_policy_renamed_and_labelled_with_the_stream_zone(
    store: MemoryStore,
) -> None:
    side = await global_receive_side(store, REG, "zone-1", UP)
    await side.apply(changes(outgoing_from_zone(timeout("t1", in_zone("zone-1")), "zone-1")))
    stored = await store.get(MT, "default", zone_resource_name("t1", "default", "zone-1"))
    assert stored.meta.labels == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "t1",
    }
    await side.apply(changes(removes=(Key("default", "t1"),)))
    assert (await store.list(MT)).total == 0


async def test_another_zone_cannot_write_or_remove_a_zones_policy(store: MemoryStore) -> None:
    one = await global_receive_side(store, REG, "zone-1", UP)
    await one.apply(changes(outgoing_from_zone(timeout("t1", {}), "zone-1")))
    name_1 = zone_resource_name("t1", "default", "zone-1")
    two = await global_receive_side(store, REG, "zone-2", UP)
    # zone-2 claims zone-1 in its payload: stored as zone-2's own, zone-1's untouched.
    lie = outgoing_from_zone(timeout("t1", {}, idle="1s"), "zone-1")
    await two.apply(changes(lie))
    name_2 = zone_resource_name("t1", "default", "zone-2")
    assert (await store.get(MT, "default", name_2)).meta.labels["kuma.io/zone"] == "zone-2"
    kept = await store.get(MT, "default", name_1)
    assert kept.spec["to"][0]["default"]["idleTimeout"] == "10s"
    # zone-2 removing "t1" removes only its own.
    await two.apply(changes(removes=(Key("default", "t1"),)))
    assert [r.name for r in (await store.list(MT)).items] == [name_1]
    # zone-2 sending the stored name of zone-1's copy writes a third name, not zone-1's.
    await two.apply(changes(outgoing_from_zone(timeout(name_1, {}, idle="2s"), "zone-2")))
    kept = await store.get(MT, "default", name_1)
    assert kept.spec["to"][0]["default"]["idleTimeout"] == "10s"


async def test_a_zone_cannot_overwrite_a_global_policy_of_the_same_stored_name(
    store: MemoryStore,
) -> None:
    name = zone_resource_name("t1", "default", "zone-1")
    await store.create(timeout(name, GLOBAL))
    side = await global_receive_side(store, REG, "zone-1", UP)
    batch = changes(outgoing_from_zone(timeout("t1", {}, idle="1s"), "zone-1"))
    batch.versions = {Key("default", "t1"): "v1"}
    await side.apply(batch)
    kept = await store.get(MT, "default", name)
    assert kept.meta.labels == GLOBAL and kept.spec["to"][0]["default"]["idleTimeout"] == "10s"
    assert batch.upserts == []  # not held: the receiver will not claim it
    await side.apply(changes(removes=(Key("default", "t1"),)))
    assert (await store.get(MT, "default", name)).meta.labels == GLOBAL


async def test_a_malformed_zone_policy_is_nacked_alone_and_the_rest_is_stored(
    store: MemoryStore,
) -> None:
    side = await global_receive_side(store, REG, "zone-1", UP)
    good = to_wire(outgoing_from_zone(timeout("good", {}), "zone-1"))
    bad = to_wire(outgoing_from_zone(timeout("bad", {}, idle="banana"), "zone-1"))
    unenforced = timeout("unenforced", {})
    unenforced.spec["to"][0]["default"]["http"] = {"maxStreamDuration": "1s", "nope": 1}
    bad_2 = to_wire(outgoing_from_zone(unenforced, "zone-1"))
    resp = SyncResponse(MT, [bad, good, bad_2], [], nonce="3")
    batch, reply = side.receiver.handle_response(resp, side.validate)
    assert reply.error_detail is not None and reply.response_nonce == "3"
    reasons = {f.key.name: f.reason for f in reply.error_detail.failed}
    assert set(reasons) == {"bad", "unenforced"} and "idleTimeout" in reasons["bad"]
    await side.apply(batch)
    side.receiver.commit(batch)
    assert [r.name for r in (await store.list(MT)).items] == [
        zone_resource_name("good", "default", "zone-1")
    ]
    # The stream goes on: the next response (another type) is applied as usual.
    dp = Resource(
        "Dataplane",
        Meta("dp", "default"),
        {
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 1, "tags": {"kuma.io/service": "w"}}],
            }
        },
    )
    batch, reply = side.receiver.handle_response(
        SyncResponse("Dataplane", [to_wire(outgoing_from_zone(dp, "zone-1"))], [], "4"),
        side.validate,
    )
    assert reply.error_detail is None
    await side.apply(batch)
    assert (await store.list("Dataplane")).total == 1
