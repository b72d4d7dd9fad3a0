"""etcd-only behaviour, against real etcd processes: replicas sharing a prefix, a watch that
survives an etcd restart, compaction, large mesh deletions, TLS with users, failures."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from aetcd import rpc

from meshfed.resources.model import Meta, Resource
from meshfed.store.base import (
    CompactedError,
    ConflictError,
    EventKind,
    StoreError,
    WatchEvent,
)
from meshfed.store.etcd import EtcdStore
from meshfed.store.factory import open_store
from tests.support import free_port
from tests.unit.store.etcd_server import EtcdServer, TlsFiles, make_tls_files

POLICY = "MeshTimeout"
_prefixes = itertools.count()


def mk(name: str, mesh: str = "default", type_: str = POLICY, n: int = 0) -> Resource:
    return Resource(type_, Meta(name=name, mesh=mesh), {"n": n})


def fresh_prefix() -> str:
    return f"/meshfed-etcd-test/{next(_prefixes)}"


async def take(it: AsyncIterator[WatchEvent], count: int, timeout: float = 15.0) -> list[Any]:
    async def collect() -> list[WatchEvent]:
        return [await anext(it) for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def nothing_pending(it: AsyncIterator[WatchEvent]) -> bool:
    try:
        event = await asyncio.wait_for(anext(it), 0.2)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected event {event}")


class RawEtcd:
    """Direct gRPC access, to do what the store never does (compact, corrupt, enable auth)."""

    def __init__(self, server: EtcdServer, tls: TlsFiles | None = None) -> None:
        target = f"127.0.0.1:{server.client_port}"
        if tls is None:
            self.channel = grpc.aio.insecure_channel(target)
        else:
            creds = grpc.ssl_channel_credentials(
                tls.ca.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
            )
            self.channel = grpc.aio.secure_channel(target, creds)
        self.kv = rpc.KVStub(self.channel)
        self.auth = rpc.AuthStub(self.channel)

    async def __aenter__(self) -> RawEtcd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close(grace=None)


@pytest.fixture
async def stores(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdStore]]:
    """Stores opened by a test (closed afterwards)."""
    opened: list[EtcdStore] = []
    yield opened
    for store in opened:
        await store.close()


async def open_on(
    opened: list[EtcdStore], server: EtcdServer, prefix: str, **options: Any
) -> EtcdStore:
    store = await EtcdStore.open(server.endpoint, prefix=prefix, **options)
    opened.append(store)
    return store


# --- replicas sharing one prefix -----------------------------------------------------------


async def test_four_writers_on_one_key_lose_no_update(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    """Four independent clients (as four replicas would be) read-modify-write one counter."""
    prefix = fresh_prefix()
    writers = [await open_on(stores, etcd_server, prefix) for _ in range(4)]
    await writers[0].create(mk("counter"))
    watch = writers[3].watch(from_revision=await writers[3].revision())
    per_writer = 25

    async def increment(store: EtcdStore) -> int:
        conflicts = 0
        for _ in range(per_writer):
            while True:
                current = await store.get(POLICY, "default", "counter")
                await asyncio.sleep(0)
                bumped = mk("counter", n=current.spec["n"] + 1)
                try:
                    await store.update(bumped, expected_version=current.meta.version)
                    break
                except ConflictError:
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(increment(s) for s in writers))
    assert sum(conflicts) > 0  # they really raced
    total = 4 * per_writer
    for store in writers:  # every replica reads the same value and version
        final = await store.get(POLICY, "default", "counter")
        assert final.spec["n"] == total
        assert final.meta.version == str(await store.revision()) == str(total + 1)
    events = await take(watch, total)
    assert [e.resource.spec["n"] for e in events] == list(range(1, total + 1))
    assert [e.revision for e in events] == list(range(2, total + 2))
    assert await nothing_pending(watch)


async def test_replicas_see_each_others_writes(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    prefix = fresh_prefix()
    a = await open_on(stores, etcd_server, prefix)
    b = await open_on(stores, etcd_server, prefix)
    watch = b.watch(from_revision=0)
    created = await a.create(mk("web"))
    assert await b.get(POLICY, "default", "web") == created
    event = (await take(watch, 1))[0]
    assert (event.kind, event.resource, event.revision) == (EventKind.PUT, created, 1)
    other = await open_on(stores, etcd_server, fresh_prefix())  # another prefix: isolated
    assert (await other.list(POLICY)).total == 0 and await other.revision() == 0


# --- watch across an etcd restart ----------------------------------------------------------


@pytest.mark.etcd  # starts an etcd of its own
async def test_watch_survives_etcd_restart(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data", tmp_path, name="etcd-restart")
    server.start()
    store: EtcdStore | None = None
    try:
        store = await EtcdStore.open(server.endpoint, prefix="/restart")
        watch = store.watch(from_revision=0)
        for i in range(5):
            await store.create(mk(f"before-{i}"))
        before = await take(watch, 5)

        server.restart()  # SIGTERM, then the same data directory and ports

        # These writes race with the watch reconnecting: whether they happen before or after
        # its new stream starts, each must arrive exactly once.
        for i in range(5):
            await store.create(mk(f"after-{i}"))
        await store.update(mk("before-0", n=1))
        await store.delete(POLICY, "default", "before-1")
        after = await take(watch, 7)
        events = before + after
        assert [e.revision for e in events] == list(range(1, 13))
        assert [(e.kind, e.resource.name) for e in after] == [
            *[(EventKind.PUT, f"after-{i}") for i in range(5)],
            (EventKind.PUT, "before-0"),
            (EventKind.DELETE, "before-1"),
        ]
        assert after[-1].resource.meta.version == "2"  # the deleted resource's last state
        assert await nothing_pending(watch)
        assert await store.revision() == 12
    finally:
        if store is not None:
            await store.close()
        server.stop()


# --- compaction ------------------------------------------------------------------------------


async def test_watch_from_compacted_revision(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    store = await open_on(stores, etcd_server, fresh_prefix())
    for i in range(6):
        await store.create(mk(f"r{i}"))
    head = await store.revision()
    async with RawEtcd(etcd_server) as raw:
        now = (await raw.kv.Range(rpc.RangeRequest(key=b"x"))).header.revision
        await raw.kv.Compact(rpc.CompactionRequest(revision=now - 2, physical=True))
    # etcd answers "compacted" when the watch starts: the first iteration raises.
    with pytest.raises(CompactedError, match="compacted") as info:
        await take(store.watch(from_revision=1), 1)
    assert info.value.requested == 1 and info.value.compacted_through == head - 3
    # Now the store knows: the call itself raises, like the other backends.
    with pytest.raises(CompactedError):
        store.watch(from_revision=1)
    kept = await take(store.watch(from_revision=head - 3), 3)
    assert [e.resource.name for e in kept] == ["r3", "r4", "r5"]


# --- large deletions, batches ----------------------------------------------------------------


async def test_delete_mesh_scoped_beyond_txn_limits(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    # max_txn_ops=2 forces one transaction per type, as a cluster with many types would need.
    store = await open_on(stores, etcd_server, fresh_prefix(), max_txn_ops=2)
    types = ["MeshTimeout", "MeshRetry", "MeshHealthCheck"]
    for type_ in types:
        for i in range(100):  # 300 resources: far more than etcd's 128 operations per txn
            await store.create(mk(f"s{i}", mesh="m1", type_=type_))
        await store.create(mk("keep", mesh="m10", type_=type_))
    await store.create(mk("g", mesh="", type_="Mesh"))
    watch = store.watch()
    assert await store.delete_mesh_scoped("m1") == 300
    events = await take(watch, 300)
    assert {e.kind for e in events} == {EventKind.DELETE}
    assert len({e.revision for e in events}) == 3  # one revision per transaction
    for type_ in types:
        assert [r.mesh for r in (await store.list(type_)).items] == ["m10"]
    assert (await store.get("Mesh", "", "g")).name == "g"
    assert await store.delete_mesh_scoped("m1") == 0


# --- odd names, corrupt data, layout ---------------------------------------------------------


async def test_names_that_look_like_the_key_layout(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    store = await open_on(stores, etcd_server, fresh_prefix())
    odd = [("_", "a/b"), ("", "%2F"), ("m/1", "_"), ("m%", "x y"), ("m1", "é")]
    for mesh, name in odd:
        await store.create(mk(name, mesh=mesh))
    listed = await store.list(POLICY)
    assert [(r.mesh, r.name) for r in listed.items] == sorted(odd)
    for mesh, name in odd:
        assert (await store.get(POLICY, mesh, name)).key == (POLICY, mesh, name)
    assert [r.name for r in (await store.list(POLICY, "")).items] == ["%2F"]
    assert await store.delete_mesh_scoped("_") == 1
    assert (await store.list(POLICY, "")).total == 1


async def test_corrupt_value_is_reported_with_its_key(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    prefix = fresh_prefix()
    store = await open_on(stores, etcd_server, prefix)
    await store.create(mk("good"))
    async with RawEtcd(etcd_server) as raw:
        key = f"{prefix}/resources/{POLICY}/default/bad".encode()
        await raw.kv.Put(rpc.PutRequest(key=key, value=b'{"labels": 1}'))
    with pytest.raises(StoreError, match=r"default/bad.*invalid data.*labels"):
        await store.get(POLICY, "default", "bad")
    with pytest.raises(StoreError, match="invalid data"):
        await store.list(POLICY)
    assert (await store.get(POLICY, "default", "good")).name == "good"


async def test_unknown_layout_is_refused(etcd_server: EtcdServer) -> None:
    prefix = fresh_prefix()
    async with RawEtcd(etcd_server) as raw:
        await raw.kv.Put(rpc.PutRequest(key=f"{prefix}/meta".encode(), value=b'{"layout": 9}'))
    with pytest.raises(StoreError, match="unknown layout"):
        await EtcdStore.open(etcd_server.endpoint, prefix=prefix)


# --- connections -----------------------------------------------------------------------------


async def test_unreachable_etcd_fails_clearly() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match=rf"cannot reach etcd at {dead}.*0.3s"):
        await EtcdStore.open(dead, timeout=0.3)


async def test_uses_the_endpoint_that_answers(
    etcd_server: EtcdServer, stores: list[EtcdStore]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = await EtcdStore.open(f"{dead},{etcd_server.endpoint}", prefix=fresh_prefix())
    stores.append(store)
    assert (await store.create(mk("a"))).meta.version == "1"


async def test_factory_opens_etcd(etcd_server: EtcdServer) -> None:
    store = await open_store("etcd", None, endpoints=[etcd_server.endpoint], prefix="/factory")
    try:
        assert isinstance(store, EtcdStore)
    finally:
        await store.close()
    with pytest.raises(ValueError, match="needs endpoints"):
        await open_store("etcd", None)


async def _enable_auth(server: EtcdServer, tls: TlsFiles, password: str) -> None:
    async with RawEtcd(server, tls) as raw:
        await raw.auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password))
        await raw.auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await raw.auth.AuthEnable(rpc.AuthEnableRequest())


@pytest.mark.etcd  # starts an etcd of its own
async def test_tls_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tls = make_tls_files(tmp_path / "pki")
    server = EtcdServer(tmp_path / "data", tmp_path, name="etcd-tls", tls=tls)
    server.start()
    files: dict[str, Any] = {
        "ca_file": tls.ca,
        "cert_file": tls.client_cert,
        "key_file": tls.client_key,
    }
    store: EtcdStore | None = None
    try:
        await _enable_auth(server, tls, "s3cret")
        with pytest.raises(StoreError, match="rejected user 'root'"):
            await EtcdStore.open(server.endpoint, username="root", password="wrong", **files)
        with pytest.raises(StoreError, match="cannot reach etcd"):  # no client certificate
            await EtcdStore.open(
                server.endpoint, username="root", password="s3cret", ca_file=tls.ca, timeout=0.5
            )
        caplog.set_level(logging.DEBUG, "meshfed.store.etcd")
        store = await EtcdStore.open(server.endpoint, username="root", password="s3cret", **files)
        watch = store.watch()
        await store.create(mk("a"))
        # A restart forgets every token: the store signs in again, the watch resumes.
        server.restart()
        await store.update(mk("a", n=1))
        events = await take(watch, 2)
        assert [e.resource.spec["n"] for e in events] == [0, 1]
        assert caplog.text.count("signed in to etcd") >= 2
    finally:
        if store is not None:
            await store.close()
        server.stop()
