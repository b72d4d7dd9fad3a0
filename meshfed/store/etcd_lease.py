"""etcd leases kept alive over one long-lived stream, and a leader election built on them.

Why not `aetcd`'s `Lease.refresh()`: it opens a new LeaseKeepAlive stream for every refresh.
`Lease` opens one stream and writes a keepalive on it every third of the TTL, like etcd's Go
client; it opens another only when the connection breaks.

Safety rule: the holder counts its lease as lost at (time it SENT the last acknowledged
keepalive + TTL). etcd starts the TTL when it RECEIVES that keepalive, so the holder always
gives up first, and a leader stops acting before etcd can let anyone else win.

The election is a single key: the leader is whoever created it, with its lease attached.
Candidates try a create-if-absent transaction and, when it fails, wait for the key's deletion
(the leader resigned, or its lease expired because it died or hung) and try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from meshfed.aio import wait_for
from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store.base import StoreError

log = logging.getLogger("meshfed.store.etcd.lease")

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
_RETRY_DELAY = 0.1
# A revoke only saves waiting out the TTL (the lease expires on its own), so a stop with etcd
# unreachable gives up on it quickly instead of holding the process for the full call deadline.
REVOKE_TIMEOUT = 1.0


class Lease:
    """Granted by `Lease.grant`; `lost` is set once it can no longer be counted on."""

    def __init__(self, conn: EtcdConnection, lease_id: int, ttl: int, granted_at: float) -> None:
        self._conn = conn
        self.id = lease_id
        self.ttl = ttl
        self._expires_at = granted_at + ttl  # loop time
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.streams_opened = 0  # one per connection: a number to check, not a guess
        self._task = asyncio.get_running_loop().create_task(
            self._keep_alive(), name=f"etcd-lease-{lease_id:x}"
        )

    @classmethod
    async def grant(cls, conn: EtcdConnection, ttl: int) -> Lease:
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, got {ttl}")
        sent = asyncio.get_running_loop().time()
        resp = await conn.call(
            lambda s: s.lease.LeaseGrant,
            rpc.LeaseGrantRequest(TTL=ttl),
            idempotent=False,
            what="lease grant",
        )
        if resp.error:
            raise StoreError(f"etcd refused a lease: {resp.error}")
        return cls(conn, resp.ID, resp.TTL, sent)

    def remaining(self) -> float:
        """Seconds the lease is surely still valid (0 once lost)."""
        if self.lost.is_set():
            return 0.0
        return max(self._expires_at - asyncio.get_running_loop().time(), 0.0)

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()
            log.warning("etcd lease %x lost: %s", self.id, reason)

    async def _keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.ttl / 3
        while True:
            call: grpc.aio.StreamStreamCall[Any, Any] | None = None
            try:
                stubs = await self._conn.ready(self._expires_at)
                call = stubs.lease.LeaseKeepAlive(metadata=self._conn.metadata)
                self.streams_opened += 1
                while True:
                    sent = loop.time()
                    await call.write(rpc.LeaseKeepAliveRequest(ID=self.id))
                    resp: Any = await wait_for(call.read(), self._expires_at - sent)
                    if resp is _EOF:
                        raise ConnectionError("etcd closed the keepalive stream")
                    if resp.TTL <= 0:
                        self._lose("etcd says it expired")
                        return
                    self._expires_at = sent + resp.TTL
                    await asyncio.sleep(interval)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAUTHENTICATED and self._conn.has_credentials:
                    with contextlib.suppress(StoreError):
                        await self._conn.authenticate()
                log.info("etcd lease %x keepalive interrupted: %s", self.id, exc.details())
            except (ConnectionError, StoreError, TimeoutError) as exc:
                log.info("etcd lease %x keepalive interrupted: %s", self.id, exc or "timeout")
            except asyncio.InvalidStateError:
                # grpc raises this (not an AioRpcError) on a write to a stream etcd has already
                # ended; it used to end this task, so the lease lapsed with nobody told.
                log.info("etcd lease %x keepalive interrupted: the stream ended", self.id)
            finally:
                if call is not None:
                    call.cancel()
            if loop.time() >= self._expires_at:
                self._lose(f"not refreshed within its TTL of {self.ttl}s")
                return
            self._conn.rotate()
            await asyncio.sleep(min(_RETRY_DELAY, max(self._expires_at - loop.time(), 0)))

    async def revoke(self) -> None:
        """Stops refreshing and deletes the lease (and its keys) now rather than at expiry."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._lose("revoked")
        with contextlib.suppress(StoreError):  # already gone is fine
            await self._conn.call(
                lambda s: s.lease.LeaseRevoke,
                rpc.LeaseRevokeRequest(ID=self.id),
                idempotent=True,
                what="lease revoke",
                timeout=REVOKE_TIMEOUT,
            )


