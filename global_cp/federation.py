"""The global's side of the federation: the KDS server and the parts behind it, wired.

One view of the process's store cache (one store watch) feeds every zone's stream; each
zone's view filters it.
The parts, one role each, share what the replica knows of its zones (`global_cp.zone_book`):
- `global_cp.zone_lifecycle`: the KdsServer's GlobalHooks (what each zone gets, where its
  inventory goes, Zone auto-creation, disabled and deleted zones);
- `global_cp.zone_views`: the API's FederationView (`/zones+insights`, `_overview`, `_sync`);
- `global_cp.zone_deletion`: the API's delete hooks (`DELETE /zones/{name}`);
- `global_cp.zone_insight_writer`: the ZoneInsights this replica writes.

Several replicas may share one store (etcd): each serves the zones connected to it and owns
their live ZoneInsight; it answers for the other zones from the store
(`global_cp.zone_liveness` has the rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import grpc

from global_cp.zone_book import ZoneBook
from global_cp.zone_deletion import ZoneDeletion
from global_cp.zone_insight_writer import ZoneInsightWriter
from global_cp.zone_lifecycle import ZoneLifecycle
from global_cp.zone_views import ZoneViews
from meshfed._gen import kds_pb2_grpc as pb_grpc
from meshfed.auth.credentials import Verifier
from meshfed.auth.tokens import TokenKind
from meshfed.config import Address
from meshfed.ha.presence import Replicas, SoleReplica
from meshfed.kds.auth import KdsAuthenticator
from meshfed.kds.metrics import KdsMetrics
from meshfed.kds.naming import types_global_to_zone, types_zone_to_global
from meshfed.kds.server import KdsServer
from meshfed.kds.stream import grpc_options
from meshfed.kds.tls import ServerTls
from meshfed.kds.views import global_mirror
from meshfed.resources.descriptors import Registry
from meshfed.resources.model import Key, Resource
from meshfed.resources.types.zone import ZONE
from meshfed.store.base import ResourceStore
from meshfed.store.cache import StoreCache


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
        cache: StoreCache | None = None,
    ) -> None:
        """`cache`: the process's store cache (None: a cache of its own)."""
        self._settings = settings
        self.down_types = types_global_to_zone(registry)
        self.up_types = types_zone_to_global(registry)
        self.mirror = global_mirror(store, self.down_types, cache)
        self.replicas = replicas or SoleReplica(instance_id)
        self.zones = ZoneBook(store, registry, self.mirror, self.down_types)
        self.insights = ZoneInsightWriter(
            store, self.zones, self.replicas, instance_id, settings.insight_flush
        )
        self.lifecycle = ZoneLifecycle(
            store, registry, self.zones, self.insights, self.up_types, instance_id
        )
        self.metrics = KdsMetrics()  # on the API's /metrics (meshfed.kds.metrics)
        # Every KDS call proves its zone with a zone token before anything else happens.
        self.kds = KdsServer(
            self.lifecycle,
            self.down_types,
            authenticator=KdsAuthenticator(Verifier(store, TokenKind.ZONE)),
            health_interval=settings.health_interval,
            stale_timeout=settings.offline_timeout,
            max_message_size=settings.max_message_bytes,
            metrics=self.metrics,
        )
        self.zones.sessions = self.kds.sessions
        self.views = ZoneViews(store, self.zones, self.replicas, instance_id)
        self.deletion = ZoneDeletion(store, self.zones, self.views, self.up_types)
        self._server: grpc.aio.Server | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._unlisten: Any = None
        self.address: Address | None = None

    def _on_mirror(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        self.lifecycle.on_mirror(type_name, key, res)
        if type_name == ZONE.name and res is None and key is not None:
            self.metrics.forget(key.name)  # on every replica, whichever served the DELETE

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
        self._flusher = asyncio.create_task(self.insights.run(), name="zone-insight-flush")
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
        zones = self.zones
        for rec in zones.records.values():
            zones.refresh(rec)
            zones.keep_versions(rec)
            current = rec.current
            if current is not None and current.disconnect_time is None:
                current.disconnect_time = now
        with contextlib.suppress(Exception):
            await self.insights.flush()
        if self._unlisten is not None:
            self._unlisten()
        await self.mirror.stop()
