from __future__ import annotations

from pathlib import Path

import pytest

from meshfed.store.factory import open_store
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import DB_FILE, SqliteStore


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