class LeaderElection:
    """Campaign for `key`; while leader, `lost` tells when to stop the singleton work."""

    def __init__(
        self, conn: EtcdConnection, key: str | bytes, identity: str, *, ttl: int = 10
    ) -> None:
        if not identity:
            raise ValueError("a candidate needs a non-empty identity")
        self._conn = conn
        self._key = key.encode() if isinstance(key, str) else key
        self.identity = identity
        self.ttl = ttl
        self.lease: Lease | None = None
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._created: int | None = None  # create_revision of our key while leader
        self._observer: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """Also checks the clock: a process that was paused past its TTL is told the truth
        at once, before its tasks have run and noticed."""
        return (
            self._created is not None
            and not self.lost.is_set()
            and self.lease is not None
            and self.lease.remaining() > 0
        )

    async def leader(self) -> str | None:
        """The identity of the current leader, None if there is none."""
        resp = await self._conn.range(rpc.RangeRequest(key=self._key), "leader lookup")
        return resp.kvs[0].value.decode() if resp.kvs else None

    async def campaign(self) -> None:
        """Returns once this candidate is the leader (cancel it to give up)."""
        if self.is_leader:
            return
        while True:
            if self.lease is None or self.lease.lost.is_set():
                self.lease = await Lease.grant(self._conn, self.ttl)
            resp = await self._conn.txn(
                rpc.TxnRequest(
                    compare=[
                        rpc.Compare(
                            key=self._key,
                            target=rpc.Compare.CREATE,
                            result=rpc.Compare.EQUAL,
                            create_revision=0,
                        )
                    ],
                    success=[
                        rpc.RequestOp(
                            request_put=rpc.PutRequest(
                                key=self._key, value=self.identity.encode(), lease=self.lease.id
                            )
                        )
                    ],
                    failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=self._key))],
                ),
                "campaign",
            )
            if resp.succeeded:
                self._elected(resp.header.revision)
                return
            kvs = resp.responses[0].response_range.kvs
            if kvs and kvs[0].lease == self.lease.id:  # ours already (an earlier attempt)
                self._elected(kvs[0].create_revision)
                return
            if kvs:
                await self._changed(kvs[0].create_revision, kvs[0].mod_revision + 1)

    def _elected(self, created: int) -> None:
        self._created = created
        self.lost.clear()
        self.lost_reason = ""
        log.info("%s is the leader for %s", self.identity, self._key.decode(errors="replace"))
        self._observer = asyncio.get_running_loop().create_task(self._observe(created))

    async def _observe(self, created: int) -> None:
        assert self.lease is not None
        lease_lost = asyncio.ensure_future(self.lease.lost.wait())
        key_changed = asyncio.ensure_future(self._changed(created, created + 1))
        try:
            await asyncio.wait({lease_lost, key_changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lease_lost.cancel()
            key_changed.cancel()
        if self.lease.remaining() == 0:  # checked first: the cause when both happened
            reason = f"lease lost ({self.lease.lost_reason or 'not refreshed within its TTL'})"
        else:
            reason = "the leader key was deleted or replaced"
        self._created = None
        self.lost_reason = reason
        self.lost.set()
        log.warning("%s is no longer the leader: %s", self.identity, reason)

    async def _changed(self, created: int, from_revision: int) -> None:
        """Returns once the key no longer holds the value created at `created`."""
        while True:
            call: grpc.aio.StreamStreamCall[Any, Any] | None = None
            try:
                call = await self._conn.open_watch()
                create = rpc.WatchCreateRequest(key=self._key, start_revision=from_revision)
                await call.write(rpc.WatchRequest(create_request=create))
                while True:
                    resp: Any = await call.read()
                    if resp is _EOF:
                        raise ConnectionError("etcd closed the watch stream")
                    if resp.compact_revision or resp.canceled:
                        break  # look at the key itself below
                    if resp.events:
                        return  # deleted, or replaced after a deletion
            except (grpc.aio.AioRpcError, ConnectionError, StoreError) as exc:
                log.debug("election watch interrupted: %s", exc)
            finally:
                if call is not None:
                    call.cancel()
            await asyncio.sleep(_RETRY_DELAY)
            # Missed events cannot be replayed any more: compare the key with what we knew.
            with contextlib.suppress(StoreError):
                resp = await self._conn.range(rpc.RangeRequest(key=self._key), "leader lookup")
                if not resp.kvs or resp.kvs[0].create_revision != created:
                    return
                from_revision = resp.header.revision + 1

    async def wait_lost(self) -> str:
        """Waits until leadership is lost; returns why."""
        await self.lost.wait()
        return self.lost_reason

    async def resign(self) -> None:
        """Gives up leadership (if held) and the lease, so another candidate wins at once."""
        if self._observer is not None:
            self._observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._observer
            self._observer = None
        self._created = None
        if self.lease is not None:
            await self.lease.revoke()  # deletes the key too: it is attached to the lease
            self.lease = None
        if not self.lost.is_set():
            self.lost_reason = "resigned"
            self.lost.set()
