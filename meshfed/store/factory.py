"""Picks a store backend from configuration (`--store-type`, `MESHFED_STORE_TYPE`, ...)."""

from __future__ import annotations

from pathlib import Path

from meshfed.store.base import ResourceStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore

STORE_KINDS = ("memory", "sqlite")


async def open_store(kind: str, data_dir: Path | None) -> ResourceStore:
    """Opens a store of `kind`; `data_dir` is required by the persistent kinds."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        if data_dir is None:
            raise ValueError("the sqlite store needs a data directory (e.g. --data-dir)")
        return await SqliteStore.open(data_dir)
    raise ValueError(f"unknown store type {kind!r}; expected one of: {', '.join(STORE_KINDS)}")
