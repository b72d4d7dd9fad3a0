"""Fixtures of the dataplane config server tests (test_dpserver*.py); the helpers they use are
in dpserver_support. A test module's own fixture of the same name takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshfed.store.memory import MemoryStore
from tests.unit.mesh_control.dpserver_support import Proxy, Zone, start_zone, with_mesh_ca
from tests.unit.policy.factories import MESH_REF, frm, mtp


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    """A mesh with its CA and an allow-all permission."""
    s = await with_mesh_ca(MemoryStore())
    await s.create(mtp("allow-all", MESH_REF, from_=[frm(MESH_REF, "Allow")]))
    yield s
    await s.close()


@pytest.fixture
async def zone(store: MemoryStore) -> AsyncIterator[Zone]:
    async for z in start_zone(store):
        yield z


@pytest.fixture
async def proxies() -> AsyncIterator[list[Proxy]]:
    opened: list[Proxy] = []
    yield opened
    for p in opened:
        await p.close()
