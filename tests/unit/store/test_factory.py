from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.store.factory import open_store
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import DB_FILE, SqliteStore
from zone_cp.dpregistration import PROXY_TYPES


async def test_memory() -> None:
    store = await open_store("memory", None)
    assert isinstance(store, MemoryStore)
    await store.close()


async def test_sqlite(tmp_path: Path) -> None:
    store = await open_store("sqlite", tmp_path / "d")
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "d" / DB_FILE).exists()
    finally:
        await store.close()


async def test_errors() -> None:
    with pytest.raises(ValueError, match="data directory"):
        await open_store("sqlite", None)
    with pytest.raises(ValueError, match=r"unknown store type 'etcd3'.*memory, sqlite"):
        await open_store("etcd3", None)


async def test_sqlite_key_index(tmp_path: Path) -> None:
    """zone-cp opens its store with the proxy types indexed (zone_cp.app; issue 19)."""
    store = await open_store("sqlite", tmp_path / "d", key_index=PROXY_TYPES)
    try:
        assert isinstance(store, SqliteStore)
        assert store._db.indexed == frozenset(PROXY_TYPES)
        assert await store.get_many([("Dataplane", "default", "dp-1")]) == {}
    finally:
        await store.close()
    memory = await open_store("memory", None, key_index=PROXY_TYPES)  # no thread to spare
    assert isinstance(memory, MemoryStore)
    await memory.close()
