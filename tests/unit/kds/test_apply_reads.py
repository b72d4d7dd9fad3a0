"""Applying a KDS response reads exactly the keys it touches (one `get_many`),
never the whole type, however many keys the response has; and a full list without paging
reads its rows once (no second scan to count them)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshfed.kds.naming import types_zone_to_global, zone_resource_name
from meshfed.kds.receive import global_receive_side
from meshfed.kds.receiver import ChangeSet
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, Key, Meta, Resource
from meshfed.resources.types import default_registry
from meshfed.store.base import ListPage, StoreKey
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore

REG = default_registry()


def dataplane(name: str, zone: str = "zone-1", port: int = 8080) -> Resource:
    labels = {LABEL_ORIGIN: "zone", LABEL_ZONE: zone}
    inbound = [{"port": port, "tags": {"kuma.io/service": "web"}}]
    spec = {"networking": {"address": "127.0.0.1", "inbound": inbound}}
    return Resource("Dataplane", Meta(name, "default", labels), spec)


class CountingStore(MemoryStore):
    """A memory store that counts how many resources each kind of read returns."""

    def __init__(self) -> None:
        super().__init__()
        self.listed = 0
        self.fetched = 0

    async def list(self, type_: str, mesh: str | None = None, **kwargs: Any) -> ListPage:
        page = await super().list(type_, mesh, **kwargs)
        self.listed += len(page.items)
        return page

    async def get_many(self, keys: Sequence[StoreKey]) -> builtins.dict[StoreKey, Resource]:
        found = await super().get_many(keys)
        self.fetched += len(keys)
        return found


async def test_an_apply_reads_only_the_keys_of_the_response() -> None:
    store = CountingStore()
    # 2000 Dataplanes of another zone, 100 of zone-1 already stored.
    await store.write_batch([dataplane(f"other-{i}", "zone-2") for i in range(2000)], [])
    mine = [dataplane(zone_resource_name(f"dp-{i}", "default", "zone-1")) for i in range(100)]
    for res in mine:
        res.meta.labels["kuma.io/display-name"] = res.name
    await store.write_batch(mine, [])
    side = await global_receive_side(store, REG, "zone-1", types_zone_to_global(REG))
    store.listed = store.fetched = 0

    # 17 changes and 3 removes: more than the old code read one by one.
    upserts = [dataplane(f"dp-{i}", port=9000 + i) for i in range(17)]
    removes = [Key("default", f"dp-{i}") for i in range(50, 53)]
    await side.apply(ChangeSet("Dataplane", upserts, removes))

    assert store.listed == 0  # before the fix: the whole type, 2100 Dataplanes
    assert store.fetched == 20
    stored = await store.get(
        "Dataplane", "default", zone_resource_name("dp-3", "default", "zone-1")
    )
    assert stored.spec["networking"]["inbound"][0]["port"] == 9003
    assert (await store.list("Dataplane", labels={LABEL_ZONE: "zone-1"})).total == 97


async def test_sqlite_apply_time_does_not_grow_with_the_type(tmp_path: Path) -> None:
    """At 20,000 stored Dataplanes a 17-key apply takes about as long as at 200 (before the
    fix it listed the type: ~100x slower at this size). Loose bound, to stay robust; CPU
    time of the process (the store's thread included), so other load on the host cannot
    fail it."""
    timings = []
    for count in (200, 20_000):
        store = await SqliteStore.open(tmp_path / str(count))
        try:
            await store.write_batch([dataplane(f"x-{i}", "zone-2") for i in range(count)], [])
            side = await global_receive_side(store, REG, "zone-1", ["Dataplane"])
            upserts = [dataplane(f"dp-{i}") for i in range(17)]
            start = time.process_time()
            await side.apply(ChangeSet("Dataplane", upserts))
            timings.append(time.process_time() - start)
        finally:
            await store.close()
    small, large = timings
    assert large < max(10 * small, 0.1), timings


async def test_a_full_list_reads_its_rows_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        await store.write_batch([dataplane(f"d{i}", f"zone-{i % 3}") for i in range(30)], [])
        page = await store.list("Dataplane", labels={LABEL_ZONE: "zone-1"})
        assert (page.total, len(page.items), page.next_offset) == (10, 10, None)
        paged = await store.list("Dataplane", labels={LABEL_ZONE: "zone-1"}, size=4)
        assert (paged.total, len(paged.items)) == (10, 4)
        rest = await store.list(
            "Dataplane", labels={LABEL_ZONE: "zone-1"}, offset=paged.next_offset
        )
        assert (rest.total, len(rest.items)) == (10, 6)  # total counts every match, as before
    finally:
        await store.close()
