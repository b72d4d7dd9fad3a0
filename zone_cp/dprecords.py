"""The config server's store edge: the resources it writes about its proxies.

What goes in them is decided in zone_cp/dpstate.py; this module reads and writes them, and
skips writes that would change nothing (every write is synced up to the global by KDS).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.resources.model import Resource, now_rfc3339
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.store.base import (
    ConflictError,
    NotFoundError,
    ResourceStore,
    StoreError,
    StoreKey,
)
from zone_cp import dpstate
from zone_cp.dpbatch import Coalescer, unique_runs

log = logging.getLogger("zone_cp.dpserver")


class Records:
    """Reads and writes go through coalescers: what concurrent registrations and reports
    read is one `get_many`, what they write one `write_batch` (decision 123)."""

    def __init__(self, store: ResourceStore, zone: str) -> None:
        self._store = store
        self.zone = zone
        self._reads: Coalescer[Sequence[StoreKey], dict[StoreKey, Resource]] = Coalescer(
            self._read_many
        )
        self._writes: Coalescer[Sequence[Resource], None] = Coalescer(self._write_many)

    async def get(self, type_name: str, mesh: str, name: str) -> Resource | None:
        key = (type_name, mesh, name)
        return (await self.read([key])).get(key)

    async def read(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        """The resources stored at `keys` (absent ones left out)."""
        return await self._reads.submit(keys)

    async def write(self, puts: Sequence[Resource]) -> None:
        """Upserts `puts` together (last write wins, as `put` always did)."""
        if puts:
            await self._writes.submit(puts)

    async def put(self, resource: Resource, stored: Resource | None) -> None:
        """Create or replace (`stored`: what the store held), unless nothing would change."""
        if changes(resource, stored):
            await self.write([resource])

    async def register(self, resource: Resource, stored: Resource | None) -> None:
        await self.put(resource, stored)

    async def set_health(self, registered: Resource, ready: dict[int, bool]) -> None:
        """The stored Dataplane with this readiness (inbounds not in `ready`: not ready)."""
        wanted = dpstate.with_health(registered, ready, default=False)
        await self.put(wanted, await self.get(DATAPLANE.name, registered.mesh, registered.name))

    async def _read_many(
        self, requests: list[Sequence[StoreKey]]
    ) -> list[dict[StoreKey, Resource] | Exception]:
        keys = list(dict.fromkeys(key for request in requests for key in request))
        found = await self._store.get_many(keys)
        return [{k: found[k] for k in request if k in found} for request in requests]

    async def _write_many(self, requests: list[Sequence[Resource]]) -> list[Exception | None]:
        """One write_batch per run of requests without a key twice; a failed batch of several
        is retried one request at a time, so a failure is only its own request's. What was
        stored is not read back (`copies=False`: no decoded copy of each put)."""
        answers: list[Exception | None] = [None] * len(requests)
        for run in unique_runs(requests):
            puts = [r for i in run for r in requests[i]]
            try:
                await self._store.write_batch(puts, [], copies=False)
                continue
            except (StoreError, ValueError) as exc:
                if len(run) == 1:
                    answers[run[0]] = exc
                    continue
            for i in run:
                try:
                    await self._store.write_batch(list(requests[i]), [], copies=False)
                except (StoreError, ValueError) as exc:
                    answers[i] = exc
        return answers

    async def write_insight(
        self,
        proxy_type: str,
        mesh: str,
        name: str,
        subscriptions: list[dict[str, Any]],
        mtls: dict[str, Any] | None,
        report: pb.Report | None,
    ) -> None:
        insight = dpstate.insight_resource(
            proxy_type, mesh, name, self.zone, subscriptions, mtls=mtls, report=report
        )
        await self.put(insight, await self.get(insight.type, mesh, name))

    async def close_stale(
        self,
        alive: Collection[str],
        live: Collection[tuple[str, str]],
        live_ingresses: Collection[str] = (),
    ) -> Swept:
        """Proxies still marked connected to a zone-cp instance not among `alive` (a previous
        life of this one, a replica that died) and not live here (`live`: dataplanes' (mesh,
        name); `live_ingresses`: names): their subscription closed, a dataplane's inbounds
        marked not ready. A closed ingress subscription is what makes zone_cp.services stop
        advertising through it.

        Each proxy's writes are compare-and-swap on what was read: a proxy that reconnected
        (to another replica) meanwhile is left to that replica, its health put back, and the
        pass is not `clean` (the caller looks again)."""
        swept = Swept()
        for insight in (await self._store.list(DATAPLANE_INSIGHT.name)).items:
            if (insight.mesh, insight.name) in live or not dpstate.held_by_gone(insight, alive):
                continue
            if await self._close_dataplane(insight):
                swept.closed += 1
                log.info(
                    "dataplane %s (mesh %s): its zone-cp %s is gone: marked offline",
                    insight.name,
                    insight.mesh,
                    _instance(insight),
                )
            else:
                swept.clean = False
        for insight in (await self._store.list(ZONE_INGRESS_INSIGHT.name)).items:
            if insight.name in live_ingresses or not dpstate.held_by_gone(insight, alive):
                continue
            if await self._close_subscription(insight):
                swept.closed += 1
                log.info(
                    "zone ingress %s: its zone-cp %s is gone: marked offline",
                    insight.name,
                    _instance(insight),
                )
            else:
                swept.clean = False
        return swept

    async def _close_dataplane(self, insight: Resource) -> bool:
        """Not ready first, then the subscription closed: a proxy registering in between reads
        the new health, or its insight write makes the close fail and the health go back."""
        dataplane = await self.get(DATAPLANE.name, insight.mesh, insight.name)
        written: Resource | None = None
        if dataplane is not None:
            offline = dpstate.with_health(dataplane, {}, default=False)
            if offline.spec != dataplane.spec:
                try:
                    written = await self._store.update(
                        offline, expected_version=dataplane.meta.version
                    )
                except (ConflictError, NotFoundError):
                    return False
        if await self._close_subscription(insight):
            return True
        if written is not None and dataplane is not None:
            with contextlib.suppress(ConflictError, NotFoundError):
                await self._store.update(dataplane, expected_version=written.meta.version)
        return False

    async def _close_subscription(self, insight: Resource) -> bool:
        """False if the insight changed since it was read (its proxy reconnected)."""
        closed = insight.clone()
        subs = dpstate.previous_subscriptions(closed)
        subs[-1] = {**subs[-1], "disconnectTime": now_rfc3339()}
        closed.spec["subscriptions"] = subs
        try:
            await self._store.update(closed, expected_version=insight.meta.version)
        except (ConflictError, NotFoundError):
            return False
        return True


def changes(resource: Resource, stored: Resource | None) -> bool:
    """Whether writing `resource` over `stored` changes what is stored."""
    return (
        stored is None or stored.spec != resource.spec or stored.meta.labels != resource.meta.labels
    )


@dataclass
class Swept:
    """What one crash-sweep pass did: proxies closed; False `clean`: some changed meanwhile."""

    closed: int = 0
    clean: bool = True


def _instance(insight: Resource) -> str:
    subs = dpstate.previous_subscriptions(insight)
    return str(subs[-1].get("controlPlaneInstanceId")) if subs else "?"
