"""Deleting a Zone at the global (`DELETE /zones/{name}`): refused while the zone is connected,
and followed by the removal of what the zone sent (its inventory) and of its insight.

The API calls `before_delete` and `after_delete` around its delete; a refusal is a
DeleteRefusedError, which the API answers with 409.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from global_cp.zone_book import ZoneBook
from global_cp.zone_views import ZoneViews
from meshfed.resources.descriptors import TypeDescriptor
from meshfed.resources.errors import DeleteRefusedError
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_ZONE, Resource
from meshfed.resources.types.zone import ZONE
from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ResourceStore,
    StoreError,
    StoreKey,
)

log = logging.getLogger("global_cp.kds")
DELETE_ATTEMPTS = 5  # list-and-delete rounds of a deleted zone's inventory
CLOSE_TIMEOUT = 5.0  # how long a zone deletion waits for the zone's streams to end


class ZoneDeletion:
    def __init__(
        self, store: ResourceStore, zones: ZoneBook, views: ZoneViews, up_types: Sequence[str]
    ) -> None:
        self._store = store
        self._zones = zones
        self._views = views
        self._up_types = up_types

    async def before_delete(self, desc: TypeDescriptor, mesh: str, name: str) -> None:
        if desc.name != ZONE.name:
            return
        _, session, remote = await self._views.zone_state(name)
        if session is not None or remote is not None:
            # It would send its inventory again right after.
            raise DeleteRefusedError(f"zone {name} is connected; stop its zone-cp first")

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
        zones = self._zones
        zones.deleting.add(zone)  # before any await: the delete has just committed
        try:
            session = zones.sessions.get(zone)
            if session is not None and session.connected:
                session.close(f"zone {zone!r} was deleted at the global")
                if not await session.wait_closed(CLOSE_TIMEOUT):
                    log.warning("zone %s: streams still open after deletion", zone)
            async with zones.lock:
                zones.forget(zone)
                removed = await self._remove_inventory(zone)
        finally:
            zones.deleting.discard(zone)
        log.info("zone %s deleted with %d resource(s) of its inventory and insight", zone, removed)

    async def _remove_inventory(self, zone: str) -> int:
        # Only what the zone sent: a label alone proves nothing (the API refuses system
        # labels now, but a store may hold older writes).
        owned = {LABEL_ZONE: zone, LABEL_ORIGIN: ORIGIN_ZONE}
        removed = 0
        for _ in range(DELETE_ATTEMPTS):
            doomed: dict[StoreKey, str | None] = {}
            for type_name in self._up_types:
                for item in (await self._store.list(type_name, labels=owned)).items:
                    doomed[item.key] = item.meta.version
            insight = await self._zones.stored_insight(zone)
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
