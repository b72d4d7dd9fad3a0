"""Replica presence on etcd, and what two replicas sharing one store must get right."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aetcd import rpc

from global_cp.app import create_default_mesh
from meshfed.ha.leader import SoleElection
from meshfed.ha.presence import EtcdReplicas, SoleReplica, for_store
from meshfed.kds.naming import types_global_to_zone
from meshfed.kds.views import global_mirror
from meshfed.resources.codec import resource_from_dict
from meshfed.resources.model import Key
from meshfed.resources.types import default_registry
from meshfed.store.etcd import EtcdStore
from meshfed.store.etcd_lease import LeaderElection
from meshfed.store.memory import MemoryStore
from tests.support import async_wait_until


async def _true(value: bool) -> bool:
    return value


async def test_presence_comes_and_goes_with_each_replica(etcd_stores: list[EtcdStore]) -> None:
    a_store, b_store = etcd_stores
    a = EtcdReplicas(a_store.connection, a_store.prefix, "a", ttl=2, info={"hostname": "h1"})
    b = EtcdReplicas(b_store.connection, b_store.prefix, "b", ttl=2)
    await a.start()
    await b.start()
    try:
        assert await a.alive() == frozenset({"a", "b"})
        described = {r["instanceId"]: r for r in await b.describe()}
        assert described["a"]["hostname"] == "h1" and described["b"]["instanceId"] == "b"
        await b.stop()  # a clean stop removes the key at once (the lease is revoked)
        await async_wait_until(
            lambda: _alive_is(a, frozenset({"a"})), timeout=5, what="b's presence gone"
        )
    finally:
        await a.stop()
        await b.stop()


async def _alive_is(replicas: EtcdReplicas, want: frozenset[str]) -> bool:
    return await replicas.alive() == want


async def test_a_replica_whose_presence_lapsed_registers_again(
    etcd_stores: list[EtcdStore],
) -> None:
    """As after a partition longer than the TTL: the key expired, the replica lives on."""
    store = etcd_stores[0]
    a = EtcdReplicas(store.connection, store.prefix, "a", ttl=2)
    await a.start()
    try:
        assert a.registrations == 1
        lease = a._lease
        assert lease is not None
        await store.connection.call(
            lambda s: s.lease.LeaseRevoke,
            rpc.LeaseRevokeRequest(ID=lease.id),
            idempotent=True,
            what="revoke",
        )
        await async_wait_until(lambda: _true(a.registrations == 2), timeout=5, what="again")
        assert await a.alive() == frozenset({"a"})
    finally:
        await a.stop()


async def test_the_store_decides_between_etcd_presence_and_a_sole_replica(
    etcd_stores: list[EtcdStore], tmp_path: Path
) -> None:
    replicas, election = for_store(etcd_stores[0], "x", ttl=3, role="global")
    assert isinstance(replicas, EtcdReplicas) and isinstance(election, LeaderElection)
    assert election.ttl == 3
    sole, election2 = for_store(MemoryStore(), "x", ttl=3, role="global")
    assert isinstance(sole, SoleReplica) and isinstance(election2, SoleElection)
    assert await sole.alive() == frozenset({"x"}) and (await sole.describe())[0]["instanceId"]


async def test_two_replicas_starting_together_create_the_default_mesh_once(
    etcd_stores: list[EtcdStore],
) -> None:
    registry = default_registry()
    created = await asyncio.gather(*(create_default_mesh(s, registry) for s in etcd_stores))
    assert sorted(created) == [False, True]
    assert (await etcd_stores[1].list("Mesh")).total == 1
    # Later starts (a restart, a third replica) never create it again.
    assert not await create_default_mesh(etcd_stores[0], registry)


async def test_each_replicas_mirror_follows_writes_made_through_the_other(
    etcd_stores: list[EtcdStore],
) -> None:
    """What makes a policy written through replica A reach zones connected to replica B."""
    registry = default_registry()
    a, b = etcd_stores
    mirror = global_mirror(b, types_global_to_zone(registry))
    await mirror.start()
    try:
        policy = resource_from_dict(
            {
                "type": "MeshTimeout",
                "name": "t1",
                "mesh": "default",
                "spec": {
                    "targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5s"}}],
                },
            },
            registry,
        )
        stored = await a.create(policy)
        key = Key("default", "t1")
        await async_wait_until(
            lambda: _true(mirror.get("MeshTimeout", key) is not None), what="mirrored"
        )
        got = mirror.get("MeshTimeout", key)
        assert got is not None and got[0].meta.version == stored.meta.version
        await a.delete("MeshTimeout", "default", "t1")
        await async_wait_until(
            lambda: _true(mirror.get("MeshTimeout", key) is None), what="removal mirrored"
        )
    finally:
        await mirror.stop()
