"""The global's side of the federation: KDS server, zone lifecycle, insights, zone deletion.

`Federation` is the KdsServer's GlobalHooks (what each zone gets, where its inventory goes,
Zone auto-creation) and the API's FederationView (`/zones+insights`, `_overview`, `_sync`)
and delete hooks (`DELETE /zones/{name}`). One StoreMirror (one store watch) feeds every
zone's stream; each zone's view filters it.

Several replicas may share one store (etcd): each serves the zones connected to it and owns
their live ZoneInsight; it answers for the other zones from the store
(`global_cp.zone_liveness` has the rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from global_cp.insights import (
    SentType,
    Subscription,
    ZoneRecord,
    rfc3339,
    subscription_status,
)
from global_cp.replicas import Replicas, SoleReplica
from global_cp.zone_liveness import (
    insight_resource,
    merge_insight,
    newest_subscription,
    remote_record,
    serving_replica,
    stored_stat,
)
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.aio import wait_for
from meshfed.api.errors import ApiError
from meshfed.auth.credentials import Verifier
from meshfed.auth.tokens import TokenKind
from meshfed.config import Address
from meshfed.kds.auth import KdsAuthenticator
from meshfed.kds.messages import to_wire
from meshfed.kds.naming import outgoing_from_global, types_global_to_zone, types_zone_to_global
from meshfed.kds.receive import global_receive_side
from meshfed.kds.server import KdsServer, ZoneRejected, ZoneSession
from meshfed.kds.stream import ReceiveSide, grpc_options
from meshfed.kds.tls import ServerTls
from meshfed.kds.views import GlobalView, global_mirror
from meshfed.resources.descriptors import Registry, TypeDescriptor
from meshfed.resources.model import (
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Key,
    Meta,
    Resource,
)
from meshfed.resources.types.insights import ZONE_INSIGHT
from meshfed.resources.types.zone import ZONE, zone_enabled
from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ResourceStore,
    StoreError,
    StoreKey,
)

log = logging.getLogger("global_cp.kds")
WRITE_ATTEMPTS = 5  # compare-and-swap rounds for one ZoneInsight write
DELETE_ATTEMPTS = 5  # list-and-delete rounds of a deleted zone's inventory
CLOSE_TIMEOUT = 5.0  # how long a zone deletion waits for the zone's streams to end


@dataclass(frozen=True)
class KdsSettings:
    address: Address
    max_message_bytes: int
    health_interval: float
    offline_timeout: float
    insight_flush: float
    tls: ServerTls | None = None  # None: plaintext (--kds-insecure)


class Federation:
    def __init__(
        self,
        store: ResourceStore,
        registry: Registry,
        settings: KdsSettings,
        instance_id: str,
        replicas: Replicas | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._settings = settings
        self._instance_id = instance_id
        self.down_types = types_global_to_zone(registry)
        self.up_types = types_zone_to_global(registry)
        self.mirror = global_mirror(store, self.down_types)
        # Every KDS call proves its zone with a zone token before anything else happens.
        self.kds = KdsServer(
            self,
            self.down_types,
            authenticator=KdsAuthenticator(Verifier(store, TokenKind.ZONE)),
            health_interval=settings.health_interval,
            stale_timeout=settings.offline_timeout,
            max_message_size=settings.max_message_bytes,
        )
        self.replicas = replicas or SoleReplica(instance_id)
        # Zones this replica serves or served: it writes their insights (the others' come
        # from the store when asked).
        self.records: dict[str, ZoneRecord] = {}
        self._registrations = self.replicas.registrations
        self._wake = asyncio.Event()  # a zone came or went: flush now, not at the next tick
        self._views: dict[str, GlobalView] = {}
        self._deleting: set[str] = set()  # zones whose deletion is in progress: refused
        self._lock = asyncio.Lock()  # orders insight writes against zone deletion
        self._server: grpc.aio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._unlisten: Any = None
        self.address: Address | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Address:
        await self.mirror.start()
        self._unlisten = self.mirror.listen(self._on_mirror)
        # No SO_REUSEPORT (gRPC's default): a second global on the same port must fail to
        # start, not silently take half of the zones.
        options = [*grpc_options(self._settings.max_message_bytes), ("grpc.so_reuseport", 0)]
        server = grpc.aio.server(options=options)
        pb_grpc.add_KDSServicer_to_server(self.kds, server)
        where = self._settings.address
        tls = self._settings.tls
        try:
            if tls is None:
                port = server.add_insecure_port(str(where))
            else:
                port = server.add_secure_port(str(where), tls.credentials())
        except RuntimeError as exc:
            raise OSError(f"cannot listen for KDS on {where}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot listen for KDS on {where}: address in use or unavailable")
        await server.start()
        self._server = server
        self.address = Address(where.host, port)
        self._flusher = asyncio.create_task(self._flush_loop(), name="zone-insight-flush")
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)  # zones see UNAVAILABLE and will reconnect
            self._server = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        now = time.time()
        for rec in self.records.values():
            self._refresh(rec)
            self._keep_versions(rec)
            current = rec.current
            if current is not None and current.disconnect_time is None:
                current.disconnect_time = now
        with contextlib.suppress(Exception):
            await self.flush()
        if self._unlisten is not None:
            self._unlisten()
        await self.mirror.stop()

    # -- GlobalHooks -------------------------------------------------------------------------

    async def zone_connected(self, zone: str) -> None:
        self._refuse_deleting(zone)
        try:
            existing = await self._store.get(ZONE.name, "", zone)
        except NotFoundError:
            existing = None
        self._refuse_deleting(zone)  # the deletion may have begun during the read
        if existing is not None and not zone_enabled(existing.spec):
            raise ZoneRejected(f"zone {zone!r} is disabled at the global (Zone enabled: false)")
        if existing is None:
            res = Resource(ZONE.name, Meta(name=zone, labels={LABEL_ORIGIN: ORIGIN_GLOBAL}))
            with contextlib.suppress(AlreadyExistsError):
                await self._store.create(res)
                log.info("zone %s: created Zone on its first connection", zone)
        rec = await self._adopt(zone)
        rec.add(Subscription(uuid.uuid4().hex[:16], self._instance_id, time.time()))
        self._wake.set()
        log.info("zone %s online", zone)

    def _refuse_deleting(self, zone: str) -> None:
        if zone in self._deleting:
            raise ZoneRejected(
                f"zone {zone!r} is being deleted at the global; it can connect again once its "
                "inventory is removed"
            )

    async def zone_disconnected(self, zone: str) -> None:
        if zone in self._deleting:
            return  # its record goes with it
        rec = self._record(zone)
        self._refresh(rec)
        self._keep_versions(rec)
        if rec.current is not None and rec.current.disconnect_time is None:
            rec.current.disconnect_time = time.time()
        self._wake.set()
        log.info("zone %s offline (its inventory stays)", zone)

    async def down_source(self, zone: str) -> GlobalView:
        return self._view(zone)

    async def up_side(self, zone: str) -> ReceiveSide:
        return await global_receive_side(self._store, self._registry, zone, self.up_types)

    # -- FederationView ----------------------------------------------------------------------

    async def zone_overview(self, zone: Resource) -> dict[str, Any]:
        rec, session, remote = await self._zone_state(zone.name)
        view = self._view(zone.name)
        if remote is not None:  # served by another replica: as of its last flush
            pending = sum(int(stored_stat(remote, t).get("pending") or 0) for t in self.down_types)
        else:
            pending = sum(view.pending(t, self._held(rec, session, t)) for t in self.down_types)
        in_flight = (
            session is not None
            and session.down is not None
            and any(session.down.in_flight(t) for t in self.down_types)
        )
        online = session is not None or remote is not None
        # Refusals (a second zone-cp with the same zone name) happen while the zone is
        # connected: not a sync error of any type, so they are shown here.
        known = self.kds.sessions.get(zone.name)
        last_error = known.last_error if known is not None else ""
        error_time = known.last_error_time if known is not None else None
        return {
            "type": "ZoneOverview",
            "name": zone.name,
            "creationTime": zone.meta.creation_time,
            "modificationTime": zone.meta.modification_time,
            "zone": {"enabled": zone_enabled(zone.spec)},
            "zoneInsight": {
                "state": "online" if online else "offline",
                "inSync": online and pending == 0 and not in_flight,
                "pending": pending,
                "lastHealthCheck": rfc3339(rec.last_health_check),
                "subscriptions": [s.to_json() for s in rec.subscriptions],
                "lastError": last_error or None,
                "lastErrorTime": rfc3339(error_time),
            },
        }

    async def sync_status(self, desc: TypeDescriptor, res: Resource) -> dict[str, Any]:
        key = Key(res.mesh, res.name)
        found = self.mirror.get(desc.name, key)
        version = found[1].version if found else to_wire(outgoing_from_global(res)).version
        zones: list[dict[str, Any]] = []
        for zone in (await self._store.list(ZONE.name)).items:
            if not self._view(zone.name).wants(desc.name, res):
                continue
            rec, session, remote = await self._zone_state(zone.name)
            if remote is not None:
                # Served by another replica, which alone knows the versions the zone holds;
                # its last flush says whether the zone lacked anything of this type.
                stat = stored_stat(remote, desc.name)
                rejected = stat.get("rejected")
                error = rejected.get(str(key)) if isinstance(rejected, dict) else None
                zones.append(
                    {
                        "zone": zone.name,
                        "state": "online",
                        "version": None,
                        "inSync": not stat.get("pending") and error is None,
                        "lastError": error,
                    }
                )
                continue
            held = self._held(rec, session, desc.name).get(key)
            last_error = None
            if session is not None and session.down is not None:
                last_error = session.down.insight(desc.name).rejected.get(str(key))
            zones.append(
                {
                    "zone": zone.name,
                    "state": "online" if session is not None else "offline",
                    "version": held,
                    "inSync": held == version,
                    "lastError": last_error,
                }
            )
        return {
            "type": desc.name,
            "mesh": res.mesh,
            "name": res.name,
            "version": version,
            "zones": zones,
        }

    # -- API delete hooks --------------------------------------------------------------------

    async def before_delete(self, desc: TypeDescriptor, mesh: str, name: str) -> None:
        if desc.name != ZONE.name:
            return
        _, session, remote = await self._zone_state(name)
        if session is not None or remote is not None:
            raise ApiError(409, "Conflict", f"zone {name} is connected; stop its zone-cp first")

    async def after_delete(self, desc: TypeDescriptor, res: Resource) -> None:
        """Removes a deleted zone's inventory and insight.

        The zone is refused from the moment its Zone is gone until this ends (a zone that
        connected meanwhile is closed first): otherwise it would build its receive side from
        a half-deleted store, and this cleanup would delete what it sends again. Deletes go in
        batches with the versions just listed; one that lost a race is listed again.
        """
        if desc.name != ZONE.name:
            return
        zone = res.name
        self._deleting.add(zone)  # before any await: the delete has just committed
        try:
            session = self.kds.sessions.get(zone)
            if session is not None and session.connected:
                session.close(f"zone {zone!r} was deleted at the global")
                if not await session.wait_closed(CLOSE_TIMEOUT):
                    log.warning("zone %s: streams still open after deletion", zone)
            async with self._lock:
                self.records.pop(zone, None)
                self._views.pop(zone, None)
                removed = await self._remove_inventory(zone)
        finally:
            self._deleting.discard(zone)
        log.info("zone %s deleted with %d resource(s) of its inventory and insight", zone, removed)

    async def _remove_inventory(self, zone: str) -> int:
        # Only what the zone sent: a label alone proves nothing (the API refuses system
        # labels now, but a store may hold older writes).
        owned = {LABEL_ZONE: zone, LABEL_ORIGIN: ORIGIN_ZONE}
        removed = 0
        for _ in range(DELETE_ATTEMPTS):
            doomed: dict[StoreKey, str | None] = {}
            for type_name in self.up_types:
                for item in (await self._store.list(type_name, labels=owned)).items:
                    doomed[item.key] = item.meta.version
            insight = await self._stored_insight(zone)
            if insight is not None:
                doomed[insight.key] = insight.meta.version
            if not doomed:
                return removed
            try:
                await self._store.write_batch([], list(doomed), expected=doomed)
            except (NotFoundError, AlreadyExistsError, ConflictError) as exc:
                log.info("zone %s: inventory changed during its deletion (%s); again", zone, exc)
                continue
            removed += len(doomed)
        raise StoreError(f"zone {zone}: its inventory kept changing during deletion; delete again")

    # -- insights ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Writes each zone's ZoneInsight if it changed (health-check times alone do not count)."""
        async with self._lock:
            if self.replicas.registrations != self._registrations:
                # Our presence lapsed meanwhile, and the leader may have closed our zones'
                # subscriptions: write them all again.
                self._registrations = self.replicas.registrations
                for rec in self.records.values():
                    rec.written = None
            for rec in list(self.records.values()):
                self._refresh(rec)
                body = rec.insight_body()
                if _comparable(body) == _comparable(rec.written):
                    continue
                await self._write_insight(rec, body)

    async def _write_insight(self, rec: ZoneRecord, body: dict[str, Any]) -> None:
        """Merges our part into the stored insight, compare-and-swap: another replica may be
        writing the same zone's (it just moved). Hands the zone over when it has moved."""
        for _ in range(WRITE_ATTEMPTS):
            stored = await self._stored_insight(rec.zone)
            merged = merge_insight(stored.spec if stored else None, body, self._instance_id)
            res = insight_resource(rec.zone, merged)
            try:
                if stored is None:
                    await self._store.create(res)
                elif _comparable(merged) != _comparable(stored.spec):
                    await self._store.update(res, expected_version=stored.meta.version)
            except (AlreadyExistsError, ConflictError):
                continue
            rec.written = body
            newest = newest_subscription(merged)
            moved = newest is not None and newest.get("globalInstanceId") != self._instance_id
            if moved and self._live(rec.zone) is None and self.records.get(rec.zone) is rec:
                del self.records[rec.zone]  # another replica serves it now
            return
        raise StoreError(f"the ZoneInsight of zone {rec.zone} kept changing; retrying later")

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), self._settings.insight_flush)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the store may be briefly unavailable; try again next time
                log.exception("cannot write zone insights")

    async def _stored_insight(self, zone: str) -> Resource | None:
        try:
            return await self._store.get(ZONE_INSIGHT.name, "", zone)
        except NotFoundError:
            return None

    async def _adopt(self, zone: str) -> ZoneRecord:
        """This replica now serves the zone: its record starts from the stored insight (the
        zone may come from another replica, whose subscription ends now), keeping what only
        this replica knows of its own earlier sessions."""
        stored = await self._stored_insight(zone)
        local = self.records.get(zone)
        ours = local.insight_body() if local is not None else {}
        body = merge_insight(stored.spec if stored else None, ours, self._instance_id)
        rec = ZoneRecord.from_insight(zone, body, closed_at=time.time())
        rec.written = None
        self.records[zone] = rec
        return rec

    async def _zone_state(
        self, zone: str
    ) -> tuple[ZoneRecord, ZoneSession | None, dict[str, Any] | None]:
        """(record, live session here, stored insight if another live replica serves it)."""
        session = self._live(zone)
        rec = self.records.get(zone)
        if rec is not None:
            self._refresh(rec)
        if session is not None and rec is not None:
            return rec, session, None
        stored = await self._stored_insight(zone)
        if stored is None:
            return rec or ZoneRecord(zone), session, None
        newest = newest_subscription(stored.spec)
        current = rec.current if rec is not None else None
        ours_last = current is not None and (newest is None or newest.get("id") == current.id)
        if rec is not None and ours_last:
            return rec, session, None  # we served it last: our record is the freshest
        serving = serving_replica(stored.spec)
        online = False
        if serving is not None and serving != self._instance_id:
            try:
                online = serving in await self.replicas.alive()
            except StoreError:
                online = True  # cannot tell: believe the store rather than flap to offline
        now = time.time()
        return remote_record(zone, stored.spec, online, now), None, stored.spec if online else None

    # -- internals ---------------------------------------------------------------------------

    def _record(self, zone: str) -> ZoneRecord:
        rec = self.records.get(zone)
        if rec is None:
            rec = self.records[zone] = ZoneRecord(zone)
        return rec

    def _view(self, zone: str) -> GlobalView:
        view = self._views.get(zone)
        if view is None:
            view = self._views[zone] = GlobalView(
                self.mirror, self._registry, zone, self.down_types
            )
        return view

    def _live(self, zone: str) -> ZoneSession | None:
        session = self.kds.sessions.get(zone)
        return session if session is not None and session.connected else None

    def _held(self, rec: ZoneRecord, session: ZoneSession | None, type_name: str) -> dict[Key, str]:
        if session is not None and session.down is not None:
            return session.down.acked_versions(type_name)
        return rec.versions.get(type_name, {})

    def _refresh(self, rec: ZoneRecord) -> None:
        """Copies the live engines' state of a zone into its record (status, versions)."""
        session = self.kds.sessions.get(rec.zone)
        if session is None:
            return
        if session.last_health_check_time is not None:
            rec.last_health_check = session.last_health_check_time
        current = rec.current
        if current is None or current.disconnect_time is not None:
            return  # a finished subscription keeps the status frozen at its end
        down, up = session.down, session.up
        view = self._view(rec.zone)
        sent: dict[str, SentType] = {}
        if down is not None:
            for t in self.down_types:
                sent[t] = SentType(down.insight(t), view.pending(t, down.acked_versions(t)))
        received = {t: up.insight(t) for t in up.types} if up is not None else {}
        current.status = subscription_status(sent, received)

    def _keep_versions(self, rec: ZoneRecord) -> None:
        """Remembers what a zone holds as it goes offline (persisted with its ZoneInsight).

        Only then: while it is connected the live engine knows, and rewriting every version
        of every resource on each flush would cost far more than the insight is worth.
        """
        session = self.kds.sessions.get(rec.zone)
        if session is not None and session.down is not None:
            rec.versions = {t: session.down.acked_versions(t) for t in self.down_types}

    def _on_mirror(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        if type_name != ZONE.name:
            return
        if res is None and key is not None:  # deleted, maybe through another replica
            self.records.pop(key.name, None)
            self._views.pop(key.name, None)
            return
        if res is None or zone_enabled(res.spec):
            return
        session = self._live(res.name)
        if session is not None:
            session.close(f"zone {res.name!r} was disabled at the global")


def _comparable(body: dict[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    return {k: v for k, v in body.items() if k != "lastHealthCheck"}
