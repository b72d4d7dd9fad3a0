"""The config server's store edge: the resources it writes about its proxies.

What goes in them is decided in zone_cp/dpstate.py; this module reads and writes them, and
skips writes that would change nothing (every write is synced up to the global by KDS).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.resources.model import Resource, now_rfc3339
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.store.base import AlreadyExistsError, NotFoundError, ResourceStore
from zone_cp import dpstate

log = logging.getLogger("zone_cp.dpserver")


class Records:
    def __init__(self, store: ResourceStore, zone: str) -> None:
        self._store = store
        self.zone = zone

    async def get(self, type_name: str, mesh: str, name: str) -> Resource | None:
        try:
            return await self._store.get(type_name, mesh, name)
        except NotFoundError:
            return None

    async def put(self, resource: Resource, stored: Resource | None) -> None:
        """Create or replace (`stored`: what the store held), unless nothing would change."""
        if (
            stored is not None
            and stored.spec == resource.spec
            and stored.meta.labels == resource.meta.labels
        ):
            return
        try:
            if stored is None:
                await self._store.create(resource)
            else:
                await self._store.update(resource)
        except NotFoundError:
            await self._store.create(resource)
        except AlreadyExistsError:
            await self._store.update(resource)

    async def register(self, resource: Resource, stored: Resource | None) -> None:
        await self.put(resource, stored)

    async def set_health(self, registered: Resource, ready: dict[int, bool]) -> None:
        """The stored Dataplane with this readiness (inbounds not in `ready`: not ready)."""
        wanted = dpstate.with_health(registered, ready, default=False)
        await self.put(wanted, await self.get(DATAPLANE.name, registered.mesh, registered.name))

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
        instance: str,
        live: Collection[tuple[str, str]],
        live_ingresses: Collection[str] = (),
    ) -> int:
        """Proxies still marked connected to another instance (a previous life of this one)
        and not live here (`live`: dataplanes' (mesh, name); `live_ingresses`: names): their
        subscription closed, a dataplane's inbounds marked not ready. A closed ingress
        subscription is what makes zone_cp.services stop advertising through it."""
        closed_count = 0
        for insight in (await self._store.list(DATAPLANE_INSIGHT.name)).items:
            if (insight.mesh, insight.name) in live:
                continue
            if not dpstate.connected_elsewhere(insight, instance):
                continue
            dataplane = await self.get(DATAPLANE.name, insight.mesh, insight.name)
            if dataplane is not None:
                await self.put(dpstate.with_health(dataplane, {}, default=False), dataplane)
            await self._close_subscription(insight)
            closed_count += 1
            log.info(
                "dataplane %s (mesh %s) did not reconnect after a restart: marked offline",
                insight.name,
                insight.mesh,
            )
        for insight in (await self._store.list(ZONE_INGRESS_INSIGHT.name)).items:
            if insight.name in live_ingresses:
                continue
            if not dpstate.connected_elsewhere(insight, instance):
                continue
            await self._close_subscription(insight)
            closed_count += 1
            log.info(
                "zone ingress %s did not reconnect after a restart: marked offline", insight.name
            )
        return closed_count

    async def _close_subscription(self, insight: Resource) -> None:
        closed = insight.clone()
        subs = dpstate.previous_subscriptions(closed)
        subs[-1] = {**subs[-1], "disconnectTime": now_rfc3339()}
        closed.spec["subscriptions"] = subs
        await self.put(closed, insight)
