"""The zone's MeshServices, MeshMultiZoneServices and HostnameGenerators inside the services
pass (zone_cp.services, issue 17): which VIP keys they need, the targets and hostnames each
snapshot carries (MeshExternalServices' hostnames too: their VIP keys are
zone_cp.services'), and the leader's writes (generated MeshServices, their status).

VIPs come from the zone's one VIP book, under keys no `kuma.io/service` can have
(meshfed.dpconfig.meshservices.vip_key), so they share the range without colliding, are
persisted in VirtualIPs before DNS answers with them, and stay reserved when a service goes
away (decision 25): a MeshService keeps its VIP across KDS reconnects and zone-cp restarts
(the VIP is the book's, not a field rewritten on every resync as in Kuma #13592).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from meshfed.dpconfig.catalog import VipKey
from meshfed.dpconfig.meshservices import (
    MESH_MULTI_ZONE_SERVICE,
    MESH_SERVICE,
    ServiceTarget,
    is_target_key,
    resolve_targets,
    vip_key,
)
from meshfed.resources.model import Resource
from meshfed.resources.types.common import dig
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.external import MESH_EXTERNAL_SERVICE as MES_TYPE
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.services import (
    HOSTNAME_GENERATOR,
)
from meshfed.resources.types.services import (
    MESH_MULTI_ZONE_SERVICE as MZS_TYPE,
)
from meshfed.resources.types.services import (
    MESH_SERVICE as MS_TYPE,
)
from meshfed.store.base import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore
from meshfed.store.cache import CacheView
from zone_cp.dns import NameSet
from zone_cp.hostnames import MESH_EXTERNAL_SERVICE, Hostnames, hostnames
from zone_cp.meshservice_gen import GENERATING_MODES, generation_writes, mode_of, status_writes

log = logging.getLogger("zone_cp.service_targets")

TYPES: Final = (MS_TYPE.name, MZS_TYPE.name, HOSTNAME_GENERATOR.name, MES_TYPE.name)


Entries = CacheView[Resource]


def _all(mirror: Entries, type_name: str) -> list[Resource]:
    return [r for r, _ in mirror.entries(type_name)]


@dataclass
class ServiceTargets:
    zone: str
    dirty: bool = True  # a MeshService, MeshMultiZoneService, generator or Mesh changed
    generate: bool = True  # a Dataplane or Mesh changed: generation may differ
    targets: tuple[ServiceTarget, ...] = ()
    names: Hostnames = field(default_factory=Hostnames)
    _keys: list[VipKey] = field(default_factory=list)
    _vips: Mapping[VipKey, str] | None = None
    # the MeshServices' VIPs by "mesh/name", for the VIPs (by identity) they were taken from
    _by_name: tuple[Mapping[VipKey, str] | None, dict[str, str]] = (None, {})

    def on_change(self, type_name: str) -> None:
        if type_name in TYPES or type_name == MESH.name:
            self.dirty = True
        if type_name in (DATAPLANE.name, MESH.name):
            self.generate = True

    def vip_keys(self, mirror: Entries, meshes: frozenset[str]) -> tuple[list[VipKey], bool]:
        """The VIP keys the targets need, and whether they changed since the last call."""
        if not self.dirty:
            return self._keys, False
        keys = [
            vip_key(kind, r.mesh, r.name)
            for kind in (MESH_SERVICE, MESH_MULTI_ZONE_SERVICE)
            for r in _all(mirror, kind)
            if r.mesh in meshes
        ]
        changed = keys != self._keys
        self._keys = keys
        return keys, changed

    def publish(
        self, mirror: Entries, vips: Mapping[VipKey, str], names: NameSet
    ) -> tuple[tuple[ServiceTarget, ...], bool]:
        """The targets for these VIPs, with their hostnames added to `names` (a fresh set the
        caller owns); whether they differ from the last ones."""
        if self.dirty or vips is not self._vips:
            services = _all(mirror, MS_TYPE.name)
            multi = _all(mirror, MZS_TYPE.name)
            self.targets = resolve_targets(self.zone, services, multi, vips)
            self.names = hostnames(
                self.zone,
                _all(mirror, HOSTNAME_GENERATOR.name),
                [
                    *((MESH_SERVICE, r) for r in services),
                    *((MESH_MULTI_ZONE_SERVICE, r) for r in multi),
                    *((MESH_EXTERNAL_SERVICE, r) for r in _all(mirror, MES_TYPE.name)),
                ],
                vips,
                names.records,
            )
            self._vips = vips
            self.dirty = False
            changed = True
        else:
            changed = False
        names.records.update(self.names.records)
        return self.targets, changed

    async def write(
        self, store: ResourceStore, mirror: Entries, vips: Mapping[VipKey, str]
    ) -> None:
        """The leader's writes: generated MeshServices, then their status."""
        meshes = _all(mirror, MESH.name)
        services = _all(mirror, MS_TYPE.name)
        if self.generate:
            self.generate = False
            if any(mode_of(m) in GENERATING_MODES for m in meshes) or services:
                writes, deletes = generation_writes(
                    self.zone, meshes, _all(mirror, DATAPLANE.name), services
                )
                await _apply(store, writes, deletes)
        if not services:
            return  # no status to write (the common case: a pass per registration burst)
        mtls = frozenset(m.name for m in meshes if dig(m.spec, "mtls", "enabledBackend"))
        await _apply(store, status_writes(services, self._names_of(vips), self.names, mtls), [])

    def _names_of(self, vips: Mapping[VipKey, str]) -> dict[str, str]:
        """The MeshServices' VIPs by "mesh/name"; recomputed only when the snapshot's VIPs
        are a new mapping (they are shared while unchanged), not on every pass."""
        seen, by_name = self._by_name
        if seen is not vips:
            by_name = {
                f"{k.mesh}/{k.service}": v
                for k, v in vips.items()
                if is_target_key(k) and k.zone == MESH_SERVICE
            }
            self._by_name = (vips, by_name)
        return by_name


async def _apply(store: ResourceStore, writes: list[Resource], deletes: list[Resource]) -> None:
    for res in writes:
        try:
            if res.meta.version:
                await store.update(res, expected_version=res.meta.version)
            else:
                await store.create(res)
            log.info("MeshService %s (mesh %s) written", res.name, res.mesh)
        except (ConflictError, NotFoundError, AlreadyExistsError):
            continue  # changed meanwhile: that change starts another pass
    for res in deletes:
        with contextlib.suppress(NotFoundError):
            await store.delete(res.type, res.mesh, res.name)
            log.info("MeshService %s (mesh %s) removed: no Dataplane has it", res.name, res.mesh)
