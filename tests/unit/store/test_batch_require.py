"""`write_batch(..., require=...)`: keys the batch does not write that must exist at exactly the
given version for it to commit (a policy's Mesh). Conformance on every backend, then etcd's
chunked transactions and a requirement broken between a chunk's read and its commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.store.base import ConflictError, EventKind, ResourceStore
from meshfed.store.etcd import EtcdStore
from tests.unit.store.etcd_server import EtcdServer
from tests.unit.store.test_conformance import POLICY, mk, nothing_pending, take
from tests.unit.store.test_etcd import fresh_prefix, open_on

MESH = "Mesh"


async def snapshot(store: ResourceStore) -> tuple[int, list[Any]]:
    items = (await store.list(POLICY)).items + (await store.list(MESH)).items
    return await store.revision(), [(r.key, r.meta.version, r.spec) for r in items]


async def test_batch_commits_while_the_requirement_holds(store: ResourceStore) -> None:
    mesh = await store.create(mk("m1", "", MESH))
    watch = store.watch()
    stored = await store.write_batch(
        [mk("p1", "m1"), mk("p2", "m1")], [], require=[(MESH, "", "m1", mesh.meta.version)]
    )
    assert [r.name for r in stored] == ["p1", "p2"]
    events = await take(watch, 2)
    assert [(e.kind, e.resource.name) for e in events] == [
        (EventKind.PUT, "p1"),
        (EventKind.PUT, "p2"),
    ]
    assert await nothing_pending(watch)  # the required key itself is not written
    assert await store.get(MESH, "", "m1") == mesh


async def test_a_changed_or_deleted_requirement_writes_nothing(store: ResourceStore) -> None:
    old = await store.create(mk("m1", "", MESH))
    new = await store.update(mk("m1", "", MESH, spec={"n": 1}))
    await store.create(mk("gone", "m1"))
    before = await snapshot(store)

    with pytest.raises(ConflictError) as info:
        await store.write_batch(
            [mk("p1", "m1")], [(POLICY, "m1", "gone")], require=[(MESH, "", "m1", old.meta.version)]
        )
    err = info.value
    assert (err.type, err.mesh, err.name) == (MESH, "", "m1")
    assert (err.expected, err.actual) == (old.meta.version, new.meta.version)
    assert await snapshot(store) == before

    await store.delete(MESH, "", "m1")
    before = await snapshot(store)
    with pytest.raises(ConflictError) as info:
        await store.write_batch([mk("p1", "m1")], [], require=[(MESH, "", "m1", new.meta.version)])
    assert info.value.actual is None and "no longer exists" in str(info.value)
    assert await snapshot(store) == before


async def test_requirements_are_checked_even_when_nothing_is_written(
    store: ResourceStore,
) -> None:
    mesh = await store.create(mk("m1", "", MESH))
    before = await snapshot(store)
    assert await store.write_batch([], [], require=[(MESH, "", "m1", mesh.meta.version)]) == []
    assert await snapshot(store) == before  # nothing committed
    with pytest.raises(ConflictError):
        await store.write_batch([], [(POLICY, "m1", "absent")], require=[(MESH, "", "m2", "1")])
    with pytest.raises(ConflictError):
        await store.write_batch([], [], require=[(MESH, "", "m1", "not-a-version")])
    assert await snapshot(store) == before


async def test_several_requirements_all_hold_or_nothing_is_written(store: ResourceStore) -> None:
    a = await store.create(mk("a", "", MESH))
    b = await store.create(mk("b", "", MESH))
    await store.update(mk("b", "", MESH, spec={"n": 2}))
    before = await snapshot(store)
    with pytest.raises(ConflictError) as info:
        await store.write_batch(
            [mk("p", "a")],
            [],
            require=[(MESH, "", "a", a.meta.version), (MESH, "", "b", b.meta.version)],
        )
    assert info.value.name == "b"
    assert await snapshot(store) == before


async def test_a_required_key_cannot_also_be_written_or_named_twice(store: ResourceStore) -> None:
    mesh = await store.create(mk("m1", "", MESH))
    v = mesh.meta.version
    bad: list[dict[str, Any]] = [
        {"puts": [mk("m1", "", MESH)], "deletes": [], "require": [(MESH, "", "m1", v)]},
        {"puts": [], "deletes": [(MESH, "", "m1")], "require": [(MESH, "", "m1", v)]},
        {"puts": [], "deletes": [], "require": [(MESH, "", "m1", v), (MESH, "", "m1", v)]},
        {
            "puts": [mk("p", "m1")],
            "deletes": [],
            "require": [(MESH, "", "m1", v)],
            "expected": {(MESH, "", "m1"): v},  # `expected` is for keys the batch writes
        },
        {"puts": [], "deletes": [], "require": [(MESH, "", "", v)]},
    ]
    before = await snapshot(store)
    for case in bad:
        with pytest.raises(ValueError):
            await store.write_batch(
                case["puts"],
                case["deletes"],
                expected=case.get("expected"),
                require=case["require"],
            )
    assert await snapshot(store) == before


# -- etcd: chunks and races -------------------------------------------------------------------


@pytest.fixture
async def etcd_stores(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdStore]]:
    opened: list[EtcdStore] = []
    yield opened
    for store in opened:
        await store.close()


async def test_etcd_every_chunk_checks_the_requirement(
    etcd_server: EtcdServer, etcd_stores: list[EtcdStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 4 operations per transaction and one required key, a chunk holds 3 resources; a
    Mesh deleted after the first chunk committed stops the second (each chunk is atomic, the
    batch is not, as for `expected`)."""
    prefix = fresh_prefix()
    store = await open_on(etcd_stores, etcd_server, prefix, max_txn_ops=4)
    replica = await open_on(etcd_stores, etcd_server, prefix)
    mesh = await store.create(mk("m1", "", MESH))
    real_write = store._write_chunk
    chunks = 0

    async def delete_after_first(*args: Any) -> Any:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            await replica.delete(MESH, "", "m1")
        return await real_write(*args)

    monkeypatch.setattr(store, "_write_chunk", delete_after_first)
    with pytest.raises(ConflictError):
        await store.write_batch(
            [mk(f"p{i}", "m1") for i in range(6)], [], require=[(MESH, "", "m1", mesh.meta.version)]
        )
    assert chunks == 2
    assert [r.name for r in (await store.list(POLICY)).items] == ["p0", "p1", "p2"]

    with pytest.raises(ValueError):
        await store.write_batch([], [], require=[(MESH, "", f"m{i}", "1") for i in range(4)])


async def test_etcd_requirement_broken_between_read_and_commit(
    etcd_server: EtcdServer, etcd_stores: list[EtcdStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Mesh changes right after the chunk read it: the transaction's comparison fails, the
    chunk is read again, and the broken requirement ends the batch with nothing written."""
    prefix = fresh_prefix()
    store = await open_on(etcd_stores, etcd_server, prefix)
    replica = await open_on(etcd_stores, etcd_server, prefix)
    mesh = await store.create(mk("m1", "", MESH))
    real_read = store._read_keys
    reads = 0

    async def read_then_race(keys: Any) -> Any:
        nonlocal reads
        reads += 1
        found = await real_read(keys)
        if reads == 1:
            await replica.delete(MESH, "", "m1")
        return found

    monkeypatch.setattr(store, "_read_keys", read_then_race)
    with pytest.raises(ConflictError) as info:
        await store.write_batch([mk("p", "m1")], [], require=[(MESH, "", "m1", mesh.meta.version)])
    assert reads == 2 and info.value.actual is None
    assert (await store.list(POLICY)).items == []
