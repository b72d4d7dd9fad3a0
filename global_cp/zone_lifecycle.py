"""A zone's life at the global: it connects, syncs, goes offline, is disabled or deleted.

`ZoneLifecycle` is the KdsServer's GlobalHooks: it refuses a zone that is disabled or being
deleted, creates its Zone on its first connection, starts a subscription in its record
(adopting the stored insight: the zone may come from another replica), says what the zone
gets (its view of the global mirror) and where its inventory goes. It also follows the Zones
in the mirror: a deleted Zone's record goes, a disabled zone's streams are closed.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Sequence

from global_cp.insights import Subscription, ZoneRecord
from global_cp.zone_book import ZoneBook
from global_cp.zone_insight_writer import ZoneInsightWriter
from global_cp.zone_liveness import merge_insight
from meshfed.kds.receive import global_receive_side
from meshfed.kds.server import ZoneRejected
from meshfed.kds.stream import ReceiveSide
from meshfed.kds.views import GlobalView
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Key, Meta, Resource
from meshfed.resources.types.zone import ZONE, zone_enabled
from meshfed.store.base import AlreadyExistsError, NotFoundError, ResourceStore

log = logging.getLogger("global_cp.kds")


class ZoneLifecycle:
    def __init__(
        self,
        store: ResourceStore,
        registry: Registry,
        zones: ZoneBook,
        insights: ZoneInsightWriter,
        up_types: Sequence[str],
        instance_id: str,
    ) -> None:
        self._store = store
        self._registry = registry
        self._zones = zones
        self._insights = insights
        self._up_types = up_types
        self._instance_id = instance_id

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
        self._insights.wake()
        log.info("zone %s online", zone)

    def _refuse_deleting(self, zone: str) -> None:
        if zone in self._zones.deleting:
            raise ZoneRejected(
                f"zone {zone!r} is being deleted at the global; it can connect again once its "
                "inventory is removed"
            )

    async def zone_disconnected(self, zone: str) -> None:
        zones = self._zones
        if zone in zones.deleting:
            return  # its record goes with it
        rec = zones.record(zone)
        zones.refresh(rec)
        zones.keep_versions(rec)
        if rec.current is not None and rec.current.disconnect_time is None:
            rec.current.disconnect_time = time.time()
        self._insights.wake()
        log.info("zone %s offline (its inventory stays)", zone)

    async def down_source(self, zone: str) -> GlobalView:
        return self._zones.view(zone)

    async def up_side(self, zone: str) -> ReceiveSide:
        return await global_receive_side(self._store, self._registry, zone, self._up_types)

    # -- the rest of a zone's life ---------------------------------------------------------

    async def _adopt(self, zone: str) -> ZoneRecord:
        """This replica now serves the zone: its record starts from the stored insight (the
        zone may come from another replica, whose subscription ends now), keeping what only
        this replica knows of its own earlier sessions."""
        zones = self._zones
        stored = await zones.stored_insight(zone)
        local = zones.records.get(zone)
        ours = local.insight_body() if local is not None else {}
        body = merge_insight(stored.spec if stored else None, ours, self._instance_id)
        rec = ZoneRecord.from_insight(zone, body, closed_at=time.time())
        rec.written = None
        zones.records[zone] = rec
        return rec

    def on_mirror(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        """A Zone changed in the global mirror: deleted (maybe through another replica), its
        record goes; disabled, its streams are closed."""
        if type_name != ZONE.name:
            return
        if res is None and key is not None:
            self._zones.forget(key.name)
            return
        if res is None or zone_enabled(res.spec):
            return
        session = self._zones.live(res.name)
        if session is not None:
            session.close(f"zone {res.name!r} was disabled at the global")
