"""Watches of some types and uncopied watches, on every backend (memory, SQLite, real etcd).

A filtered watch must be exactly the unfiltered stream with the other types left out: same
order, same revisions, replay included; the filter must not change what other watchers see,
and an uncopied watch must not let anyone's mutation leak into another watcher or the store.
"""

from __future__ import annotations

import time

import pytest

from meshfed.resources.model import Key
from meshfed.store.base import CompactedError, ResourceStore, WatchEvent, WatchOverflowError
from meshfed.store.etcd import CLOSE_DRAIN_TIMEOUT
from meshfed.store.mirror import StoreMirror
from tests.support import async_wait_until
from tests.unit.store.conftest import StoreFactory
from tests.unit.store.test_conformance import (
    OTHER_POLICY,
    POLICY,
    mk,
    next_event,
    nothing_pending,
    take,
)

MESH = "Mesh"


def seen(events: list[WatchEvent]) -> list[tuple[str, str, str, int]]:
    return [(e.kind.value, e.resource.type, e.resource.name, e.revision) for e in events]


async def write_mixed(store: ResourceStore) -> None:
    """Three types interleaved, single writes and a batch that mixes them (revisions 1..6)."""
    await store.create(mk("a"))  # 1
    await store.create(mk("x", type_=OTHER_POLICY))  # 2
    await store.create(mk("m", mesh="", type_=MESH))  # 3
    await store.update(mk("a", spec={"n": 1}))  # 4
    await store.write_batch(  # 5: puts in order, then the delete
        [mk("y", type_=OTHER_POLICY), mk("b")], [(POLICY, "default", "a")]
    )
    await store.delete(MESH, "", "m")  # 6


ALL = [
    ("PUT", POLICY, "a", 1),
    ("PUT", OTHER_POLICY, "x", 2),
    ("PUT", MESH, "m", 3),
    ("PUT", POLICY, "a", 4),
    ("PUT", OTHER_POLICY, "y", 5),
    ("PUT", POLICY, "b", 5),
    ("DELETE", POLICY, "a", 5),
    ("DELETE", MESH, "m", 6),
]


def only(*types: str) -> list[tuple[str, str, str, int]]:
    return [e for e in ALL if e[1] in types]


async def test_filtered_watch_sees_only_its_types_in_commit_order(store: ResourceStore) -> None:
    everything = store.watch()
    policies_and_meshes = store.watch(types=[POLICY, MESH])
    meshes = store.watch(types={MESH})  # "Mesh/" must not match "MeshTimeout/" keys
    uncopied = store.watch(types=(OTHER_POLICY,), copy=False)
    await write_mixed(store)
    assert seen(await take(everything, len(ALL))) == ALL
    assert seen(await take(policies_and_meshes, 6)) == only(POLICY, MESH)
    assert seen(await take(meshes, 2)) == only(MESH)
    assert seen(await take(uncopied, 2)) == only(OTHER_POLICY)
    # A write of a type it does not watch reaches the others, never it; it stays live.
    await store.create(mk("z", type_=OTHER_POLICY))
    assert (await next_event(everything)).resource.name == "z"
    assert (await next_event(uncopied)).resource.name == "z"
    await store.create(mk("c"))
    live = await next_event(policies_and_meshes)  # not "z"
    assert (live.resource.name, live.revision) == ("c", await store.revision())
    # (Ends the watch: a timed-out wait unsubscribes.)
    assert await nothing_pending(meshes)


async def test_filtered_replay_from_a_revision_then_live(store: ResourceStore) -> None:
    await write_mixed(store)
    replay = store.watch(from_revision=2, types=[POLICY])
    assert seen(await take(replay, 3)) == [e for e in only(POLICY) if e[3] > 2]
    await store.create(mk("q", type_=OTHER_POLICY))
    await store.create(mk("c"))
    live = await next_event(replay)
    assert (live.resource.name, live.revision) == ("c", await store.revision())
    from_start = store.watch(from_revision=0, types=[MESH, OTHER_POLICY])
    assert seen(await take(from_start, 5)) == [
        *only(MESH, OTHER_POLICY),
        ("PUT", OTHER_POLICY, "q", 7),
    ]


