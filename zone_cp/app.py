"""Composition root of the zone control plane: store, services and DNS, API in zone mode, KDS
client.

Start order: store, services (catalog and VIPs from the store, the first DNS table complete)
and the DNS server, KDS (its receive side and mirror load from the store; connecting happens
in the background, so a zone starts and serves even when the global is down), API. Stop in
reverse. Without `--global-kds` the zone runs standalone: the same API with no KDS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from contextlib import suppress
from typing import Any

from meshfed.api.context import ApiContext
from meshfed.api.server import ApiServer, server_tls
from meshfed.auth import mesh_keys
from meshfed.auth.bootstrap import bootstrap_credentials
from meshfed.auth.mesh_keys import DataplaneKeyJob
from meshfed.auth.tokens import TokenKind
from meshfed.bootstrap import (
    DEFAULT_MESH,
    create_default_hostname_generators,
    create_default_mesh,
    store_location,
)
from meshfed.config import Address
from meshfed.ha.leader import Leader
from meshfed.ha.presence import DeadReplicaSweep, Replicas, for_store
from meshfed.kds.auth import read_token_file
from meshfed.kds.metrics import KdsMetrics
from meshfed.kds.naming import types_zone_to_global
from meshfed.kds.options import grpc_url
from meshfed.kds.tls import ClientTls, zone_tls
from meshfed.resources.descriptors import Mode, Registry
from meshfed.resources.types import default_registry
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.cache import StoreCache
from meshfed.store.etcd import DEFAULT_PREFIX, EtcdStore
from meshfed.store.factory import open_configured_store
from meshfed.store.orphans import OrphanSweeper
from meshfed.store.timing import store_histogram, time_store
from zone_cp.certs import CertIssuer
from zone_cp.dns_wiring import ZoneDns
from zone_cp.dppusher import WATCHED as DPSERVER_TYPES
from zone_cp.dpregistration import PROXY_TYPES
from zone_cp.dpserver import DataplaneServer
from zone_cp.kds import ZoneKds
from zone_cp.mads_server import TYPES as MADS_TYPES
from zone_cp.mads_server import MadsServer
from zone_cp.services import WATCHED as SERVICES_TYPES
from zone_cp.services import ZoneServices
from zone_cp.settings import ZoneSettings

log = logging.getLogger("zone_cp")
ZONE_ROLE = "zone-cp"  # the presence and election keys under the etcd store's prefix
DP_SWEEP_EVERY = 1.0  # the leader's look at the live replicas (one etcd range when unchanged)
STANDBY = "standby"  # `/_kds` state of a replica that is not the zone's leader


class ZoneControlPlane:
    def __init__(self, settings: ZoneSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.store: ResourceStore | None = None
        self.cache: StoreCache | None = None  # the process's one store cache (decision 80)
        self.api: ApiContext | None = None
        self.kds: ZoneKds | None = None
        self.kds_metrics = KdsMetrics()  # every KDS client's streams, on /metrics
        self.leader: Leader | None = None  # etcd store: only the leader replica runs KDS
        self.replicas: Replicas | None = None  # etcd store: the zone's live replicas
        self.dp_sweep: DeadReplicaSweep | None = None
        self.services: ZoneServices | None = None
        self.dns: ZoneDns | None = None
        self.dpserver: DataplaneServer | None = None
        self.mads: MadsServer | None = None  # --mads-address (decision 162)
        self._server: ApiServer | None = None
        self._orphans: asyncio.Task[None] | None = None  # standalone: meshfed.store.orphans
        self._tls: ClientTls | None = None  # KDS transport (None: --kds-insecure)
        self._dataplane_keys: asyncio.Task[None] | None = None  # standalone: mesh token keys

    async def start(self) -> None:
        s = self.settings
        if s.global_kds:
            self._kds_security()
        prefix = f"{DEFAULT_PREFIX}-zones/{s.zone}"
        store_timings = store_histogram()
        self.store = time_store(
            await open_configured_store(
                s.store, s.data_dir, s.etcd, default_prefix=prefix, key_index=PROXY_TYPES
            ),
            store_timings,
        )
        log.info(
            "zone %s: opened %s store%s at revision %d",
            s.zone,
            s.store,
            store_location(s.store, s.data_dir, s.etcd.etcd_endpoints, self.store),
            await self.store.revision(),
        )
        # Standalone, there is no global to send a Mesh: start with the same default mesh a
        # global would create (and, like it, only on the very first start).
        if not s.global_kds and await create_default_mesh(self.store, self.registry):
            log.info("standalone first start: created Mesh %r", DEFAULT_MESH)
            await create_default_hostname_generators(self.store, self.registry)
        if not s.global_kds:
            # No global to sync token keys from: this zone issues its own, like a global (user
            # tokens for its API, zone tokens for its ingresses).
            await bootstrap_credentials(
                self.store, (TokenKind.ZONE,), s.api_security.admin_token_file
            )
        # One cache of the store for KDS, the catalog, the dataplane server and the key job.
        self.cache = StoreCache(self.store, self._cache_types())
        await self.cache.start()
        self.api = ApiContext(
            store=self.store,
            registry=self.registry,
            mode=Mode.ZONE,
            zone=s.zone,
            federated=bool(s.global_kds),
            max_body_bytes=s.max_body_bytes,
            localhost_is_admin=s.api_security.api_localhost_is_admin,
        )
        self.api.collectors += [store_timings, self.kds_metrics.registry]
        if self._tls is not None and self._tls.ca_pem is not None:
            self.api.pinned_cas.append(("kds", "kds-ca-file", self._tls.ca_pem))
        await self._start_services(self.api)
        await self._start_dp_server(self.api)
        if isinstance(self.store, EtcdStore):
            await self._start_replica(self.api)
        if s.global_kds:
            self.api.kds_status = self._kds_status
            urls = ",".join(grpc_url(t, self._tls is not None) for t in s.global_kds)
            if self.leader is not None:
                log.info("zone %s: KDS client for the global at %s, when leader", s.zone, urls)
            else:
                self.kds = self._new_kds()
                await self.kds.start()
                log.info("zone %s: KDS client for the global at %s", s.zone, urls)
        else:
            log.info("zone %s: standalone (no --global-kds)", s.zone)
            # With a global, its Mesh deletions arrive by KDS and the zone keeps its own
            # resources; standalone, nothing may stay in a Mesh that is gone.
            sweeper = OrphanSweeper(self.store, self.registry)
            self._orphans = asyncio.create_task(sweeper.run(), name="orphan-sweep")
            # No global to make every Mesh's dataplane-token key either.
            keys = DataplaneKeyJob(self.store, self.cache)
            self._dataplane_keys = asyncio.create_task(keys.run(), name="dataplane-token-keys")
        if s.mads_address is not None:
            assert self.cache is not None
            self.mads = MadsServer(self.cache.subscribe(MADS_TYPES), s.zone)
            mads = await self.mads.start(s.mads_address)
            self.api.info["mads"] = f"http://{mads}"
            log.info("MADS listening on http://%s", mads)
        tls = server_tls(s.api_security.api_tls_cert, s.api_security.api_tls_key)
        self._server = ApiServer(self.api, s.api_address, "zone_cp.access", tls)
        api = await self._server.start()
        self.api.ready = True
        log.info(
            "API listening on %s://%s (instance %s)",
            self._server.scheme,
            api,
            self.api.instance_id,
        )

    async def _start_replica(self, api: ApiContext) -> None:
        """Replicas of one zone share its etcd store: each keeps its presence; the elected
        leader talks to the global (or the global would see the zone's streams replace each
        other), writes VIPs, and closes what dead replicas' proxies left marked connected."""
        assert self.store is not None and self.dpserver is not None
        s = self.settings
        self.replicas, election = for_store(
            self.store, api.instance_id, ttl=s.etcd_lease_ttl, role=ZONE_ROLE
        )
        await self.replicas.start()
        self.leader = leader = Leader(election)
        if s.global_kds:
            leader.add_job("kds-client", self._run_kds)
            leader.add_job("zone-services", self._write_services)
        self.dp_sweep = DeadReplicaSweep(self.replicas, self.dpserver.registration.sweep)
        leader.add_job("dp-crash-sweep", self.dp_sweep.run, every=DP_SWEEP_EVERY)
        api.leader_status = leader.status
        await leader.start()

    def _cache_types(self) -> list[str]:
        """Every type a part of this process reads from the store cache."""
        types = [*SERVICES_TYPES, *DPSERVER_TYPES, *MADS_TYPES]
        if self.settings.global_kds:
            types += types_zone_to_global(self.registry)
        else:
            types += mesh_keys.WATCHED
        return types

    async def _start_services(self, api: ApiContext) -> None:
        """Catalog, VIPs and DNS; the first table is complete before DNS answers."""
        assert self.store is not None
        s = self.settings
        # Replicas sharing an etcd store: the leader allocates VIPs, the others follow it.
        replicated = bool(s.global_kds) and isinstance(self.store, EtcdStore)
        self.services = services = ZoneServices(
            self.store, s.zone, s.vip_cidr, writer=not replicated, cache=self.cache
        )
        await services.start()
        self.dns = dns = ZoneDns(
            s.dns_address, s.dns_upstream, tcp_idle_timeout=s.dns_tcp_idle_timeout
        )
        address = await dns.start(services.snapshot.names)
        services.listen(lambda snapshot: dns.update(snapshot.names))

        async def view(mesh: str) -> dict[str, Any]:
            return services.services_json(mesh)

        api.services = view
        api.collectors += [services.collector(), dns.collector()]
        api.info["dns"] = str(address)
        upstream = "none" if s.dns_upstream is None else "{}:{}".format(*s.dns_upstream)
        log.info(
            "DNS listening on %s (udp+tcp): %d name(s), VIPs from %s, upstream %s",
            address,
            dns.server.table.size,
            s.vip_cidr,
            upstream,
        )

    async def _start_dp_server(self, api: ApiContext) -> None:
        """The config server of this zone's sidecars and ingresses (after the services: the
        first configs need the catalog)."""
        assert self.store is not None and self.services is not None
        s = self.settings
        self.dpserver = server = DataplaneServer(
            self.store,
            s.zone,
            self.services,
            CertIssuer(dt.timedelta(seconds=s.dp_cert_validity)),
            instance_id=api.instance_id,
            registry=self.registry,
            insight_flush=s.dp_insight_flush,
            max_receive_bytes=s.dp_max_message_bytes,
            # Replicas sharing a store may hold each other's proxies: their leader sweeps
            # by presence (_start_replica) instead.
            stale_after=None if isinstance(self.store, EtcdStore) else 30.0,
            cache=self.cache,
            keepalive=(s.dp_keepalive_interval, s.dp_keepalive_timeout),
        )
        address = await server.start(s.dp_server_address)
        api.collectors.append(server.collector())
        api.info["dpServer"] = f"grpc://{address}"
        log.info("dataplane config server listening on grpc://%s", address)

    def api_address(self) -> Address:
        assert self._server is not None, "not started"
        return self._server.address

    def _kds_security(self) -> None:
        """TLS and the zone token, checked before anything connects: a zone that cannot
        authenticate, or is told two contradictory things, does not start."""
        s = self.settings
        self._tls = zone_tls(s.kds_ca_file, s.kds_tls_skip_verify, s.kds_insecure)
        if s.zone_token_file is None:
            raise ValueError(
                "--global-kds needs --zone-token-file (the global refuses zones without a "
                f"token): issue one with `meshctl generate zone-token --zone {s.zone}`"
            )
        read_token_file(s.zone_token_file)  # readable and well-formed now, re-read later
        if self._tls is None:
            log.warning("zone %s: KDS is plaintext (--kds-insecure): tests only", s.zone)
        elif s.kds_tls_skip_verify:
            log.warning(
                "zone %s: --kds-tls-skip-verify: the global's certificate is NOT checked; "
                "whoever answers on the KDS address gets this zone's token and can feed it "
                "policies. Use --kds-ca-file",
                s.zone,
            )
        elif s.kds_ca_file is None:
            log.info("zone %s: KDS TLS checked against the system's trusted roots", s.zone)
        else:
            log.info("zone %s: KDS TLS pinned to the CA in %s", s.zone, s.kds_ca_file)

    def _new_kds(self) -> ZoneKds:
        assert self.store is not None
        s = self.settings
        return ZoneKds(
            self.store,
            self.registry,
            s.zone,
            s.global_kds,
            max_message_bytes=s.kds_max_message_bytes,
            reconnect_max=s.kds_reconnect_max,
            stale_timeout=s.kds_stale_timeout,
            tls=self._tls,
            token_file=s.zone_token_file,
            cache=self.cache,
            metrics=self.kds_metrics,
        )

    async def _run_kds(self) -> None:
        """The leader's job: the KDS client, from the store as the last leader left it."""
        kds = self._new_kds()
        try:
            await kds.start()
            self.kds = kds
            await asyncio.Event().wait()  # until the term ends (the job is cancelled)
        finally:
            self.kds = None
            await kds.stop()

    async def _write_services(self) -> None:
        """The leader's job: allocate and persist VIPs, keep the own ingresses' services."""
        assert self.services is not None
        self.services.set_writer(True)
        try:
            await asyncio.Event().wait()  # until the term ends
        finally:
            self.services.set_writer(False)

    def _kds_status(self) -> dict[str, Any]:
        if self.kds is not None:
            return self.kds.status()
        status = self._new_kds().status()  # a replica that is not the zone's leader
        status["state"] = STANDBY
        return status

    async def stop(self) -> None:
        for task in (self._orphans, self._dataplane_keys):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._orphans = self._dataplane_keys = None
        if self.leader is not None:
            await self.leader.stop()
        if self.kds is not None:
            await self.kds.stop()
            self.kds = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.mads is not None:
            await self.mads.stop()
            self.mads = None
        if self.dpserver is not None:
            await self.dpserver.stop()
            self.dpserver = None
        if self.replicas is not None:  # after the proxies' streams: the leader sweeps them now
            with suppress(StoreError, OSError):
                await self.replicas.stop()
        if self.dns is not None:
            await self.dns.close()
            self.dns = None
        if self.services is not None:
            await self.services.stop()
            self.services = None
        if self.cache is not None:
            await self.cache.stop()
            self.cache = None
        if self.store is not None:
            await self.store.close()
            self.store = None
