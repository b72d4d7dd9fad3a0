"""Backends under the conformance suite: a new backend joins by adding one factory here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from meshfed.store.base import ResourceStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore


@dataclass
class StoreFactory:
    """Opens stores of one backend; `persistent` ones reopen the same data on each `open`."""

    name: str
    opener: Callable[..., Awaitable[ResourceStore]]
    persistent: bool
    opened: list[ResourceStore] = field(default_factory=list)

    async def open(self, **options: Any) -> ResourceStore:
        """Options: history (events kept for replay), max_pending (per-watcher backlog)."""
        store = await self.opener(**options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


def _memory(tmp_path: Path) -> StoreFactory:
    async def opener(**options: Any) -> ResourceStore:
        return MemoryStore(**options)

    return StoreFactory("memory", opener, persistent=False)


def _sqlite(tmp_path: Path) -> StoreFactory:
    async def opener(**options: Any) -> ResourceStore:
        return await SqliteStore.open(tmp_path / "data", **options)

    return StoreFactory("sqlite", opener, persistent=True)


FACTORIES: dict[str, Callable[[Path], StoreFactory]] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(FACTORIES))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    factory = FACTORIES[request.param](tmp_path)
    yield factory
    await factory.close_all()


@pytest.fixture
async def store(store_factory: StoreFactory) -> ResourceStore:
    return await store_factory.open()
