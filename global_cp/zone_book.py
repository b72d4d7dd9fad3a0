"""What the global knows of its zones, shared by the parts of the federation.

The zone lifecycle (`global_cp.zone_lifecycle`), the read views (`global_cp.zone_views`), the
zone deletion (`global_cp.zone_deletion`) and the insight writer
(`global_cp.zone_insight_writer`) all read and change the same few things: the record of each
zone this replica serves or served (it writes their insights; the others' come from the store
when asked), each zone's view of the global mirror, the zones being deleted, the lock that
orders insight writes against a deletion, and the KDS server's live sessions. They live here,
with the small helpers that copy the live engines' state into a record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from global_cp.insights import SentType, ZoneRecord, subscription_status
from meshfed.kds.messages import WireResource
from meshfed.kds.server import ZoneSession
from meshfed.kds.views import GlobalView
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import Key, Resource
from meshfed.resources.types.insights import ZONE_INSIGHT
from meshfed.store.base import NotFoundError, ResourceStore
from meshfed.store.cache import CacheView


class ZoneBook:
    def __init__(
        self,
        store: ResourceStore,
        registry: Registry,
        mirror: CacheView[WireResource],
        down_types: Sequence[str],
    ) -> None:
        self._store = store
        self._registry = registry
        self.mirror = mirror
        self.down_types = down_types
        # Zones this replica serves or served: it writes their insights (the others' come
        # from the store when asked).
        self.records: dict[str, ZoneRecord] = {}
        self.views: dict[str, GlobalView] = {}
        self.deleting: set[str] = set()  # zones whose deletion is in progress: refused
        self.lock = asyncio.Lock()  # orders insight writes against zone deletion
        # The KDS server's sessions; the server is made after the hooks that use this book.
        self.sessions: Mapping[str, ZoneSession] = {}

    def record(self, zone: str) -> ZoneRecord:
        rec = self.records.get(zone)
        if rec is None:
            rec = self.records[zone] = ZoneRecord(zone)
        return rec

    def forget(self, zone: str) -> None:
        """A deleted zone: its record and view go."""
        self.records.pop(zone, None)
        self.views.pop(zone, None)

    def view(self, zone: str) -> GlobalView:
        view = self.views.get(zone)
        if view is None:
            view = self.views[zone] = GlobalView(self.mirror, self._registry, zone, self.down_types)
        return view

    def live(self, zone: str) -> ZoneSession | None:
        session = self.sessions.get(zone)
        return session if session is not None and session.connected else None

    def held(self, rec: ZoneRecord, session: ZoneSession | None, type_name: str) -> dict[Key, str]:
        if session is not None and session.down is not None:
            return session.down.acked_versions(type_name)
        return rec.versions.get(type_name, {})

    def refresh(self, rec: ZoneRecord) -> None:
        """Copies the live engines' state of a zone into its record (status, versions)."""
        session = self.sessions.get(rec.zone)
        if session is None:
            return
        if session.last_health_check_time is not None:
            rec.last_health_check = session.last_health_check_time
        current = rec.current
        if current is None or current.disconnect_time is not None:
            return  # a finished subscription keeps the status frozen at its end
        down, up = session.down, session.up
        view = self.view(rec.zone)
        sent: dict[str, SentType] = {}
        if down is not None:
            for t in self.down_types:
                sent[t] = SentType(down.insight(t), view.pending(t, down.acked_versions(t)))
        received = {t: up.insight(t) for t in up.types} if up is not None else {}
        current.status = subscription_status(sent, received)

    def keep_versions(self, rec: ZoneRecord) -> None:
        """Remembers what a zone holds as it goes offline (persisted with its ZoneInsight).

        Only then: while it is connected the live engine knows, and rewriting every version
        of every resource on each flush would cost far more than the insight is worth.
        """
        session = self.sessions.get(rec.zone)
        if session is not None and session.down is not None:
            rec.versions = {t: session.down.acked_versions(t) for t in self.down_types}

    async def stored_insight(self, zone: str) -> Resource | None:
        try:
            return await self._store.get(ZONE_INSIGHT.name, "", zone)
        except NotFoundError:
            return None
