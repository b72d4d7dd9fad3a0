"""The store-backed sides of KDS over the memory store (the mirror a view reads, the views,
the receive sides): no sockets, no processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshfed.kds.messages import to_wire
from meshfed.kds.naming import (
    outgoing_from_global,
    outgoing_from_zone,
    types_global_to_zone,
    types_zone_to_global,
    zone_resource_name,
)
from meshfed.kds.receive import global_receive_side, validator, zone_receive_side
from meshfed.kds.receiver import ChangeSet
from meshfed.kds.stream import SourceChange
from meshfed.kds.views import GlobalView, ZoneView, global_mirror, zone_mirror
from meshfed.resources.model import Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.memory import MemoryStore
from meshfed.store.mirror import StoreMirror
from tests.support import async_wait_until

REG = default_registry()
DOWN = types_global_to_zone(REG)
UP = types_zone_to_global(REG)
GLOBAL = {"kuma.io/origin": "global"}
ZONE_1 = {"kuma.io/origin": "zone", "kuma.io/zone": "zone-1"}


def policy(name: str, idle: str = "10s", labels: dict[str, str] | None = None) -> Resource:
    spec = {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}],
    }
    return Resource(
        "MeshTimeout", Meta(name, "default", dict(GLOBAL if labels is None else labels)), spec
    )


def ingress(name: str, labels: dict[str, str] | None = None, port: int = 10001) -> Resource:
    spec = {"networking": {"address": "127.0.0.1", "port": port}}
    return Resource("ZoneIngress", Meta(name, "", dict(labels or {})), spec)


def dataplane(name: str, labels: dict[str, str] | None = None, port: int = 8080) -> Resource:
    spec = {
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "tags": {"kuma.io/service": "web"}}],
        }
    }
    return Resource("Dataplane", Meta(name, "default", dict(labels or {})), spec)


def from_zone(zone: str) -> dict[str, str]:
    return {"kuma.io/origin": "zone", "kuma.io/zone": zone}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


async def settle(mirror: StoreMirror, type_name: str, count: int) -> None:
    async def done() -> bool:
        return len(mirror.entries(type_name)) == count

    await async_wait_until(done, timeout=5, what=f"{count} {type_name} in the mirror")


# -- mirror ------------------------------------------------------------------------------------


async def test_mirror_loads_then_follows_the_store_and_encodes_once(store: MemoryStore) -> None:
    await store.create(policy("a"))
    await store.create(dataplane("dp"))  # not a mirrored type
    mirror = global_mirror(store, DOWN)
    seen: list[tuple[str, Key | None, bool]] = []
    mirror.listen(lambda t, k, r: seen.append((t, k, r is not None)))
    await mirror.start()
    try:
        assert [r.name for r, _ in mirror.entries("MeshTimeout")] == ["a"]
        assert mirror.entries("Dataplane") == []
        found = mirror.get("MeshTimeout", Key("default", "a"))
        stored = await store.get("MeshTimeout", "default", "a")
        assert found is not None and found[1] == to_wire(outgoing_from_global(stored))

        await store.create(policy("b"))
        await store.update(policy("a", idle="20s"))
        await store.delete("MeshTimeout", "default", "b")
        await store.create(dataplane("dp-2"))

        async def all_seen() -> bool:
            return len(seen) == 3

        await async_wait_until(all_seen, timeout=5, what="three changes")
        assert seen == [
            ("MeshTimeout", Key("default", "b"), True),
            ("MeshTimeout", Key("default", "a"), True),
            ("MeshTimeout", Key("default", "b"), False),
        ]
        [(res, wire)] = mirror.entries("MeshTimeout")
        assert res.spec["to"][0]["default"]["idleTimeout"] == "20s"
        assert wire.labels == GLOBAL
    finally:
        await mirror.stop()


async def test_mirror_reloads_everything_when_its_watch_overflows() -> None:
    store = MemoryStore(max_pending=3)
    mirror = global_mirror(store, DOWN)
    reloads: list[str] = []
    mirror.listen(lambda t, k, r: reloads.append(t) if k is None else None)
    await mirror.start()
    try:
        for i in range(10):  # the memory store never yields here: the mirror falls behind
            await store.create(policy(f"p{i}"))
        await settle(mirror, "MeshTimeout", 10)
        assert mirror.reloads == 1
        assert set(reloads) == set(mirror.types)
    finally:
        await mirror.stop()
        await store.close()


# -- views -------------------------------------------------------------------------------------


async def test_global_view_sends_global_types_and_other_enabled_zones_ingresses(
    store: MemoryStore,
) -> None:
    await store.create(Resource("Mesh", Meta("default", labels=dict(GLOBAL))))
    await store.create(policy("p"))
    await store.create(ingress(zone_resource_name("zi", "", "zone-1"), from_zone("zone-1")))
    await store.create(ingress(zone_resource_name("zi", "", "zone-2"), from_zone("zone-2")))
    await store.create(
        dataplane(zone_resource_name("dp", "default", "zone-2"), from_zone("zone-2"))
    )
    mirror = global_mirror(store, DOWN)
    await mirror.start()
    try:
        view_1 = GlobalView(mirror, REG, "zone-1", DOWN)
        assert [w.name for w in await view_1.snapshot("MeshTimeout")] == ["p"]
        relayed = await view_1.snapshot("ZoneIngress")
        assert [w.labels["kuma.io/zone"] for w in relayed] == ["zone-2"]  # never its own
        assert relayed[0].labels["kuma.io/origin"] == "global"
        assert await view_1.snapshot("Dataplane") == []

        changes: list[SourceChange] = []
        view_1.listen(changes.append)
        # Disabling zone-2 hides its ingresses (and MeshServices, also synced across zones):
        # the view asks for the types to be read again...
        await store.create(Resource("Zone", Meta("zone-2"), {"enabled": False}))
        await settle(mirror, "Zone", 1)
        assert sorted(c.type for c in changes) == ["MeshService", "ZoneIngress"]
        assert all(c.key is None for c in changes)
        assert await view_1.snapshot("ZoneIngress") == []
        # ...and a change that takes a resource out of the view becomes a remove.
        changes.clear()
        await store.update(policy("p", labels=from_zone("zone-3")))

        async def one() -> bool:
            return len(changes) == 1

        await async_wait_until(one, timeout=5)
        assert changes == [SourceChange("MeshTimeout", Key("default", "p"), None)]
    finally:
        await mirror.stop()


async def test_zone_view_sends_only_the_zones_own_inventory(store: MemoryStore) -> None:
    await store.create(dataplane("dp-own", ZONE_1))
    await store.create(ingress("zi-own", ZONE_1))
    await store.create(ingress("zi-remote", {"kuma.io/origin": "global", "kuma.io/zone": "z2"}))
    mirror = zone_mirror(store, UP, "zone-1")
    await mirror.start()
    try:
        view = ZoneView(mirror, REG, UP)
        sent = await view.snapshot("Dataplane")
        own = await store.get("Dataplane", "default", "dp-own")
        assert sent == [to_wire(outgoing_from_zone(own, "zone-1"))]
        assert sent[0].labels["kuma.io/display-name"] == "dp-own"
        assert [w.name for w in await view.snapshot("ZoneIngress")] == ["zi-own"]
        assert await view.snapshot("MeshTimeout") == []
        held = {Key("default", "dp-own"): sent[0].version, Key("default", "gone"): "v"}
        assert view.pending("Dataplane", held) == 1  # holds one we no longer send
        assert view.pending("Dataplane", {}) == 1
        assert view.pending("Dataplane", {Key("default", "dp-own"): sent[0].version}) == 0
    finally:
        await mirror.stop()


# -- receiving ---------------------------------------------------------------------------------


def changes(type_name: str, *upserts: Resource, removes: tuple[Key, ...] = ()) -> ChangeSet:
    return ChangeSet(type_name, list(upserts), list(removes))


async def test_global_stores_a_zones_inventory_under_its_zone_and_nothing_else(
    store: MemoryStore,
) -> None:
    other = dataplane(zone_resource_name("dp-1", "default", "zone-1"), from_zone("zone-2"))
    await store.create(other)  # a name collision crafted by another zone
    side = await global_receive_side(store, REG, "zone-1", UP)
    claimed = outgoing_from_zone(dataplane("dp-2"), "zone-9")  # the payload lies about its zone
    await side.apply(changes("Dataplane", dataplane("dp-1", port=1), claimed))

    kept = await store.get("Dataplane", "default", other.name)
    assert kept.meta.labels["kuma.io/zone"] == "zone-2" and kept.spec == other.spec
    stored = await store.get(
        "Dataplane", "default", zone_resource_name("dp-2", "default", "zone-1")
    )
    assert stored.meta.labels == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "dp-2",
    }
    # A removal reaches only the zone's own copy.
    await side.apply(changes("Dataplane", removes=(Key("default", "dp-1"), Key("default", "dp-2"))))
    assert (await store.list("Dataplane")).total == 1
    assert (await store.get("Dataplane", "default", other.name)).meta.labels[
        "kuma.io/zone"
    ] == "zone-2"


async def test_global_receiver_resumes_from_the_versions_in_its_store(store: MemoryStore) -> None:
    side = await global_receive_side(store, REG, "zone-1", UP)
    sent = outgoing_from_zone(dataplane("dp-1"), "zone-1")
    await side.apply(changes("Dataplane", sent))
    again = await global_receive_side(store, REG, "zone-1", UP)
    assert again.receiver.held("Dataplane") == {Key("default", "dp-1"): to_wire(sent).version}
    assert (await global_receive_side(store, REG, "zone-2", UP)).receiver.held("Dataplane") == {}


async def test_zone_stores_the_globals_copies_and_never_touches_its_own(
    store: MemoryStore,
) -> None:
    await store.create(ingress("zi-own", ZONE_1))
    side = await zone_receive_side(store, REG, DOWN)
    copy = ingress("zi-own", GLOBAL, port=2)
    await side.apply(changes("ZoneIngress", copy, removes=(Key("", "zi-own"),)))
    own = await store.get("ZoneIngress", "", "zi-own")
    assert own.meta.labels == ZONE_1 and own.spec["networking"]["port"] == 10001
    # What was not written is not held: the receiver must not tell the global it has it.
    refused = ChangeSet("ZoneIngress", [copy], versions={Key("", "zi-own"): "v1"})
    await side.apply(refused)
    side.receiver.commit(refused)
    assert side.receiver.held("ZoneIngress") == {} and refused.upserts == []

    await side.apply(changes("MeshTimeout", policy("p")))
    again = await zone_receive_side(store, REG, DOWN)
    version = to_wire(outgoing_from_global(policy("p"))).version
    assert again.receiver.held("MeshTimeout") == {Key("default", "p"): version}
    assert again.receiver.held("ZoneIngress") == {}
    await again.apply(changes("MeshTimeout", removes=(Key("default", "p"),)))
    assert (await store.list("MeshTimeout")).total == 0

    assert side.validate(policy("q")) is None
    reason = side.validate(policy("q", labels={}))
    assert reason is not None and "kuma.io/origin" in reason


def test_validator_reports_every_problem_of_a_synced_resource() -> None:
    check = validator(REG)
    assert check(policy("ok")) is None
    assert "unknown resource type" in (check(Resource("Nope", Meta("x"))) or "")
    bad = policy("Bad_Name", idle="banana", labels={"bad key!": "v"})
    reason = check(bad) or ""
    assert "name:" in reason and "idleTimeout" in reason and "label key" in reason
    global_scoped = ingress("zi")
    global_scoped.meta.mesh = "default"
    assert "not scoped to a mesh" in (check(global_scoped) or "")
