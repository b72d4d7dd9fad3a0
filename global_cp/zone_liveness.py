"""ZoneInsight shared by several global replicas: who writes what, and when a zone is online.

Rules (the functions here are pure, except the leader's sweep at the bottom):

- A zone holds one KDS session at a time, on one replica. That replica owns the zone's live
  insight and writes it (`merge_insight`): its own subscriptions as it knows them, everyone
  else's as the store has them. Writes are compare-and-swap on the stored version, so two
  replicas writing the same zone's insight (the zone just moved) never lose each other's
  subscriptions.
- A subscription ends at the latest when the zone's next one starts: only the newest one can
  be open. The zone is online when the newest subscription is open and its replica is alive
  (`serving_replica`): a replica never calls a zone offline because it is connected elsewhere.
- A replica that dies writes nothing more. Its presence key expires with its lease
  (`meshfed.ha.presence`) and the leader closes its open subscriptions (`InsightSweep`), which is
  also where the insights of deleted zones are removed. Nobody else ever closes a subscription
  of a live replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from global_cp.insights import MAX_SUBSCRIPTIONS, ZoneRecord, epoch, rfc3339
from meshfed.ha.presence import DeadReplicaSweep, Replicas
from meshfed.resources.model import LABEL_ORIGIN, ORIGIN_GLOBAL, Meta, Resource
from meshfed.resources.types.insights import ZONE_INSIGHT
from meshfed.resources.types.zone import ZONE
from meshfed.store.base import ConflictError, NotFoundError, ResourceStore

log = logging.getLogger("global_cp.kds")


def _subscriptions(body: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    raw = (body or {}).get("subscriptions")
    if not isinstance(raw, list):
        return []
    return [s for s in raw if isinstance(s, dict) and isinstance(s.get("id"), str)]


def _connected_at(sub: Mapping[str, Any]) -> float:
    return epoch(sub.get("connectTime")) or 0.0


def newest_subscription(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    subs = _subscriptions(body)
    return max(subs, key=_connected_at) if subs else None


def serving_replica(body: Mapping[str, Any] | None) -> str | None:
    """The replica holding the zone's streams as the store says: the newest subscription's,
    if that one is still open (whether that replica lives is the caller's question)."""
    newest = newest_subscription(body)
    if newest is None or newest.get("disconnectTime") is not None:
        return None
    owner = newest.get("globalInstanceId")
    return owner if isinstance(owner, str) and owner else None


def merge_insight(
    stored: Mapping[str, Any] | None, ours: Mapping[str, Any], me: str
) -> dict[str, Any]:
    """The insight replica `me` writes: `ours` (its record's body) merged into the stored one.

    Each subscription comes from the replica that made it (ours for our own, the store's for
    the others'; a subscription unknown to the store is kept from ours); only the newest may
    stay open; the newest MAX_SUBSCRIPTIONS are kept. The held versions come with the newest
    subscription: its replica is the one that knows them.
    """
    by_id = {s["id"]: s for s in _subscriptions(stored)}
    for sub in _subscriptions(ours):
        if sub.get("globalInstanceId") == me or sub["id"] not in by_id:
            by_id[sub["id"]] = sub
    subs = sorted(by_id.values(), key=_connected_at)
    for i in range(len(subs) - 1):
        if subs[i].get("disconnectTime") is None:
            subs[i] = {**subs[i], "disconnectTime": subs[i + 1].get("connectTime")}
    subs = subs[-MAX_SUBSCRIPTIONS:]

    checks = [epoch((b or {}).get("lastHealthCheck")) for b in (stored, ours)]
    known = [c for c in checks if c is not None]
    newest_is_ours = bool(subs) and subs[-1].get("globalInstanceId") == me
    source = ours if newest_is_ours or not stored else stored
    return {
        "subscriptions": subs,
        "lastHealthCheck": rfc3339(max(known)) if known else None,
        "versions": source.get("versions") or {},
    }


def close_orphans(
    body: Mapping[str, Any], alive: frozenset[str], now: float
) -> tuple[dict[str, Any], list[str]]:
    """Closes (at `now`) the open subscriptions of replicas that are not alive; returns the
    new body and those replicas' ids (empty: nothing to write)."""
    gone: list[str] = []
    subs: list[Any] = []
    for sub in (body or {}).get("subscriptions") or []:
        if isinstance(sub, dict) and sub.get("disconnectTime") is None:
            owner = sub.get("globalInstanceId")
            if owner not in alive:
                gone.append(str(owner))
                sub = {**sub, "disconnectTime": rfc3339(now)}
        subs.append(sub)
    return {**body, "subscriptions": subs}, gone


def remote_record(zone: str, body: Mapping[str, Any], online: bool, now: float) -> ZoneRecord:
    """A zone this replica does not serve, as the store has it (for overviews and `_sync`)."""
    rec = ZoneRecord.from_insight(zone, body, closed_at=now)
    if online and rec.current is not None:
        rec.current.disconnect_time = None  # from_insight closes it; its replica lives
    return rec


def stored_stat(body: Mapping[str, Any], type_name: str) -> dict[str, Any]:
    """One type's counters (sent, pending, rejected) of the newest subscription, as its
    replica last flushed them; empty when there are none."""
    newest = newest_subscription(body)
    status = (newest or {}).get("status")
    stat = status.get("stat") if isinstance(status, dict) else None
    entry = stat.get(type_name) if isinstance(stat, dict) else None
    return entry if isinstance(entry, dict) else {}


def insight_resource(zone: str, body: dict[str, Any]) -> Resource:
    return Resource(ZONE_INSIGHT.name, Meta(name=zone, labels={LABEL_ORIGIN: ORIGIN_GLOBAL}), body)


class InsightSweep:
    """The leader's job: close subscriptions of dead replicas, drop insights of deleted zones."""

    def __init__(
        self,
        store: ResourceStore,
        replicas: Replicas,
        still_leader: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._still_leader = still_leader
        self._clock = clock
        self.marked_offline = 0  # subscriptions closed, over this replica's life
        self.removed = 0  # insights of deleted zones
        self._sweep = DeadReplicaSweep(replicas, self._pass, clock)

    @property
    def passes(self) -> int:
        """Full passes over the insights."""
        return self._sweep.passes

    async def run(self) -> None:
        await self._sweep.run()

    async def _pass(self, alive: frozenset[str]) -> bool:
        """One look at every insight; False if it stopped early or something needs a retry."""
        now = self._clock()
        clean = True
        # Insights first, zones second: a zone's insight is written after its Zone exists, so
        # every insight listed here whose Zone is missing below belongs to a deleted zone.
        insights = (await self._store.list(ZONE_INSIGHT.name)).items
        zones = {z.name for z in (await self._store.list(ZONE.name)).items}
        for item in insights:
            if not self._still_leader():
                return False
            try:
                if item.name not in zones:
                    await self._store.delete(
                        ZONE_INSIGHT.name, "", item.name, expected_version=item.meta.version
                    )
                    self.removed += 1
                    log.info("removed the ZoneInsight of deleted zone %s", item.name)
                    continue
                body, gone = close_orphans(item.spec, alive, now)
                if not gone:
                    continue
                await self._store.update(
                    insight_resource(item.name, body), expected_version=item.meta.version
                )
            except (ConflictError, NotFoundError):
                clean = False  # written meanwhile (its zone reconnected): look again next time
                continue
            self.marked_offline += len(gone)
            log.info(
                "zone %s marked offline: global replica %s is gone",
                item.name,
                ", ".join(sorted(set(gone))),
            )
        return clean
