"""An in-process API on the memory store, served on a loopback port by aiohttp's TestServer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.base import ResourceStore
from meshfed.store.memory import MemoryStore
from tests.auth_support import admin_headers
from tests.inprocess_federation import SqliteApi, sqlite_api_on


@dataclass
class Api:
    client: TestClient[Any, Any]
    store: ResourceStore
    ctx: ApiContext

    async def put(self, path: str, body: Any, **kwargs: Any) -> ClientResponse:
        return await self.client.put(path, json=body, **kwargs)

    async def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        resp = await self.client.request(method, path, **kwargs)
        return resp.status, await resp.json()

    async def snapshot(self) -> tuple[int, list[tuple[str, str, str, str, Any, Any]]]:
        """Everything stored (with versions) and the store revision: proof nothing changed."""
        rows = []
        for desc in self.ctx.registry:
            page = await self.store.list(desc.name)
            rows += [
                (r.type, r.mesh, r.name, r.meta.version, r.meta.labels, r.spec) for r in page.items
            ]
        return await self.store.revision(), rows


async def start_api(
    mode: Mode = Mode.GLOBAL, *, anonymous: bool = False, **ctx_args: Any
) -> tuple[Api, TestClient[Any, Any]]:
    """The client sends the store's bootstrap admin token unless `anonymous`."""
    store = MemoryStore()
    headers = await admin_headers(store)
    ctx = ApiContext(store=store, registry=default_registry(), mode=mode, ready=True, **ctx_args)
    client: TestClient[Any, Any] = TestClient(
        TestServer(build_app(ctx), host="127.0.0.1"), headers={} if anonymous else headers
    )
    await client.start_server()
    return Api(client, store, ctx), client


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    a, client = await start_api()
    try:
        yield a
    finally:
        await client.close()
        await a.store.close()


def mesh(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "Mesh", "name": name, **fields}


def timeout(name: str, mesh_name: str = "default", **extra: Any) -> dict[str, Any]:
    """A MeshTimeout in the shape of Kuma's documentation example."""
    return {
        "type": "MeshTimeout",
        "name": name,
        "mesh": mesh_name,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "default": {"idleTimeout": "20s", "connectionTimeout": "2s"},
                }
            ],
        },
        **extra,
    }


def fields(body: dict[str, Any]) -> list[str]:
    return [p["field"] for p in body["invalid_parameters"]]


def assert_std_error(body: Any, status: int) -> None:
    assert body["type"] == "/std-errors"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str)
    assert isinstance(body["invalid_parameters"], list)


@pytest.fixture
async def sqlite_api(tmp_path: Path) -> AsyncIterator[SqliteApi]:
    """A global-mode API alone (no KDS) on a SQLite store: requests interleave as in
    production (tests/inprocess_federation.py)."""
    async with sqlite_api_on(tmp_path / "data") as api:
        yield api
