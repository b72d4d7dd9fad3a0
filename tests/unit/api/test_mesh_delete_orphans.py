"""A Mesh deleted while PUTs write into it leaves no orphans; orphans a crash
left behind are swept (the global's leader, a standalone zone) and never sent by KDS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from meshfed.kds.naming import types_global_to_zone
from meshfed.kds.stream import SourceChange
from meshfed.kds.views import GlobalView, global_mirror
from meshfed.resources.model import LABEL_ORIGIN, Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.base import ResourceStore
from meshfed.store.memory import MemoryStore
from meshfed.store.orphans import OrphanSweeper
from meshfed.store.sqlite import SqliteStore
from tests.inprocess_federation import SqliteApi, start_global, stop_global
from tests.support import async_wait_until

REG = default_registry()
SPEC: dict[str, Any] = {
    "targetRef": {"kind": "Mesh"},
    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "20s"}}],
}
GLOBAL = {LABEL_ORIGIN: "global"}


def timeout_doc(name: str, mesh: str) -> dict[str, Any]:
    return {"type": "MeshTimeout", "name": name, "mesh": mesh, "spec": SPEC}


def policy(name: str, mesh: str) -> Resource:
    return Resource("MeshTimeout", Meta(name, mesh, dict(GLOBAL)), dict(SPEC))


def mesh(name: str) -> Resource:
    return Resource("Mesh", Meta(name, labels=dict(GLOBAL)))


async def names(store: ResourceStore, mesh_name: str | None = None) -> list[str]:
    return [f"{r.mesh}/{r.name}" for r in (await store.list("MeshTimeout", mesh_name)).items]


async def test_mesh_delete_racing_puts_leaves_no_orphans(
    sqlite_api: SqliteApi,
) -> None:
    store, client = sqlite_api
    seen: set[int] = set()
    for i in range(30):
        m = f"m{i}"
        assert (await client.put(f"/meshes/{m}", json={"type": "Mesh", "name": m})).status == 201
        puts = [
            client.put(f"/meshes/{m}/meshtimeouts/p{j}", json=timeout_doc(f"p{j}", m))
            for j in range(5)
        ]
        deleted, *answers = await asyncio.gather(client.delete(f"/meshes/{m}"), *puts)
        assert deleted.status == 200
        for resp in answers:
            seen.add(resp.status)
            if resp.status == 400:  # the Mesh was gone: named as such
                body = await resp.json()
                assert [p["field"] for p in body["invalid_parameters"]] == ["mesh"]
            else:
                assert resp.status == 201, await resp.text()
        assert (await client.get(f"/meshes/{m}")).status == 404
        assert await names(store, m) == [], f"{m} deleted but policies remain"
    assert seen <= {201, 400}


async def test_sweeper_removes_orphans_at_start_and_after_each_mesh_deletion() -> None:
    store = MemoryStore()
    for m in ("m1", "m2"):
        await store.create(mesh(m))
        await store.create(policy("p", m))
    await store.create(policy("orphan", "gone"))  # a crash between a deletion and its cascade
    sweeper = OrphanSweeper(store, REG)
    task = asyncio.create_task(sweeper.run())
    try:

        async def swept(want: list[str]) -> bool:
            return await names(store) == want

        await async_wait_until(lambda: swept(["m1/p", "m2/p"]), what="the start-up pass")
        # A Mesh deleted without its cascade (say, by a replica that died right after).
        await store.delete("Mesh", "", "m1")
        await async_wait_until(lambda: swept(["m2/p"]), what="the pass after a deletion")
        assert sweeper.removed == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_global_sweeps_orphans_on_start(tmp_path: Path) -> None:
    data = tmp_path / "global"
    store = await SqliteStore.open(data)
    await store.create(mesh("default"))
    await store.create(mesh("prod"))
    await store.create(policy("kept", "default"))
    await store.create(policy("orphan", "prod"))
    await store.delete("Mesh", "", "prod")  # and the global died before the cascade
    await store.close()

    g = await start_global(data)
    try:

        async def swept() -> bool:
            return await names(g.store) == ["default/kept"]

        await async_wait_until(swept, what="the leader's orphan sweep")
        status, leader = await g.call("GET", "/_leader")
        assert status == 200 and "orphan-sweep" in leader["jobs"]
    finally:
        await stop_global(g)


async def test_kds_never_sends_an_orphan() -> None:
    store = MemoryStore()
    await store.create(mesh("default"))
    await store.create(policy("p", "default"))
    await store.create(policy("orphan", "gone"))
    down = types_global_to_zone(REG)
    mirror = global_mirror(store, down)
    await mirror.start()
    try:
        view = GlobalView(mirror, REG, "zone-1", down)
        assert [w.key for w in await view.snapshot("MeshTimeout")] == [Key("default", "p")]
        assert view.pending("MeshTimeout", {}) == 1
        changes: list[SourceChange] = []
        view.listen(changes.append)

        async def changed(type_name: str, key: Key, present: bool) -> bool:
            return any(
                c.type == type_name and c.key == key and (c.resource is not None) == present
                for c in changes
            )

        # The Mesh goes without its cascade: what was in it is withdrawn from the zones...
        await store.delete("Mesh", "", "default")
        await async_wait_until(lambda: changed("MeshTimeout", Key("default", "p"), False))
        assert await view.snapshot("MeshTimeout") == []
        assert view.pending("MeshTimeout", {}) == 0
        # ...and a Mesh of that name created again brings it back (until a sweep removes it).
        changes.clear()
        await store.create(mesh("default"))
        await async_wait_until(lambda: changed("MeshTimeout", Key("default", "p"), True))
        assert view.pending("MeshTimeout", {}) == 1
    finally:
        await mirror.stop()
