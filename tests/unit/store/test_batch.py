"""`write_batch` on every backend (conformance, run once per factory in conftest.py).

memory and SQLite apply any batch in one transaction; etcd does so up to its transaction
limits (127 resource operations by default) and splits larger batches into consecutive atomic
transactions, which the tests below allow for where they reach beyond the limit.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    EventKind,
    NotFoundError,
    ResourceStore,
    WatchEvent,
)
from tests.unit.store.conftest import StoreFactory
from tests.unit.store.test_conformance import POLICY, mk, next_event, nothing_pending, take

ETCD_TXN_OPS = 127  # etcd's default --max-txn-ops (128) minus the store's head key


def by_revision(events: list[WatchEvent]) -> dict[int, list[WatchEvent]]:
    out: dict[int, list[WatchEvent]] = defaultdict(list)
    for event in events:
        out[event.revision].append(event)
    return dict(out)


async def test_batch_creates_replaces_and_deletes_in_one_commit(store: ResourceStore) -> None:
    old = await store.create(mk("a", spec={"n": 1}, labels={"k": "v"}))
    await store.create(mk("b"))
    before = await store.revision()
    watch = store.watch()

    given = "2020-01-02T03:04:05.000000Z"
    stored = await store.write_batch(
        [mk("a", spec={"n": 2}), mk("c", spec={"n": 3}, creation_time=given)],
        [(POLICY, "default", "b"), (POLICY, "default", "never-there")],
    )

    assert await store.revision() == before + 1
    assert [r.name for r in stored] == ["a", "c"]
    assert {r.meta.version for r in stored} == {str(before + 1)}
    a, c = stored
    assert a.meta.creation_time == old.meta.creation_time  # a replace keeps the creation time
    assert a.meta.labels == {} and a.spec == {"n": 2}  # ...and replaces labels and spec
    assert c.meta.creation_time == given  # a new one keeps a creation time the caller set
    assert await store.get(POLICY, "default", "a") == a
    assert await store.get(POLICY, "default", "c") == c
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "b")

    events = await take(watch, 3)
    assert [(e.kind, e.resource.name) for e in events] == [
        (EventKind.PUT, "a"),
        (EventKind.PUT, "c"),
        (EventKind.DELETE, "b"),
    ]
    assert {e.revision for e in events} == {before + 1}
    assert events[0].resource == a
    assert events[2].resource.spec == {"n": 0}  # a delete carries the last stored state
    assert await nothing_pending(watch)


async def test_batch_results_are_copies(store: ResourceStore) -> None:
    res = mk("a", spec={"deep": {"x": 1}})
    [stored] = await store.write_batch([res], [])
    res.spec["deep"]["x"] = 2
    stored.spec["deep"]["x"] = 3
    assert (await store.get(POLICY, "default", "a")).spec == {"deep": {"x": 1}}


async def test_batch_without_copies_commits_the_same_and_returns_none(
    store: ResourceStore,
) -> None:
    """`copies=False` (what the zone's registrations write with) changes what the call returns,
    nothing of what is stored, versioned or watched."""
    old = await store.create(mk("a", spec={"n": 1}))
    before = await store.revision()
    watch = store.watch()

    returned = await store.write_batch(
        [mk("a", spec={"n": 2}), mk("b", spec={"n": 3})], [], copies=False
    )

    assert returned == []
    assert await store.revision() == before + 1
    a = await store.get(POLICY, "default", "a")
    assert a.spec == {"n": 2} and a.meta.version == str(before + 1)
    assert a.meta.creation_time == old.meta.creation_time
    assert (await store.get(POLICY, "default", "b")).spec == {"n": 3}
    events = await take(watch, 2)
    assert [(e.kind, e.resource.name, e.revision) for e in events] == [
        (EventKind.PUT, "a", before + 1),
        (EventKind.PUT, "b", before + 1),
    ]
    assert events[0].resource == a
    with pytest.raises(ConflictError):  # expectations are checked as with copies
        await store.write_batch(
            [mk("a", spec={"n": 4})], [], expected={(POLICY, "default", "a"): "0"}, copies=False
        )
    assert (await store.get(POLICY, "default", "a")).spec == {"n": 2}


async def test_batch_that_changes_nothing_commits_nothing(store: ResourceStore) -> None:
    await store.create(mk("a"))
    before = await store.revision()
    watch = store.watch()
    assert await store.write_batch([], []) == []
    assert await store.write_batch([], [(POLICY, "default", "missing")]) == []
    assert await store.revision() == before
    await store.create(mk("marker"))
    assert (await next_event(watch)).resource.name == "marker"  # nothing came before it


async def test_batch_refuses_ambiguous_or_invalid_keys(store: ResourceStore) -> None:
    await store.create(mk("a"))
    before = await store.revision()
    with pytest.raises(ValueError, match="twice"):
        await store.write_batch([mk("x"), mk("x", spec={"n": 1})], [])
    with pytest.raises(ValueError, match="twice"):
        await store.write_batch([mk("a")], [(POLICY, "default", "a")])
    with pytest.raises(ValueError, match="name must not be empty"):
        await store.write_batch([mk("ok")], [(POLICY, "default", "")])
    with pytest.raises(ValueError, match="neither puts nor deletes"):
        await store.write_batch([mk("ok")], [], expected={(POLICY, "default", "a"): "1"})
    assert await store.revision() == before
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "ok")


async def test_batch_expected_versions_all_or_nothing(store: ResourceStore) -> None:
    a = await store.create(mk("a"))
    b = await store.create(mk("b"))
    await store.update(mk("b", spec={"n": 1}))  # b is no longer at the version read
    before = await store.revision()
    key_a, key_b = (POLICY, "default", "a"), (POLICY, "default", "b")
    key_new = (POLICY, "default", "new")

    with pytest.raises(ConflictError, match="modified concurrently"):
        await store.write_batch(
            [mk("a", spec={"n": 9}), mk("new")],
            [key_b],
            expected={key_a: a.meta.version, key_b: b.meta.version},
        )
    with pytest.raises(AlreadyExistsError):
        await store.write_batch([mk("new"), mk("a", spec={"n": 9})], [], expected={key_a: None})
    with pytest.raises(NotFoundError):
        await store.write_batch([mk("a", spec={"n": 9}), mk("new")], [], expected={key_new: "1"})
    assert await store.revision() == before  # nothing of any refused batch was written
    assert (await store.get(POLICY, "default", "a")).spec == {"n": 0}
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "new")

    current_b = (await store.get(POLICY, "default", "b")).meta.version
    stored = await store.write_batch(
        [mk("a", spec={"n": 9}), mk("new")],
        [key_b],
        expected={key_a: a.meta.version, key_new: None, key_b: current_b},
    )
    assert [r.spec for r in stored] == [{"n": 9}, {"n": 0}]
    assert sorted(r.name for r in (await store.list(POLICY)).items) == ["a", "new"]


async def test_large_mixed_batch(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    for i in range(300):
        await store.create(mk(f"old{i:04}"))
    before = await store.revision()
    watch = store.watch()
    puts = [mk(f"old{i:04}", spec={"n": 1}) for i in range(0, 300, 2)]  # 150 replaced
    puts += [mk(f"new{i:04}", mesh=f"m{i % 3}") for i in range(1000)]  # 1000 created
    deletes = [(POLICY, "default", f"old{i:04}") for i in range(1, 300, 2)]  # 150 deleted

    stored = await store.write_batch(puts, deletes)

    assert [r.key for r in stored] == [r.key for r in puts]
    assert (await store.list(POLICY)).total == 1150
    assert (await store.list(POLICY, "default")).total == 150
    assert (await store.list(POLICY, "m0")).total == 334
    events = await take(watch, 1300)
    assert [(e.kind, e.resource.key) for e in events] == [
        *((EventKind.PUT, r.key) for r in puts),
        *((EventKind.DELETE, k) for k in deletes),
    ]
    groups = by_revision(events)
    if store_factory.name == "etcd":  # consecutive transactions, each within etcd's limit
        assert max(len(g) for g in groups.values()) <= ETCD_TXN_OPS
        assert len(groups) == -(-1300 // ETCD_TXN_OPS)
    else:
        assert list(groups) == [before + 1]
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert events[-1].revision == await store.revision()
    for e in events:
        if e.kind is EventKind.PUT:
            assert e.resource.meta.version == str(e.revision)
    assert await nothing_pending(watch)


async def test_readers_and_watchers_never_see_half_a_batch(store: ResourceStore) -> None:
    """Writers flip a set of keys between generations in batches (within etcd's single
    transaction limit, so every backend promises atomicity) while a reader lists and a
    watcher follows: every list shows one generation, every revision is one whole batch."""
    size, rounds = 40, 30
    names = [f"k{i:02}" for i in range(size)]
    await store.write_batch([mk(n, spec={"gen": 0}) for n in names], [])
    watch = store.watch()
    done = asyncio.Event()
    seen_generations: set[int] = set()

    async def writer() -> None:
        for gen in range(1, rounds + 1):
            if gen % 2:  # odd generations: delete half, rewrite the rest
                await store.write_batch(
                    [mk(n, spec={"gen": gen}) for n in names[::2]],
                    [(POLICY, "default", n) for n in names[1::2]],
                )
            else:
                await store.write_batch([mk(n, spec={"gen": gen}) for n in names], [])
            await asyncio.sleep(0)
        done.set()

    async def reader() -> None:
        while not done.is_set():
            items = (await store.list(POLICY)).items
            gens = {r.spec["gen"] for r in items}
            assert len(gens) == 1, f"a list saw generations {sorted(gens)} at once"
            [gen] = gens
            assert len(items) == (size // 2 if gen % 2 else size)
            seen_generations.add(gen)
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader())
    assert len(seen_generations) > 1  # the reader really ran alongside the writer

    expected_events = sum(size for _ in range(rounds))
    groups = by_revision(await take(watch, expected_events))
    assert len(groups) == rounds
    for gen, events in enumerate(groups.values(), start=1):
        puts = [e for e in events if e.kind is EventKind.PUT]
        assert {e.resource.spec["gen"] for e in puts} == {gen}
        assert len(events) == size
    assert await nothing_pending(watch)


async def test_batches_from_concurrent_writers_stay_whole(store: ResourceStore) -> None:
    """Eight writers each commit batches over their own keys: no batch is interleaved."""

    async def writer(w: int) -> None:
        for i in range(10):
            await store.write_batch([mk(f"w{w}-{j}", spec={"i": i}) for j in range(5)], [])

    watch = store.watch()
    await asyncio.gather(*(writer(w) for w in range(8)))
    groups = by_revision(await take(watch, 8 * 10 * 5))
    assert len(groups) == 80
    for events in groups.values():
        owners = {e.resource.name.split("-")[0] for e in events}
        assert len(owners) == 1 and len(events) == 5


async def test_batch_survives_a_reopen_and_replays(store_factory: StoreFactory) -> None:
    if not store_factory.persistent:
        pytest.skip("the memory store keeps nothing across a reopen")
    store = await store_factory.open()
    await store.create(mk("gone"))
    before = await store.revision()
    await store.write_batch([mk("a"), mk("b")], [(POLICY, "default", "gone")])
    await store.close()
    store = await store_factory.open()
    assert sorted(r.name for r in (await store.list(POLICY)).items) == ["a", "b"]
    replayed = await take(store.watch(from_revision=before), 3)
    assert [(e.kind, e.resource.name) for e in replayed] == [
        (EventKind.PUT, "a"),
        (EventKind.PUT, "b"),
        (EventKind.DELETE, "gone"),
    ]
    assert {e.revision for e in replayed} == {before + 1}