async def test_uncopied_watchers_do_not_share_with_copying_ones(store: ResourceStore) -> None:
    reader = store.watch(copy=False)
    writer = store.watch()  # copies: may change what it gets
    await store.create(mk("a", labels={"k": "v"}, spec={"deep": {"x": 1}}))
    mine = await next_event(writer)
    mine.resource.spec["deep"]["x"] = 2
    mine.resource.meta.labels["k"] = "changed"
    shared = await next_event(reader)
    assert shared.resource.spec == {"deep": {"x": 1}} and shared.resource.meta.labels == {"k": "v"}
    assert (await next_event(store.watch(from_revision=0))).resource.spec == {"deep": {"x": 1}}
    assert (await store.get(POLICY, "default", "a")).spec == {"deep": {"x": 1}}


async def test_other_types_do_not_fill_a_filtered_watchers_backlog(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open(max_pending=10)
    unfiltered = store.watch()
    filtered = store.watch(types=[OTHER_POLICY])
    for i in range(20):  # neither watcher reads meanwhile
        await store.create(mk(f"p{i}"))
    await store.create(mk("wanted", type_=OTHER_POLICY))
    event = await next_event(filtered)
    assert (event.resource.name, event.revision) == ("wanted", 21)
    with pytest.raises(WatchOverflowError, match="watch again from"):
        await take(unfiltered, 21)


async def test_filtered_replay_from_a_compacted_revision_fails_clearly(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open(history=5)
    for i in range(12):
        await store.create(mk(f"r{i}", type_=POLICY if i % 2 else OTHER_POLICY))
    with pytest.raises(CompactedError, match="compacted"):
        store.watch(from_revision=3, types=[POLICY])
    # Policies are the odd writes: revisions 2, 4, ..., 12.
    kept = await take(store.watch(from_revision=7, types=[POLICY]), 3)
    assert [e.revision for e in kept] == [8, 10, 12]


async def test_closing_ends_a_filtered_watch_after_its_events(store_factory: StoreFactory) -> None:
    """The last commit is of a type the watch ignores: closing must still see the watch catch
    up with it at once (etcd waits for that, up to CLOSE_DRAIN_TIMEOUT)."""
    store = await store_factory.open()
    watch = store.watch(types=[POLICY])
    await store.create(mk("a"))
    await store.create(mk("x", type_=OTHER_POLICY))
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < CLOSE_DRAIN_TIMEOUT
    assert (await next_event(watch)).resource.name == "a"
    with pytest.raises(StopAsyncIteration):
        await next_event(watch)


async def test_a_bad_type_filter_is_refused(store: ResourceStore) -> None:
    with pytest.raises(TypeError, match="not the string 'MeshTimeout'"):
        store.watch(types=POLICY)
    with pytest.raises(ValueError, match="at least one type"):
        store.watch(types=[])
    with pytest.raises(ValueError, match="non-empty type names"):
        store.watch(types=[POLICY, ""])


async def test_mirror_is_not_disturbed_by_types_it_does_not_mirror(
    store_factory: StoreFactory,
) -> None:
    """A mirror's watch names its types: a burst of others larger than a watcher's backlog
    neither reaches it nor makes it lose the watch and reload."""
    store = await store_factory.open(max_pending=10)
    mirror = StoreMirror(store, [OTHER_POLICY], lambda res: res)
    await mirror.start()
    try:
        await store.write_batch([mk(f"p{i}") for i in range(50)], [])
        await store.create(mk("wanted", type_=OTHER_POLICY))

        async def mirrored() -> bool:
            return mirror.get(OTHER_POLICY, Key("default", "wanted")) is not None

        await async_wait_until(mirrored, timeout=10)
        assert mirror.reloads == 0
        assert [r.name for r, _ in mirror.entries(OTHER_POLICY)] == ["wanted"]
        assert mirror.entries(POLICY) == []
    finally:
        await mirror.stop()
