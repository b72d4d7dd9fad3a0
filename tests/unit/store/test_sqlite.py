"""What only a persistent, file-backed store has to get right: restarts, the file, one owner."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshfed.resources.model import Meta, Resource
from meshfed.store import sqlite as sqlite_store
from meshfed.store.base import CompactedError, EventKind, NotFoundError, StoreError
from meshfed.store.sqlite import DB_FILE, SqliteStore
from tests.unit.store.test_conformance import POLICY, mk, next_event, take


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "data"


async def test_open_creates_a_wal_database(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    await store.create(mk("a"))
    await store.close()
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT name FROM resources").fetchall() == [("a",)]
    finally:
        conn.close()


async def test_data_and_revision_survive_reopen(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    created = await store.create(mk("a", labels={"k": "v"}, spec={"deep": {"x": [1]}}))
    await store.create(Resource("Mesh", Meta(name="default"), {"mtls": {"enabled": True}}))
    await store.create(mk("gone"))
    await store.delete(POLICY, "default", "gone")
    updated = await store.update(mk("a", labels={"k": "w"}, spec={"deep": {"x": [2]}}))
    rev = await store.revision()
    await store.close()

    store = await SqliteStore.open(data_dir)
    try:
        assert await store.revision() == rev == 5
        got = await store.get(POLICY, "default", "a")
        assert got == updated and got.meta.creation_time == created.meta.creation_time
        assert (await store.get("Mesh", "", "default")).spec == {"mtls": {"enabled": True}}
        with pytest.raises(NotFoundError):
            await store.get(POLICY, "default", "gone")
        again = await store.update(mk("a"), expected_version=updated.meta.version)
        assert again.meta.version == str(rev + 1)  # the counter goes on, never reuses
    finally:
        await store.close()


async def test_watch_replays_across_a_restart(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    for name in ("a", "b", "c"):
        await store.create(mk(name))
    await store.delete(POLICY, "default", "b")
    await store.close()

    store = await SqliteStore.open(data_dir)
    try:
        watch = store.watch(from_revision=1)
        replayed = await take(watch, 3)
        assert [(e.kind, e.resource.name, e.revision) for e in replayed] == [
            (EventKind.PUT, "b", 2),
            (EventKind.PUT, "c", 3),
            (EventKind.DELETE, "b", 4),
        ]
        assert replayed[2].resource.meta.version == "2"  # the deleted state, as it was
        await store.create(mk("d"))
        assert (await next_event(watch)).revision == 5
    finally:
        await store.close()


async def test_change_log_is_compacted_and_stays_correct(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir, history=5)
    for i in range(50):
        await store.create(mk(f"r{i}"))
    await store.create(Resource("Mesh", Meta(name="m1"), {}))
    for i in range(4):
        await store.create(mk(f"m{i}", mesh="m1"))
    await store.delete_mesh_scoped("m1")  # revision 56: 4 events in one commit
    await store.close()
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        logged = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    finally:
        conn.close()
    assert 5 <= logged <= 10

    store = await SqliteStore.open(data_dir, history=5)
    try:
        # Kept: the creation of m3 (revision 55) and the four deletions of one commit (56).
        with pytest.raises(CompactedError):
            store.watch(from_revision=50)
        kept = await take(store.watch(from_revision=54), 5)
        assert [e.revision for e in kept] == [55, 56, 56, 56, 56]
    finally:
        await store.close()


async def test_a_partly_compacted_commit_is_never_replayed_half(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir, history=2)
    await store.create(Resource("Mesh", Meta(name="m1"), {}))
    for i in range(3):
        await store.create(mk(f"x{i}", mesh="m1"))
    await store.delete_mesh_scoped("m1")  # revision 5 with 3 events; only 2 are kept
    with pytest.raises(CompactedError) as info:
        store.watch(from_revision=4)
    assert info.value.compacted_through == 5
    await store.close()
    store = await SqliteStore.open(data_dir, history=2)
    try:
        with pytest.raises(CompactedError):
            store.watch(from_revision=4)
        watch = store.watch(from_revision=5)
        await store.create(mk("after", mesh="m1"))
        assert (await next_event(watch)).revision == 6
    finally:
        await store.close()


async def test_one_owner_at_a_time(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    with pytest.raises(StoreError, match="already open"):
        await SqliteStore.open(data_dir)
    await store.create(mk("a"))
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        await store.get(POLICY, "default", "a")
    reopened = await SqliteStore.open(data_dir)
    try:
        assert (await reopened.get(POLICY, "default", "a")).name == "a"
    finally:
        await reopened.close()


@pytest.fixture
def garbage_dir(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True)
    (data_dir / DB_FILE).write_bytes(b"this is not an sqlite file" * 100)
    return data_dir


async def test_not_a_database(garbage_dir: Path) -> None:
    data_dir = garbage_dir
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await SqliteStore.open(data_dir)
    os.remove(data_dir / DB_FILE)
    store = await SqliteStore.open(data_dir)  # the failed open released the directory lock
    await store.close()


async def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot use data directory"):
        await SqliteStore.open(blocker / "data")


async def test_unserializable_spec_commits_nothing(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    try:
        with pytest.raises(ValueError, match="cannot be stored as JSON"):
            await store.create(mk("a", spec={"when": object()}))
        assert await store.revision() == 0
        with pytest.raises(NotFoundError):
            await store.get(POLICY, "default", "a")
    finally:
        await store.close()


async def test_reader_and_writer_tasks_see_consistent_data(data_dir: Path) -> None:
    store = await SqliteStore.open(data_dir)
    base = int((await store.create(mk("counter", spec={"n": 0}))).meta.version)
    for i in range(20):
        await store.create(mk(f"item{i:02d}"))
    done = asyncio.Event()

    async def writer() -> None:
        try:
            for n in range(1, 201):
                current = await store.get(POLICY, "default", "counter")
                await store.update(
                    mk("counter", spec={"n": n}), expected_version=current.meta.version
                )
                if n % 10 == 0:  # churn the list while the reader pages through it
                    await store.delete(POLICY, "default", f"item{n // 10 - 1:02d}")
                    await store.create(mk(f"item{n // 10 - 1:02d}"))
        finally:
            done.set()

    async def reader() -> int:
        reads, last_n = 0, 0
        while not done.is_set():
            got = await store.get(POLICY, "default", "counter")
            n = got.spec["n"]
            assert n >= last_n, "a read went back in time"
            # Version and content always belong to the same write: the n-th update follows
            # the 20 item creations, n-1 updates and two writes per ten updates.
            expected = base if n == 0 else base + 20 + n + 2 * ((n - 1) // 10)
            assert int(got.meta.version) == expected
            page = await store.list(POLICY, size=50)
            names = [r.name for r in page.items]
            # 20 while an item is between its deletion and re-creation, else 21.
            assert page.total == len(names) in (20, 21) and names == sorted(set(names))
            last_n, reads = n, reads + 1
        return reads

    try:
        _, reads = await asyncio.gather(writer(), reader())
        assert reads > 1
        assert (await store.get(POLICY, "default", "counter")).spec["n"] == 200
    finally:
        await store.close()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_json_values)
def test_rows_decode_as_json_loads_reads_what_json_dumps_wrote(value: Any) -> None:
    """The faster decoder of stored rows (issue 19) reads exactly what `json.loads` reads,
    infinities and numbers beyond a float included (msgspec refuses those: `json` reads them)."""
    text = json.dumps(value, separators=(",", ":"))
    assert sqlite_store._loads(text) == json.loads(text)


def test_rows_with_nan_still_decode() -> None:
    [nan] = sqlite_store._loads('{"x":[NaN]}')["x"]
    assert math.isnan(nan)
    assert sqlite_store._loads('{"x":1e400}') == {"x": math.inf}
