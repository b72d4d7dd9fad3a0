"""Writes the ZoneInsight of every zone this replica serves, when it changed.

Each zone's record (`global_cp.zone_book`) is refreshed from the live engines and merged into
the stored insight, compare-and-swap: another replica may be writing the same zone's (the
zone just moved), and then the zone is handed over. Writes happen every `--zone-insight-flush`
and at once when a zone comes or goes (`wake`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from global_cp.insights import ZoneRecord
from global_cp.zone_book import ZoneBook
from global_cp.zone_liveness import insight_resource, merge_insight, newest_subscription
from meshfed.aio import wait_for
from meshfed.ha.presence import Replicas
from meshfed.store.base import AlreadyExistsError, ConflictError, ResourceStore, StoreError

log = logging.getLogger("global_cp.kds")
WRITE_ATTEMPTS = 5  # compare-and-swap rounds for one ZoneInsight write


class ZoneInsightWriter:
    def __init__(
        self,
        store: ResourceStore,
        zones: ZoneBook,
        replicas: Replicas,
        instance_id: str,
        interval: float,
    ) -> None:
        self._store = store
        self._zones = zones
        self._replicas = replicas
        self._instance_id = instance_id
        self._interval = interval
        self._registrations = replicas.registrations
        self._wake = asyncio.Event()  # a zone came or went: flush now, not at the next tick

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> None:
        """Writes each zone's ZoneInsight if it changed (health-check times alone do not count)."""
        zones = self._zones
        async with zones.lock:
            if self._replicas.registrations != self._registrations:
                # Our presence lapsed meanwhile, and the leader may have closed our zones'
                # subscriptions: write them all again.
                self._registrations = self._replicas.registrations
                for rec in zones.records.values():
                    rec.written = None
            for rec in list(zones.records.values()):
                zones.refresh(rec)
                body = rec.insight_body()
                if comparable(body) == comparable(rec.written):
                    continue
                await self._write_insight(rec, body)

    async def _write_insight(self, rec: ZoneRecord, body: dict[str, Any]) -> None:
        """Merges our part into the stored insight, compare-and-swap: another replica may be
        writing the same zone's (it just moved). Hands the zone over when it has moved."""
        zones = self._zones
        for _ in range(WRITE_ATTEMPTS):
            stored = await zones.stored_insight(rec.zone)
            merged = merge_insight(stored.spec if stored else None, body, self._instance_id)
            res = insight_resource(rec.zone, merged)
            try:
                if stored is None:
                    await self._store.create(res)
                elif comparable(merged) != comparable(stored.spec):
                    await self._store.update(res, expected_version=stored.meta.version)
            except (AlreadyExistsError, ConflictError):
                continue
            rec.written = body
            newest = newest_subscription(merged)
            moved = newest is not None and newest.get("globalInstanceId") != self._instance_id
            if moved and zones.live(rec.zone) is None and zones.records.get(rec.zone) is rec:
                del zones.records[rec.zone]  # another replica serves it now
            return
        raise StoreError(f"the ZoneInsight of zone {rec.zone} kept changing; retrying later")

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the store may be briefly unavailable; try again next time
                log.exception("cannot write zone insights")


def comparable(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """An insight body without what changes at every health check."""
    if body is None:
        return None
    return {k: v for k, v in body.items() if k != "lastHealthCheck"}
