"""KDS receive sides over `write_batch`: a response is applied as one commit, ownership rules
hold inside the batch, a concurrent local write fails the apply instead of being overwritten,
and the global sets a ZoneIngress's `zone` without the zone ever seeing it as a change. Also
the views' `pending` count, kept current from the mirror instead of rescanning it."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from meshfed.kds.messages import SyncRequest, SyncResponse, WireResource, to_wire
from meshfed.kds.naming import (
    outgoing_from_global,
    types_global_to_zone,
    types_zone_to_global,
    zone_resource_name,
)
from meshfed.kds.receive import global_receive_side, zone_receive_side
from meshfed.kds.receiver import ChangeSet
from meshfed.kds.sender import Sender
from meshfed.kds.stream import ReceiveSide
from meshfed.kds.views import GlobalView, ZoneView, global_mirror, zone_mirror
from meshfed.resources.model import Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.base import ConflictError, Requirement, ResourceStore, StoreKey, WatchEvent
from meshfed.store.memory import MemoryStore
from meshfed.store.mirror import StoreMirror
from meshfed.store.sqlite import SqliteStore
from tests.support import async_wait_until
from tests.unit.store.test_conformance import nothing_pending, take

REG = default_registry()
DOWN = types_global_to_zone(REG)
UP = types_zone_to_global(REG)
GLOBAL = {"kuma.io/origin": "global"}


def policy(name: str, idle: str = "10s", labels: Mapping[str, str] = GLOBAL) -> Resource:
    spec = {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
    }
    return Resource("MeshTimeout", Meta(name, "default", dict(labels)), spec)


def dataplane(name: str, port: int = 8080, labels: Mapping[str, str] | None = None) -> Resource:
    spec = {
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "tags": {"kuma.io/service": "web"}}],
        }
    }
    return Resource("Dataplane", Meta(name, "default", dict(labels or {})), spec)


def ingress(name: str, spec_zone: str | None = None) -> Resource:
    spec: dict[str, object] = {"networking": {"address": "127.0.0.1", "port": 10001}}
    if spec_zone is not None:
        spec["zone"] = spec_zone
    return Resource("ZoneIngress", Meta(name, ""), spec)


def from_zone(zone: str) -> dict[str, str]:
    return {"kuma.io/origin": "zone", "kuma.io/zone": zone}


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResourceStore]:
    s: ResourceStore = (
        MemoryStore() if request.param == "memory" else await SqliteStore.open(tmp_path)
    )
    yield s
    await s.close()


async def receive(side: ReceiveSide, resp: SyncResponse) -> SyncRequest:
    """What run_receiver does with one response."""
    changes, reply = side.receiver.handle_response(resp, side.validate)
    if not changes.empty:
        await side.apply(changes)
    side.receiver.commit(changes)
    return reply


def revisions(events: Sequence[WatchEvent]) -> set[int]:
    return {e.revision for e in events}


async def test_zone_applies_a_cold_sync_as_one_commit(store: ResourceStore) -> None:
    side = await zone_receive_side(store, REG, DOWN)
    watch = store.watch()
    wires = [to_wire(outgoing_from_global(policy(f"p{i:04}"))) for i in range(2000)]
    reply = await receive(side, SyncResponse("MeshTimeout", wires, nonce="1"))
    assert not reply.is_nack
    events = await take(watch, 2000)
    assert len(revisions(events)) == 1  # all of it at once, or (on failure) none of it
    assert (await store.list("MeshTimeout")).total == 2000

    # An update and a remove together: one commit again; identical copies are not rewritten.
    changed = to_wire(outgoing_from_global(policy("p0001", idle="20s")))
    resp = SyncResponse("MeshTimeout", [wires[0], changed], [Key("default", "p0002")], "2")
    assert not (await receive(side, resp)).is_nack
    events = await take(watch, 2)
    assert [(e.kind.value, e.resource.name) for e in events] == [
        ("PUT", "p0001"),
        ("DELETE", "p0002"),
    ]
    assert len(revisions(events)) == 1
    assert await nothing_pending(watch)


async def test_zone_never_touches_its_own_resources_within_a_batch(
    store: ResourceStore,
) -> None:
    own = await store.create(dataplane("mine", labels=from_zone("zone-1")))
    own_ingress = await store.create(ingress("zi-own"))
    side = await zone_receive_side(store, REG, DOWN)
    copy = Resource("ZoneIngress", Meta("zi-own", "", dict(GLOBAL)), ingress("x").spec)
    relayed = Resource("ZoneIngress", Meta("zi-2.abc", "", dict(GLOBAL)), ingress("x").spec)
    changes = ChangeSet("ZoneIngress", [copy, relayed], [Key("", "zi-own")])
    await side.apply(changes)
    assert await store.get("ZoneIngress", "", "zi-own") == own_ingress
    assert (await store.get("ZoneIngress", "", "zi-2.abc")).meta.labels == GLOBAL
    assert await store.get("Dataplane", "default", "mine") == own


async def test_global_applies_a_zones_batch_and_only_its_own(store: ResourceStore) -> None:
    crafted = dataplane(zone_resource_name("dp-0", "default", "zone-1"), labels=from_zone("z2"))
    await store.create(crafted)  # a name collision crafted by another zone
    side = await global_receive_side(store, REG, "zone-1", UP)
    watch = store.watch()
    sent = [dataplane(f"dp-{i}", labels=from_zone("zone-1")) for i in range(40)]
    await side.apply(ChangeSet("Dataplane", sent))
    events = await take(watch, 39)
    assert len(revisions(events)) == 1
    kept = await store.get("Dataplane", "default", crafted.name)
    assert kept.meta.labels["kuma.io/zone"] == "z2"

    removes = [Key("default", f"dp-{i}") for i in range(20)]
    await side.apply(ChangeSet("Dataplane", [dataplane("dp-new")], removes))
    events = await take(watch, 20)  # dp-0 is not this zone's to remove
    assert len(revisions(events)) == 1
    assert (await store.list("Dataplane", labels={"kuma.io/zone": "zone-1"})).total == 21
    assert (await store.get("Dataplane", "default", crafted.name)).spec == crafted.spec
    assert await nothing_pending(watch)


class _RacingStore(MemoryStore):
    """A memory store where another writer commits right before each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.before_batch: Resource | None = None

    async def write_batch(
        self,
        puts: Sequence[Resource],
        deletes: Sequence[StoreKey],
        *,
        expected: Mapping[StoreKey, str | None] | None = None,
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> builtins.list[Resource]:
        if self.before_batch is not None:  # once: `update` is itself a batch
            racing, self.before_batch = self.before_batch, None
            await self.update(racing)
        return await super().write_batch(
            puts, deletes, expected=expected, require=require, copies=copies
        )


async def test_a_local_write_during_an_apply_is_not_overwritten() -> None:
    store = _RacingStore()
    side = await zone_receive_side(store, REG, DOWN)
    await side.apply(ChangeSet("MeshTimeout", [policy("a"), policy("b")]))
    # The resource turns into the zone's own between the apply's read and its batch.
    store.before_batch = policy("b", labels={"team": "local"})
    with pytest.raises(ConflictError):
        await side.apply(ChangeSet("MeshTimeout", [policy("a", "1s"), policy("b", "1s")]))
    a = await store.get("MeshTimeout", "default", "a")
    assert a.spec["to"][0]["default"]["idleTimeout"] == "10s"  # nothing of the batch landed
    assert (await store.get("MeshTimeout", "default", "b")).meta.labels == {"team": "local"}
    await store.close()


async def test_global_sets_ingress_zone_and_the_zone_sees_no_change(
    store: ResourceStore,
) -> None:
    """The zone's ingress has no `zone` (or a wrong one): the global stores it with the
    stream's zone; rebuilt from its store after a restart, the global holds exactly the
    version the zone sent, so the zone's sender has nothing to send on resume."""
    zone_store = MemoryStore()
    await zone_store.create(ingress("zi-1"))
    await zone_store.create(ingress("zi-2", spec_zone="zone-9"))  # a lie is overridden
    mirror = zone_mirror(zone_store, UP, "zone-1")
    await mirror.start()
    try:
        wires = await ZoneView(mirror, REG, UP).snapshot("ZoneIngress")
    finally:
        await mirror.stop()
        await zone_store.close()
    side = await global_receive_side(store, REG, "zone-1", UP)
    assert not (await receive(side, SyncResponse("ZoneIngress", wires, nonce="1"))).is_nack
    for name in ("zi-1", "zi-2"):
        stored = await store.get("ZoneIngress", "", zone_resource_name(name, "", "zone-1"))
        assert stored.spec["zone"] == "zone-1"

    restarted = await global_receive_side(store, REG, "zone-1", UP)
    held = restarted.receiver.held("ZoneIngress")
    assert held == {w.key: w.version for w in wires}
    sender = Sender(UP)
    sender.replace_all("ZoneIngress", wires)
    sender.handle_request(SyncRequest("ZoneIngress", initial_resource_versions=held))
    assert sender.next_response("ZoneIngress") is None

    # A payload that bypasses the zone's own stamping still gets the stream's zone.
    await side.apply(ChangeSet("ZoneIngress", [ingress("zi-3", spec_zone="zone-2")]))
    stored = await store.get("ZoneIngress", "", zone_resource_name("zi-3", "", "zone-1"))
    assert stored.spec["zone"] == "zone-1"


async def test_pending_follows_the_mirror_without_rescanning_it() -> None:
    store = MemoryStore()
    await store.create(Resource("Mesh", Meta("default")))  # the policies' Mesh (no orphans)
    for i in range(5):
        await store.create(policy(f"p{i}", labels={}))
    relayed = ingress(zone_resource_name("zi", "", "zone-2"))
    relayed.meta.labels.update(from_zone("zone-2"))
    await store.create(relayed)
    mirror = global_mirror(store, DOWN)
    await mirror.start()
    view = GlobalView(mirror, REG, "zone-1", DOWN)
    real_entries, real_keyed = mirror.entries, mirror.keyed

    async def current(type_name: str) -> dict[Key, str]:
        return {w.key: w.version for w in await view.snapshot(type_name)}

    async def mirrored(type_name: str, count: int) -> None:
        async def done() -> bool:
            return len(real_entries(type_name)) == count

        await async_wait_until(done, timeout=5, what=f"{count} {type_name} mirrored")

    try:
        held = await current("MeshTimeout")
        assert view.pending("MeshTimeout", {}) == 5
        assert view.pending("MeshTimeout", held) == 0
        scans = 0

        def counting(type_name: str) -> list[tuple[Key, Resource, Any]]:
            nonlocal scans
            scans += 1
            return real_keyed(type_name)

        mirror.keyed = counting  # type: ignore[method-assign]
        await store.update(policy("p0", idle="1s", labels={}))
        await store.delete("MeshTimeout", "default", "p1")
        await store.create(policy("p9", labels={}))
        await mirrored("MeshTimeout", 5)
        await async_wait_until(
            lambda: _at(view.pending("MeshTimeout", held) == 3), timeout=5, what="3 pending"
        )
        assert scans == 0  # changes were tracked, not found by reading everything again
        mirror.keyed = real_keyed  # type: ignore[method-assign]
        assert view.pending("MeshTimeout", await current("MeshTimeout")) == 0

        # Disabling zone-2 withdraws its ingress: zone-1 should drop the one it holds.
        ingresses = await current("ZoneIngress")
        assert len(ingresses) == 1 and view.pending("ZoneIngress", ingresses) == 0
        await store.create(Resource("Zone", Meta("zone-2"), {"enabled": False}))
        await mirrored("Zone", 1)
        assert view.pending("ZoneIngress", ingresses) == 1
        assert view.pending("ZoneIngress", {}) == 0
    finally:
        await mirror.stop()
        await store.close()


async def _at(value: bool) -> bool:
    return value


async def test_mirror_encodes_a_resource_only_when_its_wire_form_is_asked_for() -> None:
    store = MemoryStore()
    encoded: list[str] = []

    def encode(res: Resource) -> WireResource:
        encoded.append(res.name)
        return to_wire(outgoing_from_global(res))

    mirror = StoreMirror(store, ["MeshTimeout"], encode)
    await mirror.start()
    try:
        for i in range(3):
            await store.create(policy(f"p{i}"))

        async def mirrored() -> bool:
            return mirror.get("MeshTimeout", Key("default", "p2")) is not None

        await async_wait_until(mirrored, timeout=5)
        assert encoded == ["p2"]  # the lookup above; nothing was encoded before it
        wires = [w for _, w in mirror.entries("MeshTimeout")]
        assert sorted(encoded) == ["p0", "p1", "p2"]
        assert wires[0] == to_wire(
            outgoing_from_global(await store.get("MeshTimeout", "default", "p0"))
        )
        mirror.entries("MeshTimeout")
        assert len(encoded) == 3  # cached per stored version
        await store.update(policy("p0", idle="1s"))

        async def changed() -> bool:
            found = mirror.get("MeshTimeout", Key("default", "p0"))
            return found is not None and found[0].spec["to"][0]["default"]["idleTimeout"] == "1s"

        await async_wait_until(changed, timeout=5)
        assert encoded.count("p0") == 2
    finally:
        await mirror.stop()
        await store.close()
