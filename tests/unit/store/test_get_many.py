"""`get_many` on every backend: the resources at exactly the given keys, absent ones left out,
in as few reads as the backend allows (SQLite and etcd chunk large requests)."""

from __future__ import annotations

import pytest

from meshfed.store.base import ResourceStore, StoreKey
from tests.unit.store.test_conformance import OTHER_POLICY, POLICY, mk


async def test_get_many_returns_present_keys_only(store: ResourceStore) -> None:
    a = await store.create(mk("a"))
    b = await store.create(mk("b", "other"))
    c = await store.create(mk("c", type_=OTHER_POLICY))
    mesh = await store.create(mk("m", "", "Mesh"))
    keys: list[StoreKey] = [
        (POLICY, "default", "a"),
        (POLICY, "other", "b"),
        (OTHER_POLICY, "default", "c"),
        ("Mesh", "", "m"),
        (POLICY, "default", "absent"),
        (POLICY, "nowhere", "a"),
        (POLICY, "default", "a"),  # twice
    ]
    found = await store.get_many(keys)
    assert found == {a.key: a, b.key: b, c.key: c, mesh.key: mesh}
    assert await store.get_many([]) == {}
    # Copies: changing one changes nothing stored.
    found[a.key].spec["n"] = 99
    assert (await store.get(*a.key)).spec == a.spec


async def test_get_many_reads_more_keys_than_one_query_or_transaction_holds(
    store: ResourceStore,
) -> None:
    stored = await store.write_batch([mk(f"p{i:04}") for i in range(1200)], [])
    keys = [res.key for res in stored[::2]] + [(POLICY, "default", f"gone{i}") for i in range(300)]
    found = await store.get_many(keys)
    assert sorted(found) == sorted(res.key for res in stored[::2])
    assert all(found[res.key] == res for res in stored[::2])


async def test_get_many_refuses_an_invalid_key(store: ResourceStore) -> None:
    with pytest.raises(ValueError):
        await store.get_many([(POLICY, "default", "")])
