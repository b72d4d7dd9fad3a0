"""The process's one store cache (meshfed/store/cache.py): one watch however many readers,
each reader its own types, callbacks and encoded form; readers added after the start may
only ask for types the cache holds."""

from __future__ import annotations

import asyncio

import pytest

from meshfed.resources.model import Key, Meta, Resource
from meshfed.store.cache import StoreCache
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until

MESH, DP, SECRET = "Mesh", "Dataplane", "Secret"


def res(type_name: str, name: str, mesh: str = "") -> Resource:
    return Resource(type_name, Meta(name, mesh, {}), {})


async def test_one_watch_serves_every_reader_with_its_own_types_and_callbacks() -> None:
    store = MemoryStore()
    await store.create(res(MESH, "default"))
    cache = StoreCache(store)
    meshes = cache.subscribe([MESH])
    both = cache.subscribe([MESH, DP], lambda r: f"wire:{r.name}")
    seen: dict[str, list[tuple[str, Key | None]]] = {"meshes": [], "both": []}
    meshes.listen(lambda t, k, r: seen["meshes"].append((t, k)))
    both.listen(lambda t, k, r: seen["both"].append((t, k)))
    await cache.start()
    await both.start()  # already started: returns at once
    assert store._hub.watcher_count() == 1 and cache.watches() == 1
    assert [r.name for r, _ in meshes.entries(MESH)] == ["default"]
    assert meshes.entries(DP) == []  # not one of its types
    await store.create(res(DP, "web-1", "default"))

    async def both_saw() -> bool:
        return bool(seen["both"])

    await async_wait_until(both_saw, timeout=5, what="the Dataplane event")
    assert seen == {"meshes": [], "both": [(DP, Key("default", "web-1"))]}
    found = both.get(DP, Key("default", "web-1"))
    assert found is not None and found[1] == "wire:web-1"
    assert both.keyed(MESH)[0][2] == "wire:default"
    # A reader stopping drops its callbacks, not the cache.
    await both.stop()
    await store.create(res(MESH, "other"))

    async def meshes_saw() -> bool:
        return bool(seen["meshes"])

    await async_wait_until(meshes_saw, timeout=5, what="the Mesh event")
    assert seen["both"] == [(DP, Key("default", "web-1"))]
    await cache.stop()
    assert cache.watches() == 0


async def test_after_the_start_only_types_the_cache_holds() -> None:
    store = MemoryStore()
    cache = StoreCache(store, [MESH])
    await cache.start()
    try:
        assert cache.subscribe([MESH]).entries(MESH) == []
        with pytest.raises(ValueError, match="without Secret"):
            cache.subscribe([MESH, SECRET])
    finally:
        await cache.stop()


async def test_concurrent_starts_load_once() -> None:
    store = MemoryStore()
    cache = StoreCache(store, [MESH])
    views = [cache.subscribe([MESH]) for _ in range(3)]
    await asyncio.gather(*(v.start() for v in views))
    try:
        assert store._hub.watcher_count() == 1
    finally:
        await cache.stop()
