"""Composition root of the global control plane: store, registry, KDS and API wired together.

`GlobalControlPlane` owns everything long-lived. Start order: store, default mesh, replica
presence, KDS (its mirror of the store is complete before the first zone is served), the
leader campaign (singleton jobs), API. Stop in reverse, so a zone never talks to a global
whose store is already closed. Several replicas may share an etcd store: see
`meshfed.ha.leader` and `global_cp.zone_liveness`.
"""

from __future__ import annotations

import functools
import logging
import socket
from contextlib import suppress
from typing import Any

from global_cp import mesh_ca
from global_cp.federation import Federation, KdsSettings
from global_cp.kds_lag import KdsLagCollector
from global_cp.mesh_ca import MeshCaJob
from global_cp.settings import GlobalSettings
from global_cp.zone_liveness import InsightSweep
from meshfed.api.context import ApiContext
from meshfed.api.server import ApiServer, server_tls
from meshfed.api.services import global_services
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
from meshfed.ha.presence import Replicas, for_store
from meshfed.kds.naming import types_global_to_zone
from meshfed.kds.options import grpc_url
from meshfed.kds.tls import (
    CA_FILE_NAME,
    KDS_CA_CERT,
    FileCert,
    IssuedCert,
    ServerTls,
    TlsSetupError,
    ensure_kds_ca,
    write_ca_file,
)
from meshfed.kds.views import global_mirror_types
from meshfed.pki.server_cert import server_names
from meshfed.resources.descriptors import Mode, Registry
from meshfed.resources.types import default_registry
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.cache import StoreCache
from meshfed.store.factory import open_configured_store
from meshfed.store.orphans import OrphanSweeper
from meshfed.store.timing import store_histogram, time_store

log = logging.getLogger("global_cp")
ROLE = "global"  # the presence and election keys under the etcd store's prefix


