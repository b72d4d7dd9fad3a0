"""SQLite's in-memory index of stored keys (`key_index`, issue 19): a `get_many` of keys none of
which is stored answers without the store's thread, and must answer what a read queued on the
thread at that moment would: after every write submitted before it, failed ones included."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshfed.store.base import ConflictError, NotFoundError, StoreKey
from meshfed.store.sqlite import SqliteStore
from tests.unit.store.test_conformance import OTHER_POLICY, POLICY, mk

UNINDEXED = "MeshHealthCheck"
NAMES = ("a", "b", "c")
MESHES = ("default", "other")
KEYS: list[StoreKey] = [
    (t, m, n) for t in (POLICY, OTHER_POLICY, UNINDEXED) for m in MESHES for n in NAMES
]

_key = st.sampled_from(KEYS)
_op = st.one_of(
    st.tuples(st.just("put"), _key),
    st.tuples(st.just("delete"), _key),
    st.tuples(st.just("conflict"), _key),  # a batch refused: it changes nothing
    st.tuples(st.just("drop_mesh"), st.sampled_from(MESHES)),
)


def _resource(key: StoreKey) -> Any:
    type_, mesh, name = key
    return mk(name, mesh, type_=type_)


async def _apply(store: SqliteStore, op: tuple[str, Any]) -> None:
    kind, arg = op
    if kind == "put":
        await store.write_batch([_resource(arg)], [])
    elif kind == "delete":
        await store.write_batch([], [arg])
    elif kind == "conflict":
        with pytest.raises((ConflictError, NotFoundError)):
            await store.write_batch([_resource(arg)], [], expected={arg: "999999"})
    else:
        await store.delete_mesh_scoped(arg)


async def _thread_read(store: SqliteStore, keys: list[StoreKey]) -> set[StoreKey]:
    """The read as it was before the index: on the store's thread, after what was queued."""
    return set(await store._run(store._db.get_many, keys))


async def _scenario(data_dir: Path, ops: list[tuple[str, Any]], held: list[bool]) -> None:
    """Each op, then each key read alone and all together, each read paired with a thread read
    queued right after it. A `held` op's write is kept on the thread (behind a gate) while
    the reads are made: they must wait for it, not answer from an index it has not updated."""
    store = await SqliteStore.open(data_dir, key_index=(POLICY, OTHER_POLICY))
    try:
        for op, hold in zip(ops, held, strict=True):
            gate = threading.Event()
            blocker = asyncio.create_task(store._run(gate.wait, 10.0))
            if not hold:
                gate.set()
                await blocker
            task = asyncio.create_task(_apply(store, op))
            await asyncio.sleep(0)  # the write is submitted to the thread
            if not hold:
                await task
            pairs = [
                (
                    asyncio.create_task(store.get_many(keys)),
                    asyncio.create_task(_thread_read(store, keys)),
                )
                for keys in [*([k] for k in KEYS), KEYS]
            ]
            await asyncio.sleep(0)  # every read made, in this order
            gate.set()
            await asyncio.gather(blocker, task)
            for read, expected in pairs:
                assert set(await read) == await expected
        stored = await _thread_read(store, KEYS)
        assert store._db.keys == {k for k in stored if k[0] != UNINDEXED}
    finally:
        await store.close()
    reopened = await SqliteStore.open(data_dir, key_index=(POLICY, OTHER_POLICY))
    try:  # the index is loaded from the file
        assert reopened._db.keys == {k for k in stored if k[0] != UNINDEXED}
    finally:
        await reopened.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_op, st.booleans()), max_size=12))
def test_reads_answered_from_the_index_equal_reads_on_the_thread(
    steps: list[tuple[tuple[str, Any], bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ops = [op for op, _ in steps]
        asyncio.run(_scenario(Path(tmp) / "data", ops, [w for _, w in steps]))


def _thread_reads(store: SqliteStore) -> list[list[StoreKey]]:
    """The keys of each `get_many` that reaches the store's thread, from now on."""
    calls: list[list[StoreKey]] = []
    thread_get_many = store._db.get_many

    def counted(keys: list[StoreKey]) -> Any:
        calls.append(keys)
        return thread_get_many(keys)

    store._db.get_many = counted  # type: ignore[method-assign]
    return calls


async def test_a_read_of_absent_keys_does_not_wait_for_the_thread(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path, key_index=(POLICY,))
    calls = _thread_reads(store)
    try:
        await store.create(mk("a"))
        absent, present = (POLICY, "default", "b"), (POLICY, "default", "a")
        assert await store.get_many([absent]) == {}
        assert calls == []  # answered from the index
        assert set(await store.get_many([absent, present])) == {present}
        assert calls == [[present]]  # only what may be stored goes to the thread
        other = (UNINDEXED, "default", "x")
        assert await store.get_many([other]) == {}
        assert calls[-1] == [other]  # a type not indexed is read as before
        # A write still on the thread: a read of its key waits for it, and finds it.
        gate = threading.Event()
        blocker = asyncio.create_task(store._run(gate.wait, 10.0))
        write = asyncio.create_task(store.create(mk("b")))
        await asyncio.sleep(0)
        read = asyncio.create_task(store.get_many([absent]))
        await asyncio.sleep(0)
        gate.set()
        assert set(await read) == {absent}
        await asyncio.gather(blocker, write)
    finally:
        await store.close()


async def test_a_store_without_an_index_reads_on_the_thread(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    calls = _thread_reads(store)
    try:
        assert await store.get_many([(POLICY, "default", "a")]) == {}
        assert calls == [[(POLICY, "default", "a")]]
    finally:
        await store.close()
