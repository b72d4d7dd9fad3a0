"""etcd-only `write_batch` behaviour against the session's real etcd: chunking at the
transaction limits, and a concurrent write landing between a chunk's read and its commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshfed.store.base import ConflictError, EventKind, NotFoundError, StoreKey
from meshfed.store.etcd import EtcdStore
from tests.unit.store.etcd_server import EtcdServer
from tests.unit.store.test_etcd import POLICY, fresh_prefix, mk, nothing_pending, open_on, take


@pytest.fixture
async def stores(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdStore]]:
    opened: list[EtcdStore] = []
    yield opened
    for store in opened:
        await store.close()


async def test_batch_is_split_at_max_txn_ops(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    store = await open_on(stores, etcd_server, fresh_prefix(), max_txn_ops=4)
    await store.create(mk("gone-1"))
    await store.create(mk("gone-2"))
    watch = store.watch()
    puts = [mk(f"p{i}") for i in range(10)]
    deletes: list[StoreKey] = [(POLICY, "default", "gone-1"), (POLICY, "default", "gone-2")]

    stored = await store.write_batch(puts, deletes)

    events = await take(watch, 12)
    assert [(e.kind, e.resource.name) for e in events] == [
        *((EventKind.PUT, f"p{i}") for i in range(10)),
        (EventKind.DELETE, "gone-1"),
        (EventKind.DELETE, "gone-2"),
    ]
    # 3 resource operations per transaction (the 4th is the head key): 4 transactions.
    revisions = [e.revision for e in events]
    assert len(set(revisions)) == 4 and revisions == sorted(revisions)
    assert [r.meta.version for r in stored] == [str(e.revision) for e in events[:10]]
    assert await store.revision() == revisions[-1]


async def test_batch_is_split_at_max_txn_bytes(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    store = await open_on(stores, etcd_server, fresh_prefix(), max_txn_bytes=2600)
    watch = store.watch()
    big = [mk(f"big{i}") for i in range(5)]
    for res in big:
        res.spec["pad"] = "x" * 900  # about 1150 bytes each: two fit in 2600, three do not
    await store.write_batch([*big, mk("small")], [])
    events = await take(watch, 6)
    sizes = [len(g) for g in _groups([e.revision for e in events])]
    assert sizes == [2, 2, 2]  # the last big one shares with the small one
    assert (await store.get(POLICY, "default", "big4")).spec["pad"] == "x" * 900


async def test_conflict_in_a_later_chunk_keeps_the_earlier_ones(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    store = await open_on(stores, etcd_server, fresh_prefix(), max_txn_ops=3)
    late = await store.create(mk("late"))
    await store.update(mk("late", n=1))
    with pytest.raises(ConflictError):
        await store.write_batch(
            [mk("e1"), mk("e2"), mk("late", n=2)],
            [],
            expected={(POLICY, "default", "late"): late.meta.version},
        )
    # Documented: each chunk is atomic, the batch as a whole is not.
    assert sorted(r.name for r in (await store.list(POLICY)).items) == ["e1", "e2", "late"]
    assert (await store.get(POLICY, "default", "late")).spec == {"n": 1}


async def test_a_write_between_read_and_commit_is_not_lost(
    etcd_server: EtcdServer, stores: list[EtcdStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica updates a key right after the batch read it: the batch's commit fails
    its comparison, reads again and commits over the newer state (keeping creation time);
    with an expected version, the same race ends in ConflictError and nothing is written."""
    prefix = fresh_prefix()
    store = await open_on(stores, etcd_server, prefix)
    replica = await open_on(stores, etcd_server, prefix)
    created = await store.create(mk("x"))
    await store.create(mk("y"))
    real_read = store._read_keys
    reads = 0

    async def read_then_race(keys: Any) -> Any:
        nonlocal reads
        reads += 1
        found = await real_read(keys)
        if reads == 1:
            await replica.update(mk("x", n=5))
            await replica.delete(POLICY, "default", "y")
        return found

    monkeypatch.setattr(store, "_read_keys", read_then_race)
    watch = store.watch()
    [stored] = await store.write_batch([mk("x", n=7)], [(POLICY, "default", "y")])
    assert reads == 2
    assert stored.meta.creation_time == created.meta.creation_time
    events = await take(watch, 3)
    assert [(e.kind, e.resource.name) for e in events] == [
        (EventKind.PUT, "x"),  # the replica's update
        (EventKind.DELETE, "y"),  # the replica's delete; the batch finds y gone
        (EventKind.PUT, "x"),  # the batch
    ]
    assert await nothing_pending(watch)

    reads = 0
    version = (await store.get(POLICY, "default", "x")).meta.version
    monkeypatch.setattr(store, "_read_keys", read_then_race)
    await store.create(mk("y"))
    with pytest.raises(ConflictError):
        await store.write_batch([mk("x", n=8)], [], expected={(POLICY, "default", "x"): version})
    assert (await store.get(POLICY, "default", "x")).spec == {"n": 5}
    with pytest.raises(NotFoundError):
        await store.get(POLICY, "default", "y")


def _groups(revisions: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for rev in revisions:
        if out and out[-1][0] == rev:
            out[-1].append(rev)
        else:
            out.append([rev])
    return out
