"""Backends under the conformance suite: a new backend joins by adding one factory here."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from meshfed.store.base import ResourceStore
from meshfed.store.etcd import EtcdStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore
from tests.unit.store.etcd_server import EtcdServer


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


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    async def opener(**options: Any) -> ResourceStore:
        return MemoryStore(**options)

    return StoreFactory("memory", opener, persistent=False)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    async def opener(**options: Any) -> ResourceStore:
        return await SqliteStore.open(tmp_path / "data", **options)

    return StoreFactory("sqlite", opener, persistent=True)


_prefixes = itertools.count()


def _etcd(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """One etcd per session; each test gets its own key prefix, so tests cannot see each other."""
    server: EtcdServer = request.getfixturevalue("etcd_server")
    prefix = f"/meshfed-test/{next(_prefixes)}"

    async def opener(**options: Any) -> ResourceStore:
        if "history" in options:
            pytest.skip(
                "etcd keeps its own history (the server's --auto-compaction-* flags, for the "
                "whole cluster), not a per-store count; replay from a compacted revision is "
                "tested in test_etcd.py by compacting through the etcd API"
            )
        return await EtcdStore.open(server.endpoint, prefix=prefix, **options)

    return StoreFactory("etcd", opener, persistent=True)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], StoreFactory]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "etcd": _etcd,
}


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd shared by the session (started on first use, stopped by PID at the end)."""
    root = tmp_path_factory.mktemp("etcd")
    server = EtcdServer(root / "data", root)
    server.start()
    yield server
    server.stop()


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.etcd) if name == "etcd" else name
        for name in sorted(FACTORIES)
    ]
)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    factory = FACTORIES[request.param](request, tmp_path)
    yield factory
    await factory.close_all()


@pytest.fixture
async def store(store_factory: StoreFactory) -> ResourceStore:
    return await store_factory.open()
