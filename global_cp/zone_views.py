"""The global's KDS state as the API reads it: the API's FederationView.

`/zones/{name}/_overview` (and `/zones+insights`) shows each zone's ZoneOverview, `_sync` which
zone holds which version of a resource the global sends. A zone served by this replica is
answered from its live engines; a zone another live replica serves, from the insight that
replica last wrote (`global_cp.zone_liveness` has the rules).
"""

from __future__ import annotations

import time
from typing import Any

from global_cp.insights import ZoneRecord, epoch, rfc3339
from global_cp.zone_book import ZoneBook
from global_cp.zone_liveness import newest_subscription, remote_record, serving_replica, stored_stat
from meshfed.ha.presence import Replicas
from meshfed.kds.messages import to_wire
from meshfed.kds.naming import outgoing_from_global
from meshfed.kds.server import ZoneSession
from meshfed.resources.descriptors import TypeDescriptor
from meshfed.resources.model import Key, Resource
from meshfed.resources.types.zone import ZONE, zone_enabled
from meshfed.store.base import ResourceStore, StoreError


class ZoneViews:
    def __init__(
        self, store: ResourceStore, zones: ZoneBook, replicas: Replicas, instance_id: str
    ) -> None:
        self._store = store
        self._zones = zones
        self._replicas = replicas
        self._instance_id = instance_id

    async def zone_overview(self, zone: Resource) -> dict[str, Any]:
        zones = self._zones
        rec, session, remote = await self.zone_state(zone.name)
        view = zones.view(zone.name)
        if remote is not None:  # served by another replica: as of its last flush
            pending = sum(int(stored_stat(remote, t).get("pending") or 0) for t in zones.down_types)
        else:
            pending = sum(view.pending(t, zones.held(rec, session, t)) for t in zones.down_types)
        in_flight = (
            session is not None
            and session.down is not None
            and any(session.down.in_flight(t) for t in zones.down_types)
        )
        online = session is not None or remote is not None
        # Refusals (a second zone-cp with the same zone name) happen while the zone is
        # connected: not a sync error of any type, so they are shown here.
        known = zones.sessions.get(zone.name)
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
        zones = self._zones
        key = Key(res.mesh, res.name)
        found = zones.mirror.get(desc.name, key)
        version = found[1].version if found else to_wire(outgoing_from_global(res)).version
        answers: list[dict[str, Any]] = []
        for zone in (await self._store.list(ZONE.name)).items:
            if not zones.view(zone.name).wants(desc.name, res):
                continue
            rec, session, remote = await self.zone_state(zone.name)
            if remote is not None:
                answers.append(_remote_answer(zone.name, remote, desc.name, res, version))
                continue
            held = zones.held(rec, session, desc.name).get(key)
            last_error = None
            if session is not None and session.down is not None:
                last_error = session.down.insight(desc.name).rejected.get(str(key))
            answers.append(
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
            "zones": answers,
        }

    async def zone_state(
        self, zone: str
    ) -> tuple[ZoneRecord, ZoneSession | None, dict[str, Any] | None]:
        """(record, live session here, stored insight if another live replica serves it)."""
        zones = self._zones
        session = zones.live(zone)
        rec = zones.records.get(zone)
        if rec is not None:
            zones.refresh(rec)
        if session is not None and rec is not None:
            return rec, session, None
        stored = await zones.stored_insight(zone)
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
                online = serving in await self._replicas.alive()
            except StoreError:
                online = True  # cannot tell: believe the store rather than flap to offline
        now = time.time()
        return remote_record(zone, stored.spec, online, now), None, stored.spec if online else None


def _remote_answer(
    zone: str, remote: dict[str, Any], type_name: str, res: Resource, version: str
) -> dict[str, Any]:
    """A zone served by another replica, which alone knows the versions the zone holds, as of
    that replica's last insight flush (issue 16: this answered `version: null`). The zone
    holds `version` when that flush came after the resource's last change and then had
    nothing of the type pending or refused; otherwise the version is unknown here (null) and
    `servedBy` names the replica whose `_sync` knows it."""
    stat = stored_stat(remote, type_name)
    rejected = stat.get("rejected")
    error = rejected.get(str(Key(res.mesh, res.name))) if isinstance(rejected, dict) else None
    status = (newest_subscription(remote) or {}).get("status")
    flushed = epoch(status.get("lastUpdateTime")) if isinstance(status, dict) else None
    changed = epoch(res.meta.modification_time or res.meta.creation_time)
    current = flushed is not None and changed is not None and flushed >= changed
    in_sync = current and not stat.get("pending") and error is None
    return {
        "zone": zone,
        "state": "online",
        "version": version if in_sync else None,
        "inSync": in_sync,
        "lastError": error,
        "servedBy": serving_replica(remote),
        "asOf": rfc3339(flushed),
    }
