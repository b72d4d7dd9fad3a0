"""The behaviour every ResourceStore backend must have (run once per factory in conftest.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.resources.model import Meta, Resource
from meshfed.store.base import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    EventKind,
    InvalidOffsetError,
    NotFoundError,
    ResourceStore,
    WatchEvent,
    WatchOverflowError,
)
from tests.unit.store.conftest import StoreFactory

POLICY = "MeshTimeout"
OTHER_POLICY = "MeshRetry"


def mk(
    name: str = "a",
    mesh: str = "default",
    type_: str = POLICY,
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    creation_time: str = "",
) -> Resource:
    meta = Meta(name=name, mesh=mesh, labels=dict(labels or {}), creation_time=creation_time)
    return Resource(type_, meta, dict(spec if spec is not None else {"n": 0}))


async def next_event(it: AsyncIterator[WatchEvent], timeout: float = 5.0) -> WatchEvent:
    return await asyncio.wait_for(anext(it), timeout)


async def take(
    it: AsyncIterator[WatchEvent], count: int, timeout: float = 10.0
) -> list[WatchEvent]:
    async def collect() -> list[WatchEvent]:
        return [await anext(it) for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def nothing_pending(it: AsyncIterator[WatchEvent]) -> bool:
    """True if no event is ready: a marker write proves the watcher is caught up."""
    try:
        event = await asyncio.wait_for(anext(it), 0.05)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected event {event}")


# --- CRUD, errors, times and versions -------------------------------------------------------


async def test_create_sets_times_and_version(store: ResourceStore) -> None:
    before = await store.revision()
    created = await store.create(mk("web", labels={"team": "a"}, spec={"timeout": "5s"}))
    assert created.meta.version == str(before + 1) == str(await store.revision())
    assert created.meta.creation_time and created.meta.modification_time
    assert created.meta.creation_time == created.meta.modification_time
    assert created.meta.creation_time.endswith("Z")
    got = await store.get(POLICY, "default", "web")
    assert got == created
    assert got.spec == {"timeout": "5s"} and got.meta.labels == {"team": "a"}


async def test_create_keeps_given_creation_time_only_if_set(store: ResourceStore) -> None:
    given = "2020-01-02T03:04:05.000000Z"
    copied = await store.create(mk("copied", creation_time=given))
    assert copied.meta.creation_time == given
    assert copied.meta.modification_time != given
    fresh = await store.create(mk("fresh", creation_time=""))
    assert fresh.meta.creation_time == fresh.meta.modification_time


async def test_create_ignores_callers_version(store: ResourceStore) -> None:
    res = mk("x")
    res.meta.version = "999"
    created = await store.create(res)
    assert created.meta.version == str(await store.revision())


async def test_create_existing_fails(store: ResourceStore) -> None:
    await store.create(mk("a"))
    rev = await store.revision()
    with pytest.raises(AlreadyExistsError, match="already exists"):
        await store.create(mk("a", spec={"n": 9}))
    assert (await store.get(POLICY, "default", "a")).spec == {"n": 0}
    assert await store.revision() == rev  # a failed write commits nothing


async def test_keys_are_type_mesh_name(store: ResourceStore) -> None:
    await store.create(mk("a", mesh="m1"))
    await store.create(mk("a", mesh="m2"))
    await store.create(mk("a", mesh="m1", type_=OTHER_POLICY))
    await store.create(Resource("Mesh", Meta(name="m1"), {}))
    assert (await store.get("Mesh", "", "m1")).mesh == ""
    assert (await store.list(POLICY)).total == 2
    assert (await store.list(OTHER_POLICY)).total == 1
    assert (await store.list("Mesh")).total == 1


async def test_get_missing(store: ResourceStore) -> None:
    with pytest.raises(NotFoundError, match="'nope' in mesh 'default' not found"):
        await store.get(POLICY, "default", "nope")
    with pytest.raises(NotFoundError):
        await store.get("Mesh", "", "nope")
    await store.create(mk("a", mesh="m1"))
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "m2", "a")


async def test_empty_key_parts_are_rejected(store: ResourceStore) -> None:
    with pytest.raises(ValueError, match="name"):
        await store.create(mk(""))
    with pytest.raises(ValueError, match="type"):
        await store.create(mk("a", type_=""))
    assert await store.revision() == 0


async def test_update_keeps_creation_time(store: ResourceStore) -> None:
    created = await store.create(mk("a", labels={"x": "1"}, spec={"n": 1}))
    change = mk("a", labels={"y": "2"}, spec={"n": 2}, creation_time="1999-01-01T00:00:00Z")
    updated = await store.update(change, expected_version=created.meta.version)
    assert updated.meta.creation_time == created.meta.creation_time
    assert updated.meta.modification_time >= created.meta.modification_time
    assert int(updated.meta.version) > int(created.meta.version)
    assert updated.meta.labels == {"y": "2"} and updated.spec == {"n": 2}
    assert await store.get(POLICY, "default", "a") == updated


async def test_update_conflict_and_last_write_wins(store: ResourceStore) -> None:
    v1 = (await store.create(mk("a"))).meta.version
    v2 = (await store.update(mk("a", spec={"n": 1}), expected_version=v1)).meta.version
    rev = await store.revision()
    with pytest.raises(ConflictError, match="modified concurrently") as info:
        await store.update(mk("a", spec={"n": 99}), expected_version=v1)
    assert (info.value.expected, info.value.actual) == (v1, v2)
    assert await store.revision() == rev
    assert (await store.get(POLICY, "default", "a")).spec == {"n": 1}
    forced = await store.update(mk("a", spec={"n": 3}))  # no expected version: last write wins
    assert forced.spec == {"n": 3}


async def test_update_missing(store: ResourceStore) -> None:
    with pytest.raises(NotFoundError):
        await store.update(mk("ghost"))
    with pytest.raises(NotFoundError):
        await store.update(mk("ghost"), expected_version="1")


async def test_delete(store: ResourceStore) -> None:
    v = (await store.create(mk("a"))).meta.version
    await store.create(mk("b"))
    with pytest.raises(ConflictError):
        await store.delete(POLICY, "default", "a", expected_version=str(int(v) + 100))
    assert await store.get(POLICY, "default", "a")
    await store.delete(POLICY, "default", "a", expected_version=v)
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "a")
    await store.delete(POLICY, "default", "b")
    with pytest.raises(NotFoundError):
        await store.delete(POLICY, "default", "b")
    assert (await store.list(POLICY)).total == 0
    recreated = await store.create(mk("a"))  # a deleted name can be used again
    assert int(recreated.meta.version) > int(v)


async def test_revision_counts_committed_writes(store: ResourceStore) -> None:
    assert await store.revision() == 0
    await store.create(mk("a"))
    await store.update(mk("a", spec={"n": 1}))
    await store.create(mk("b"))
    await store.delete(POLICY, "default", "a")
    assert await store.revision() == 4


async def test_returned_resources_are_copies(store: ResourceStore) -> None:
    original = mk("a", labels={"k": "v"}, spec={"nested": {"list": [1, 2]}})
    created = await store.create(original)
    original.spec["nested"]["list"].append(3)
    original.meta.labels["k"] = "changed"
    created.spec["nested"]["list"].append(4)
    created.meta.labels["new"] = "x"
    got = await store.get(POLICY, "default", "a")
    assert got.spec == {"nested": {"list": [1, 2]}} and got.meta.labels == {"k": "v"}
    got.spec["nested"]["list"].clear()
    listed = (await store.list(POLICY)).items[0]
    assert listed.spec == {"nested": {"list": [1, 2]}}
    listed.spec["nested"] = None
    updated = await store.update(mk("a", spec={"nested": {"list": [5]}}))
    updated.spec["nested"]["list"].append(6)
    assert (await store.get(POLICY, "default", "a")).spec == {"nested": {"list": [5]}}


# --- list and paging -------------------------------------------------------------------------


async def _fill(store: ResourceStore, per_mesh: int, meshes: tuple[str, ...]) -> None:
    for mesh in meshes:
        for i in range(per_mesh):
            labels = {"parity": "even" if i % 2 == 0 else "odd", "tier": "web" if i % 3 else "db"}
            await store.create(mk(f"svc-{i:03d}", mesh=mesh, labels=labels))


async def test_list_sorted_per_mesh_and_across(store: ResourceStore) -> None:
    for mesh, name in [("m2", "b"), ("m1", "z"), ("m2", "a"), ("m1", "a"), ("m10", "a")]:
        await store.create(mk(name, mesh=mesh))
    await store.create(mk("other", mesh="m1", type_=OTHER_POLICY))
    everything = await store.list(POLICY)
    assert [(r.mesh, r.name) for r in everything.items] == [
        ("m1", "a"),
        ("m1", "z"),
        ("m10", "a"),
        ("m2", "a"),
        ("m2", "b"),
    ]
    assert everything.total == 5 and everything.next_offset is None
    m2 = await store.list(POLICY, "m2")
    assert [r.name for r in m2.items] == ["a", "b"] and m2.total == 2
    assert (await store.list(POLICY, "absent")).items == []
    assert (await store.list("NoSuchType")).total == 0


async def test_list_order_is_code_point_order(store: ResourceStore) -> None:
    names = ["b", "a", "\u00e9", "Z", "z", "aa", "a-b", "a_b", "\u4e2d", "0"]
    for name in names:
        await store.create(mk(name))
    assert [r.name for r in (await store.list(POLICY)).items] == sorted(names)
    paged, _ = await _all_pages(store, 3)
    assert [r.name for r in paged] == sorted(names)


async def test_list_filters(store: ResourceStore) -> None:
    await _fill(store, 12, ("m1", "m2"))
    by_name = await store.list(POLICY, "m1", name_contains="-01")
    assert [r.name for r in by_name.items] == ["svc-010", "svc-011"]
    assert by_name.total == 2
    both = await store.list(POLICY, labels={"parity": "even", "tier": "db"})
    assert [(r.mesh, r.name) for r in both.items] == [
        ("m1", "svc-000"),
        ("m1", "svc-006"),
        ("m2", "svc-000"),
        ("m2", "svc-006"),
    ]
    assert (await store.list(POLICY, labels={"parity": "even", "missing": "x"})).total == 0
    assert (await store.list(POLICY, labels={"parity": "EVEN"})).total == 0
    combined = await store.list(POLICY, "m2", name_contains="svc-00", labels={"parity": "odd"})
    assert [r.name for r in combined.items] == [
        "svc-001",
        "svc-003",
        "svc-005",
        "svc-007",
        "svc-009",
    ]


async def _all_pages(store: ResourceStore, size: int, **kwargs: Any) -> tuple[list[Resource], int]:
    items: list[Resource] = []
    offset: str | None = None
    pages = 0
    while True:
        page = await store.list(POLICY, size=size, offset=offset, **kwargs)
        assert len(page.items) <= size
        items += page.items
        pages += 1
        if page.next_offset is None:
            return items, pages
        assert len(page.items) == size
        offset = page.next_offset


@pytest.mark.parametrize("size", [1, 2, 100])
async def test_paging_covers_everything_once(store: ResourceStore, size: int) -> None:
    await _fill(store, 70, ("m1", "m2", "m3"))  # 210 items
    full = (await store.list(POLICY)).items
    assert len(full) == 210
    items, pages = await _all_pages(store, size)
    assert [r.key for r in items] == [r.key for r in full]
    assert pages == -(-210 // size)
    in_mesh, _ = await _all_pages(store, size, mesh="m2")
    assert [r.key for r in in_mesh] == [r.key for r in full if r.mesh == "m2"]
    odd, _ = await _all_pages(store, size, labels={"parity": "odd"}, name_contains="svc-0")
    assert [r.key for r in odd] == [r.key for r in full if r.meta.labels["parity"] == "odd"]
    first = await store.list(POLICY, "m3", size=size)
    assert first.total == 70


async def test_paging_exact_fit_has_no_next(store: ResourceStore) -> None:
    await _fill(store, 4, ("m1",))
    page = await store.list(POLICY, size=4)
    assert len(page.items) == 4 and page.next_offset is None
    page = await store.list(POLICY, size=2)
    last = await store.list(POLICY, size=2, offset=page.next_offset)
    assert [r.name for r in last.items] == ["svc-002", "svc-003"] and last.next_offset is None


async def test_paging_survives_inserts_and_deletes(store: ResourceStore) -> None:
    await _fill(store, 10, ("m1",))
    first = await store.list(POLICY, size=3)
    assert [r.name for r in first.items] == ["svc-000", "svc-001", "svc-002"]
    await store.delete(POLICY, "m1", "svc-002")  # the page's last item
    await store.delete(POLICY, "m1", "svc-003")  # the next page's first item
    await store.create(mk("svc-000a", mesh="m1"))  # before the offset: not seen again
    await store.create(mk("svc-004a", mesh="m1"))  # after the offset: seen
    second = await store.list(POLICY, size=3, offset=first.next_offset)
    assert [r.name for r in second.items] == ["svc-004", "svc-004a", "svc-005"]
    assert second.total == 10


async def test_invalid_offsets(store: ResourceStore) -> None:
    await _fill(store, 3, ("m1",))
    garbage = [
        "garbage!!",
        "%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["k1", 1, 2]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]
    for offset in garbage:
        with pytest.raises(InvalidOffsetError, match="invalid offset"):
            await store.list(POLICY, size=1, offset=offset)
    with pytest.raises(ValueError, match="size"):
        await store.list(POLICY, size=0)


# --- delete_mesh_scoped ----------------------------------------------------------------------


async def test_delete_mesh_scoped(store: ResourceStore) -> None:
    await store.create(Resource("Mesh", Meta(name="m1"), {}))
    await store.create(Resource("Mesh", Meta(name="m2"), {}))
    await _fill(store, 3, ("m1", "m2"))
    await store.create(mk("r", mesh="m1", type_=OTHER_POLICY))
    watch = store.watch()
    assert await store.delete_mesh_scoped("m1") == 4
    events = await take(watch, 4)
    assert {e.kind for e in events} == {EventKind.DELETE}
    assert sorted(e.resource.key for e in events) == sorted(
        [(POLICY, "m1", f"svc-{i:03d}") for i in range(3)] + [(OTHER_POLICY, "m1", "r")]
    )
    assert max(e.revision for e in events) == await store.revision()
    assert (await store.list(POLICY, "m1")).total == 0
    assert (await store.list(OTHER_POLICY)).total == 0
    assert (await store.list(POLICY, "m2")).total == 3
    assert (await store.get("Mesh", "", "m1")).name == "m1"  # the Mesh itself stays
    rev = await store.revision()
    assert await store.delete_mesh_scoped("m1") == 0
    assert await store.revision() == rev  # nothing deleted, nothing committed
    with pytest.raises(ValueError, match="mesh"):
        await store.delete_mesh_scoped("")


# --- concurrency -----------------------------------------------------------------------------


async def _increment(store: ResourceStore, times: int) -> int:
    conflicts = 0
    for _ in range(times):
        while True:
            current = await store.get(POLICY, "default", "counter")
            await asyncio.sleep(0)  # let other writers in between the read and the write
            bumped = mk("counter", spec={"n": current.spec["n"] + 1})
            try:
                await store.update(bumped, expected_version=current.meta.version)
                break
            except ConflictError:
                conflicts += 1
    return conflicts


async def test_concurrent_increments_lose_nothing(store: ResourceStore) -> None:
    await store.create(mk("counter", spec={"n": 0}))
    # 10 writers x 20 increments race (asserted below), and 200 commits cost etcd ~2 s,
    # not the ~15 s of 1,000.
    conflicts = await asyncio.gather(*(_increment(store, 20) for _ in range(10)))
    assert sum(conflicts) > 0  # the writers really did race
    final = await store.get(POLICY, "default", "counter")
    assert final.spec["n"] == 200
    # Each successful increment is exactly one committed write.
    assert await store.revision() == 201 == int(final.meta.version)


async def test_watch_sees_concurrent_writes_in_commit_order(store: ResourceStore) -> None:
    watch = store.watch()

    async def writer(w: int) -> None:
        for i in range(10):
            await store.create(mk(f"w{w}-{i}", spec={"n": 0}))
            await store.update(mk(f"w{w}-{i}", spec={"n": 1}))
        for i in range(0, 10, 2):
            await store.delete(POLICY, "default", f"w{w}-{i}")

    await asyncio.gather(*(writer(w) for w in range(8)))
    events = await take(watch, 8 * 25)
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert revisions[-1] == await store.revision()
    last: dict[tuple[str, str, str], WatchEvent] = {}
    for e in events:
        if e.kind is EventKind.PUT:
            assert e.resource.meta.version == str(e.revision)
            if e.resource.key in last:  # an update follows its own create
                assert last[e.resource.key].kind is EventKind.PUT
        else:
            assert last[e.resource.key].kind is EventKind.PUT
            assert e.resource.spec == {"n": 1}  # a delete carries the last stored state
        last[e.resource.key] = e
    survivors = {k for k, e in last.items() if e.kind is EventKind.PUT}
    assert survivors == {r.key for r in (await store.list(POLICY)).items}
    assert await nothing_pending(watch)


# --- watch -----------------------------------------------------------------------------------


async def test_watch_from_now_sees_only_future(store: ResourceStore) -> None:
    await store.create(mk("before"))
    watch = store.watch()  # subscribed at call time, before the first iteration
    await store.create(mk("after"))
    event = await next_event(watch)
    assert (event.kind, event.resource.name) == (EventKind.PUT, "after")
    assert event.revision == await store.revision()
    await store.delete(POLICY, "default", "after")
    event = await next_event(watch)
    assert (event.kind, event.resource.name) == (EventKind.DELETE, "after")
    assert event.resource.meta.version == str(event.revision - 1)  # the last stored state


async def test_watch_replays_from_revision_then_goes_live(store: ResourceStore) -> None:
    for i in range(5):
        await store.create(mk(f"r{i}"))
    await store.update(mk("r1", spec={"n": 1}))
    watch = store.watch(from_revision=2)
    replayed = await take(watch, 4)
    assert [(e.resource.name, e.revision) for e in replayed] == [
        ("r2", 3),
        ("r3", 4),
        ("r4", 5),
        ("r1", 6),
    ]
    await store.create(mk("live"))
    live = await next_event(watch)
    assert (live.resource.name, live.revision) == ("live", 7)
    assert await nothing_pending(watch)
    everything = await take(store.watch(from_revision=0), 7)
    assert [e.revision for e in everything] == list(range(1, 8))


async def test_watch_from_current_or_future_revision(store: ResourceStore) -> None:
    await store.create(mk("a"))
    current = await store.revision()
    at_current = store.watch(from_revision=current)
    future = store.watch(from_revision=current + 2)
    for name in ("b", "c", "d"):
        await store.create(mk(name))
    assert [e.resource.name for e in await take(at_current, 3)] == ["b", "c", "d"]
    assert [e.resource.name for e in await take(future, 1)] == ["d"]
    with pytest.raises(ValueError, match="from_revision"):
        store.watch(from_revision=-1)


async def test_watch_events_are_copies(store: ResourceStore) -> None:
    w1, w2 = store.watch(), store.watch()
    await store.create(mk("a", spec={"deep": {"x": 1}}))
    e1 = await next_event(w1)
    e1.resource.spec["deep"]["x"] = 2
    e1.resource.meta.labels["k"] = "v"
    e2 = await next_event(w2)
    assert e2.resource.spec == {"deep": {"x": 1}} and e2.resource.meta.labels == {}
    replay = await next_event(store.watch(from_revision=0))
    assert replay.resource.spec == {"deep": {"x": 1}}
    assert (await store.get(POLICY, "default", "a")).spec == {"deep": {"x": 1}}


async def test_replay_from_compacted_revision_fails_clearly(store_factory: StoreFactory) -> None:
    store = await store_factory.open(history=5)
    for i in range(12):
        await store.create(mk(f"r{i}"))
    with pytest.raises(CompactedError, match="compacted") as info:
        store.watch(from_revision=3)
    assert info.value.requested == 3
    assert info.value.compacted_through <= 7
    kept = await take(store.watch(from_revision=7), 5)
    assert [e.revision for e in kept] == [8, 9, 10, 11, 12]


async def test_slow_watcher_does_not_block_writers(store_factory: StoreFactory) -> None:
    store = await store_factory.open(max_pending=10)
    slow = store.watch()
    keeping_up = store.watch()
    for i in range(5):
        await store.create(mk(f"early{i}"))
    assert len(await take(keeping_up, 5)) == 5
    for i in range(20):  # the slow watcher reads nothing meanwhile: writers go on regardless
        await store.create(mk(f"late{i}"))
        assert (await next_event(keeping_up)).resource.name == f"late{i}"
    delivered = []
    with pytest.raises(WatchOverflowError, match="watch again from") as info:
        while True:
            delivered.append(await next_event(slow))
    # What it had queued is delivered first, then the error says where to resume.
    assert delivered and info.value.last_revision == delivered[-1].revision
    resumed = await take(store.watch(from_revision=info.value.last_revision), 1)
    assert resumed[0].revision == delivered[-1].revision + 1


async def test_cancelling_a_watch(store: ResourceStore) -> None:
    seen: list[WatchEvent] = []
    started, got_one = asyncio.Event(), asyncio.Event()

    async def consume() -> None:
        watch = store.watch()
        started.set()
        async for event in watch:
            seen.append(event)
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    await store.create(mk("a"))
    await asyncio.wait_for(got_one.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    for i in range(50):  # writers are unaffected by the dead watcher
        await store.create(mk(f"b{i}"))
    assert len(seen) == 1
    fresh = store.watch(from_revision=1)
    assert len(await take(fresh, 50)) == 50


async def test_close_ends_watches(store_factory: StoreFactory) -> None:
    store = await store_factory.open()
    watch = store.watch()
    await store.create(mk("a"))
    await store.close()
    assert (await next_event(watch)).resource.name == "a"
    with pytest.raises(StopAsyncIteration):
        await next_event(watch)
