"""An in-process global control plane (SQLite store, real API and KDS sockets on loopback),
in-process zone KDS clients, and a global-mode API alone on SQLite: for the tests of zone
deletion and zone instances (tests/unit/federation) and of concurrent API writes
(tests/unit/api). The fixtures that use them are in those folders' conftest.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from global_cp.app import GlobalControlPlane
from global_cp.settings import CONFIG
from meshfed.api.app import build_app
from meshfed.api.context import ApiContext
from meshfed.auth.tokens import ZoneScope
from meshfed.auth.zone_tokens import ZoneTokenRequest, issue_zone_token
from meshfed.config import Address
from meshfed.kds.tls import CA_FILE_NAME, ClientTls, read_ca_file
from meshfed.resources.descriptors import Mode
from meshfed.resources.types import default_registry
from meshfed.store.base import ResourceStore
from meshfed.store.memory import MemoryStore
from meshfed.store.sqlite import SqliteStore
from tests.auth_support import ADMIN_TOKEN_FILE, admin_headers, bearer
from tests.support import free_port
from zone_cp.kds import ZoneKds

FAST = ["--zone-health-interval", "100ms", "--zone-offline-timeout", "2s"]


@dataclass
class Global:
    cp: GlobalControlPlane
    http: aiohttp.ClientSession
    base: str

    @property
    def store(self) -> ResourceStore:
        assert self.cp.store is not None
        return self.cp.store

    @property
    def kds(self) -> Address:
        assert self.cp.federation is not None and self.cp.federation.address is not None
        return self.cp.federation.address

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body) as resp:
            return resp.status, await resp.json()


async def start_global(data_dir: Path, *extra: str) -> Global:
    argv = ["--api-address", f"127.0.0.1:{free_port()}", "--kds-address", "127.0.0.1:0"]
    token_file = data_dir / ADMIN_TOKEN_FILE
    argv += ["--admin-token-file", str(token_file)]
    _, settings = CONFIG.load([*argv, "--data-dir", str(data_dir), *FAST, *extra], env={})
    cp = GlobalControlPlane(settings)
    await cp.start()
    address = cp.api_address()
    # Written before start() returns; every call is the admin's.
    http = aiohttp.ClientSession(headers=bearer(token_file.read_text().strip()))
    return Global(cp, http, f"http://{address.host}:{address.port}")


async def stop_global(g: Global) -> None:
    await g.http.close()
    await g.cp.stop()


@contextlib.asynccontextmanager
async def zone_kds(
    g: Global, zone: str, store: ResourceStore | None = None, targets: Sequence[Address] = ()
) -> AsyncIterator[ZoneKds]:
    """A zone's KDS client (over a memory store unless given one), stopped on exit."""
    kds = ZoneKds(
        store or MemoryStore(),
        default_registry(),
        zone,
        list(targets) or [g.kds],
        max_message_bytes=10 * 1024 * 1024,
        reconnect_max=0.3,
        stale_timeout=3.0,
        tls=ClientTls(read_ca_file(g.cp.settings.data_dir / CA_FILE_NAME)),
        token_file=await zone_token_file(g, zone),
    )
    await kds.start()
    try:
        yield kds
    finally:
        await kds.stop()


async def zone_token_file(g: Global, zone: str) -> Path:
    """A fresh zone token (scope kds) for `zone`, issued by the global, in a file."""
    request = ZoneTokenRequest(zone, (ZoneScope.KDS,), dt.timedelta(hours=1))
    path = g.cp.settings.data_dir.parent / f"{zone}-{uuid.uuid4().hex[:8]}.token"
    path.write_text(await issue_zone_token(g.store, request))
    return path


SqliteApi = tuple[SqliteStore, TestClient[Any, Any]]  # the store and a client of its API


@contextlib.asynccontextmanager
async def sqlite_api_on(data_dir: Path) -> AsyncIterator[SqliteApi]:
    """A global-mode API alone (no KDS) on a SQLite store."""
    # SQLite, not memory: its calls really suspend, so requests interleave as in production.
    store = await SqliteStore.open(data_dir)
    ctx = ApiContext(store=store, registry=default_registry(), mode=Mode.GLOBAL, ready=True)
    client: TestClient[Any, Any] = TestClient(
        TestServer(build_app(ctx), host="127.0.0.1"), headers=await admin_headers(store)
    )
    await client.start_server()
    try:
        yield store, client
    finally:
        await client.close()
        await store.close()
