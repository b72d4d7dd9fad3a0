"""Which replicas of a control plane are alive: the presence of each one, kept by a lease.

A stream (a zone's KDS streams at the global, a proxy's config stream at a zone) ends on one
replica; the other replicas learn about it from a stored insight whose newest subscription
names the replica holding it. That is only true while that replica lives: a replica that was
killed never writes "disconnected". So each replica keeps a key
`<prefix>/<role>/replicas/<instance id>` (role `global` or `zone-cp`) attached to its own
lease; when the replica dies the lease expires and the key goes. A subscription held by a
replica that has no key any more is over: the leader closes it (`global_cp.zone_liveness`
for zones, `zone_cp.dpsweep` for proxies).

On SQLite and memory stores there is one process: `SoleReplica`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aetcd import rpc

from meshfed.ha.leader import Election, SoleElection
from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store._etcd_keys import prefix_range_end
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.etcd import EtcdStore
from meshfed.store.etcd_lease import LeaderElection, Lease

log = logging.getLogger("meshfed.ha.presence")

CACHE_SECONDS = 0.2  # an overview of many zones asks once, not once per zone
RETRY_DELAY = 0.5
# A sweep reads everything it owns only when the set of live replicas changed since its last
# pass (that is when subscriptions become orphans), or when the last pass left something to
# retry, and anyway this often (a replica may have come and gone between two passes).
FULL_PASS_EVERY = 30.0


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
        role: str = "global",
    ) -> None:
        self._conn = conn
        self._prefix = f"{root.rstrip('/')}/{role}/replicas/".encode()
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
    store: ResourceStore,
    identity: str,
    *,
    ttl: int,
    role: str,
    info: dict[str, Any] | None = None,
) -> tuple[Replicas, Election]:
    """Presence and election fitting the store: through etcd when it is shared, else sole.

    `role` ("global", "zone-cp") names both under the store's prefix: the presence keys at
    `<role>/replicas/`, the election at `<role>/leader`.
    """
    if isinstance(store, EtcdStore):
        replicas: Replicas = EtcdReplicas(
            store.connection, store.prefix, identity, ttl=ttl, info=info, role=role
        )
        election: Election = LeaderElection(
            store.connection, f"{store.prefix}/{role}/leader", identity, ttl=ttl
        )
        return replicas, election
    return SoleReplica(identity, info), SoleElection(identity)


class DeadReplicaSweep:
    """The leader's job over what dead replicas held: `sweep(alive)` (the live replicas' ids,
    this one included) closes what the others left open and answers whether the pass was
    clean (False: something changed meanwhile, look again next run)."""

    def __init__(
        self,
        replicas: Replicas,
        sweep: Callable[[frozenset[str]], Awaitable[bool]],
        clock: Callable[[], float] = time.time,
        full_pass_every: float = FULL_PASS_EVERY,
    ) -> None:
        self._replicas = replicas
        self._sweep = sweep
        self._clock = clock
        self._full_pass_every = full_pass_every
        self.passes = 0  # full passes, over this replica's life
        self._last: tuple[frozenset[str], float] | None = None  # alive set, time of a clean pass

    async def run(self) -> None:
        alive = await self._replicas.alive() | {self._replicas.identity}
        now = self._clock()
        last = self._last
        if last is not None and last[0] == alive and now - last[1] < self._full_pass_every:
            return
        self.passes += 1
        self._last = (alive, now) if await self._sweep(alive) else None