class GlobalControlPlane:
    def __init__(self, settings: GlobalSettings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or default_registry()
        self.mode = Mode.GLOBAL
        self.store: ResourceStore | None = None
        self.cache: StoreCache | None = None  # the process's one store cache (decision 80)
        self.api: ApiContext | None = None
        self.federation: Federation | None = None
        self.replicas: Replicas | None = None
        self.leader: Leader | None = None
        self.sweep: InsightSweep | None = None
        self.mesh_ca: MeshCaJob | None = None
        self.dataplane_keys: DataplaneKeyJob | None = None
        self.orphans: OrphanSweeper | None = None
        self._server: ApiServer | None = None

    async def start(self) -> None:
        s = self.settings
        store_timings = store_histogram()
        self.store = time_store(
            await open_configured_store(s.store, s.data_dir, s.etcd), store_timings
        )
        log.info(
            "opened %s store%s at revision %d",
            s.store,
            store_location(s.store, s.data_dir, s.etcd.etcd_endpoints, self.store),
            await self.store.revision(),
        )
        if s.default_mesh and await create_default_mesh(self.store, self.registry):
            log.info("first start: created Mesh %r", DEFAULT_MESH)
            await create_default_hostname_generators(self.store, self.registry)
        await self._credentials()
        kds_tls = await self._kds_tls()
        # One cache of the store for KDS, the mesh CA and the key job (one watch, one copy).
        types = [*global_mirror_types(types_global_to_zone(self.registry))]
        self.cache = cache = StoreCache(self.store, [*types, *mesh_ca.WATCHED, *mesh_keys.WATCHED])
        await cache.start()

        self.api = ApiContext(
            store=self.store,
            registry=self.registry,
            mode=self.mode,
            max_body_bytes=s.max_body_bytes,
            localhost_is_admin=s.api_security.api_localhost_is_admin,
        )
        self.replicas, election = for_store(
            self.store,
            self.api.instance_id,
            ttl=s.etcd_lease_ttl,
            role=ROLE,
            info={"hostname": self.api.hostname},
        )
        await self.replicas.start()
        self.federation = Federation(
            self.store,
            self.registry,
            KdsSettings(
                address=s.kds_address,
                max_message_bytes=s.kds_max_message_bytes,
                health_interval=s.zone_health_interval,
                offline_timeout=s.zone_offline_timeout,
                insight_flush=s.zone_insight_flush,
                tls=kds_tls,
            ),
            self.api.instance_id,
            self.replicas,
            cache,
        )
        self.api.collectors += [
            store_timings,
            self.federation.metrics.registry,
            KdsLagCollector(self.federation.zones),
        ]
        self.api.federation = self.federation.views
        self.api.before_delete = self.federation.deletion.before_delete
        self.api.after_delete = self.federation.deletion.after_delete
        self.api.services = functools.partial(global_services, self.store)
        kds = await self.federation.start()
        log.info("KDS listening on %s", grpc_url(kds, kds_tls is not None))
        leader = self.leader = Leader(election)
        self.sweep = InsightSweep(self.store, self.replicas, lambda: leader.is_leader)
        leader.add_job("zone-insight-sweep", self.sweep.run, every=s.zone_insight_flush)
        # Once per term, following the store until the term ends: every Mesh with builtin
        # mTLS gets its CA (global_cp.mesh_ca; safe even if two replicas overlap).
        self.mesh_ca = MeshCaJob(self.store, cache)
        leader.add_job("mesh-ca", self.mesh_ca.run)
        # And every Mesh gets its dataplane-token signing key (synced to the zones, which
        # verify and issue their sidecars' tokens with it).
        self.dataplane_keys = DataplaneKeyJob(self.store, cache)
        leader.add_job("dataplane-token-keys", self.dataplane_keys.run)
        # Once per term too: resources left without their Mesh (meshfed.store.orphans).
        self.orphans = OrphanSweeper(self.store, self.registry)
        leader.add_job("orphan-sweep", self.orphans.run)
        self.api.leader_status = self.leader_status
        await leader.start()
        tls = server_tls(s.api_security.api_tls_cert, s.api_security.api_tls_key)
        self._server = ApiServer(self.api, s.api_address, "global_cp.access", tls)
        api = await self._server.start()
        self.api.ready = True
        log.info(
            "API listening on %s://%s (instance %s)",
            self._server.scheme,
            api,
            self.api.instance_id,
        )

    async def _credentials(self) -> None:
        """Token signing keys and the bootstrap admin token: made on the first start (safe
        when replicas race), their public halves published for the zones."""
        assert self.store is not None
        await bootstrap_credentials(
            self.store,
            (TokenKind.ZONE, TokenKind.USER),
            self.settings.api_security.admin_token_file,
        )

    async def _kds_tls(self) -> ServerTls | None:
        """The KDS port's TLS: the operator's certificate, or one issued at each start (and
        renewed while running) from the KDS CA kept in the store; None with --kds-insecure."""
        assert self.store is not None
        s = self.settings
        own = s.kds_tls_cert is not None or s.kds_tls_key is not None
        if s.kds_insecure:
            if own or s.kds_ca_out is not None or s.kds_tls_san:
                raise TlsSetupError(
                    "--kds-insecure (plaintext) contradicts the --kds-tls-*/--kds-ca-out flags"
                )
            log.warning(
                "KDS is plaintext (--kds-insecure): zone tokens travel in clear; tests only"
            )
            return None
        if own:
            if s.kds_tls_cert is None or s.kds_tls_key is None:
                raise TlsSetupError("--kds-tls-cert and --kds-tls-key go together")
            if s.kds_tls_san or s.kds_ca_out is not None:
                raise TlsSetupError(
                    "--kds-tls-san and --kds-ca-out concern the certificate the global issues "
                    "itself; with --kds-tls-cert, the names and the CA are your certificate's"
                )
            log.info("KDS TLS certificate from %s (re-read when it changes)", s.kds_tls_cert)
            return ServerTls(FileCert(s.kds_tls_cert, s.kds_tls_key))
        ca, created = await ensure_kds_ca(self.store)
        if created:
            log.info("first start: created the KDS CA (GlobalSecret %s)", KDS_CA_CERT)
        try:
            names = server_names(s.kds_address.host, socket.gethostname(), s.kds_tls_san)
            source = IssuedCert(ca, names)
        except ValueError as exc:  # PkiError: a bad --kds-tls-san entry
            raise TlsSetupError(f"--kds-tls-san: {exc}") from None
        log.info("KDS TLS certificate for %s", ", ".join(names))
        out = s.kds_ca_out
        if out is None and s.store == "sqlite":
            out = s.data_dir / CA_FILE_NAME
        if out is not None:
            write_ca_file(out, ca.cert_pem)
            log.info("KDS CA certificate written to %s: give it to zones (--kds-ca-file)", out)
        else:
            log.info(
                "KDS CA certificate is GlobalSecret %s; --kds-ca-out FILE writes it for zones",
                KDS_CA_CERT,
            )
        return ServerTls(source)

    def api_address(self) -> Address:
        """The bound address (differs from the setting when the port was 0)."""
        assert self._server is not None, "not started"
        return self._server.address

    async def leader_status(self) -> dict[str, Any]:
        """`GET /_leader`: the leadership, the live replicas and the sweep's counters."""
        assert self.leader is not None and self.replicas is not None and self.sweep is not None
        status = await self.leader.status()
        try:
            status["replicas"] = await self.replicas.describe()
        except StoreError as exc:
            status["replicas"] = None
            status["replicasError"] = str(exc)
        status["sweep"] = {
            "markedOffline": self.sweep.marked_offline,
            "removedInsights": self.sweep.removed,
        }
        return status

    async def stop(self) -> None:
        # Leader and replicas stay referenced once stopped: `/_leader` may still be asked.
        if self.leader is not None:
            await self.leader.stop()  # resigns: another replica takes the jobs at once
        if self.federation is not None:
            await self.federation.stop()
            self.federation = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.replicas is not None:
            with suppress(StoreError):
                await self.replicas.stop()
        if self.cache is not None:
            await self.cache.stop()
            self.cache = None
        if self.store is not None:
            await self.store.close()
            self.store = None
