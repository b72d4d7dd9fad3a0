"""Which global-cp replicas are alive: the presence of each one, kept by a lease.

A zone's streams end on one replica; the other replicas learn about the zone from its stored
ZoneInsight, whose newest subscription names the replica holding the streams. That is only
true while that replica lives: a replica that was killed never writes "disconnected". So each
replica keeps a key `<prefix>/global/replicas/<instance id>` attached to its own lease; when
the replica dies the lease expires and the key goes. A subscription held by a replica that
has no key any more is over (`global_cp.zone_liveness`).

On SQLite and memory stores there is one process: `SoleReplica`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Protocol

from aetcd import rpc

from meshfed.ha.leader import Election, SoleElection
from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store._etcd_keys import prefix_range_end
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.etcd import EtcdStore
from meshfed.store.etcd_lease import LeaderElection, Lease

log = logging.getLogger("global_cp.replicas")

CACHE_SECONDS = 0.2  # an overview of many zones asks once, not once per zone
RETRY_DELAY = 0.5


class Replicas(Protocol):
    identity: str
    # Bumped each time this replica (re)registers: its presence may have lapsed meanwhile and
    # the leader may have marked its zones offline, so it writes their insights again.
    registrations: int

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def alive(self) -> frozenset[str]:
        """Instance ids of the live replicas; raises StoreError when it cannot tell."""
        ...

    async def describe(self) -> list[dict[str, Any]]: ...


class SoleReplica:
    def __init__(self, identity: str, info: dict[str, Any] | None = None) -> None:
        self.identity = identity
        self.registrations = 1
        self._info = {"instanceId": identity, **(info or {})}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def alive(self) -> frozenset[str]:
        return frozenset({self.identity})

    async def describe(self) -> list[dict[str, Any]]:
        return [self._info]


class EtcdReplicas:
    def __init__(
        self,
        conn: EtcdConnection,
        root: str,
        identity: str,
        *,
        ttl: int,
        info: dict[str, Any] | None = None,
    ) -> None:
        self._conn = conn
        self._prefix = f"{root.rstrip('/')}/global/replicas/".encode()
        self.identity = identity
        self.registrations = 0
        self._ttl = ttl
        self._info = {"instanceId": identity, "since": time.time(), **(info or {})}
        self._lease: Lease | None = None
        self._task: asyncio.Task[None] | None = None
        self._cache: tuple[float, list[dict[str, Any]]] | None = None

    @property
    def key(self) -> bytes:
        return self._prefix + self.identity.encode()

    async def start(self) -> None:
        """Registers once (a replica that cannot reach etcd does not start), then keeps it."""
        await self._register()
        self._task = asyncio.create_task(self._keep(), name="replica-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._lease is not None:
            await self._lease.revoke()  # the key goes now, not at expiry
            self._lease = None

    async def alive(self) -> frozenset[str]:
        return frozenset(str(r.get("instanceId")) for r in await self.describe())

    async def describe(self) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._cache is not None and loop.time() - self._cache[0] < CACHE_SECONDS:
            return self._cache[1]
        resp = await self._conn.range(
            rpc.RangeRequest(key=self._prefix, range_end=prefix_range_end(self._prefix)),
            "replica list",
        )
        found: list[dict[str, Any]] = []
        for kv in resp.kvs:
            identity = kv.key[len(self._prefix) :].decode(errors="replace")
            try:
                info = json.loads(kv.value)
            except ValueError:
                info = {}
            found.append({**(info if isinstance(info, dict) else {}), "instanceId": identity})
        self._cache = (loop.time(), found)
        return found

    async def _register(self) -> None:
        lease = await Lease.grant(self._conn, self._ttl)
        try:
            await self._conn.txn(
                rpc.TxnRequest(
                    success=[
                        rpc.RequestOp(
                            request_put=rpc.PutRequest(
                                key=self.key, value=json.dumps(self._info).encode(), lease=lease.id
                            )
                        )
                    ]
                ),
                "replica registration",
            )
        except BaseException:
            with contextlib.suppress(StoreError):
                await lease.revoke()
            raise
        self._lease = lease
        self._cache = None
        self.registrations += 1
        log.info("replica %s registered (lease %x, TTL %ds)", self.identity, lease.id, self._ttl)

    async def _keep(self) -> None:
        while True:
            assert self._lease is not None
            await self._lease.lost.wait()
            log.warning("replica %s: presence lease lost; registering again", self.identity)
            while True:
                try:
                    await self._register()
                    break
                except StoreError as exc:
                    log.warning("replica %s cannot register: %s", self.identity, exc)
                    await asyncio.sleep(RETRY_DELAY)


def for_store(
    store: ResourceStore, identity: str, *, ttl: int, key: str, info: dict[str, Any] | None = None
) -> tuple[Replicas, Election]:
    """Presence and election fitting the store: through etcd when it is shared, else sole.

    `key` names the election under the store's prefix (e.g. "global/leader").
    """
    if isinstance(store, EtcdStore):
        replicas: Replicas = EtcdReplicas(
            store.connection, store.prefix, identity, ttl=ttl, info=info
        )
        election: Election = LeaderElection(
            store.connection, f"{store.prefix}/{key}", identity, ttl=ttl
        )
        return replicas, election
    return SoleReplica(identity, info), SoleElection(identity)
