"""A zone's service catalog from what its store holds, and its own ingresses' advertisement.
Pure: resources in, catalog and resources to write out (zone_cp.services does the I/O).

The store of a zone holds its own Dataplanes and ZoneIngresses and, with `kuma.io/origin:
global`, the other zones' ZoneIngresses relayed by the global. The catalog is built by
`meshfed.dpconfig.catalog.build_catalog`; this module picks its inputs:

- Dataplanes of meshes that exist (a deleted mesh's leftovers resolve nothing);
- remote ingresses: the relayed copies, their `zone` taken from the `kuma.io/zone` label the
  global stamps when the copy lacks one (an operator-registered ingress may not set it);
- own ingresses: the zone's local ZoneIngresses, whose `availableServices` (and `zone`) this
  zone-cp keeps equal to what its healthy Dataplane inbounds offer, or empty while the
  ingress's proxy is disconnected (a dead ingress must not attract other zones' traffic; an
  ingress with no services gives other zones no endpoint).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import replace
from typing import Any

from meshfed.dpconfig.catalog import (
    Catalog,
    CatalogIndex,
    Predicate,
    ServiceKey,
    VipKey,
    available_services,
    build_catalog,
)
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_GLOBAL, Resource


def _always(resource: Resource) -> bool:
    return True


def is_relayed(ingress: Resource) -> bool:
    """A copy of another zone's ingress, sent by the global (read-only here)."""
    return ingress.meta.labels.get(LABEL_ORIGIN) == ORIGIN_GLOBAL


def remote_ingress(ingress: Resource) -> Resource:
    """The relayed ingress with its `zone` set from the global's label when missing."""
    if isinstance(ingress.spec.get("zone"), str) and ingress.spec["zone"]:
        return ingress
    zone = ingress.meta.labels.get(LABEL_ZONE)
    if not zone:
        return ingress
    copy = Resource(ingress.type, ingress.meta, dict(ingress.spec))
    copy.spec["zone"] = zone
    return copy


def zone_catalog(
    zone: str,
    meshes: Container[str],
    dataplanes: Iterable[Resource],
    ingresses: Iterable[Resource],
    online: Predicate = _always,
) -> Catalog:
    """The services `zone` resolves: its own healthy inbounds plus what other zones advertise."""
    return build_catalog(
        zone,
        [dp for dp in dataplanes if dp.meta.mesh in meshes],
        [remote_ingress(i) for i in ingresses if is_relayed(i)],
        online=online,
    )


def own_available_services(
    zone: str,
    meshes: Container[str],
    dataplanes: Iterable[Resource],
    online: Predicate = _always,
) -> list[dict[str, Any]]:
    """What the zone's own ingresses advertise (Kuma's shape, with instance counts)."""
    return available_services([dp for dp in dataplanes if dp.meta.mesh in meshes], zone, online)


def ingress_updates(
    zone: str,
    ingresses: Iterable[Resource],
    available: list[dict[str, Any]],
    offline: Container[str] = frozenset(),
) -> list[Resource]:
    """The zone's own ingresses whose `zone` or `availableServices` differ from what they
    should advertise, as they should be (same version, for a conditional update). Those
    named in `offline` (their proxy is disconnected) should advertise nothing."""
    out: list[Resource] = []
    for ingress in ingresses:
        if is_relayed(ingress):
            continue
        wanted = [] if ingress.meta.name in offline else available
        current = ingress.spec.get("availableServices") or []
        if ingress.spec.get("zone") == zone and current == wanted:
            continue
        # The spec is copied shallowly: `wanted` is a new list nobody else changes, and
        # deep-copying the old advertisement (every service of the zone) would cost more
        # than the rest of the pass.
        spec = {**ingress.spec, "zone": zone, "availableServices": wanted}
        updated = Resource(
            ingress.type, replace(ingress.meta, labels=dict(ingress.meta.labels)), spec
        )
        out.append(updated)
    return out


class ZoneCatalog:
    """`zone_catalog`, `own_available_services` and the catalog's VIP keys, kept current one
    store change at a time (meshfed.dpconfig.catalog.CatalogIndex): a Dataplane or ZoneIngress
    change costs the services it touches, not the zone's size. A change of the mesh set (or
    of what `online` answers) needs `reset`, which reads everything again."""

    def __init__(self, zone: str, online: Predicate = _always) -> None:
        self.zone = zone
        self.online = online
        self.meshes: frozenset[str] = frozenset()
        self._index = CatalogIndex(zone, online=online)
        self._vip_keys: dict[ServiceKey, tuple[VipKey, ...]] = {}
        self._keys_changed = False

    def reset(
        self, meshes: Iterable[str], dataplanes: Iterable[Resource], ingresses: Iterable[Resource]
    ) -> None:
        self.meshes = frozenset(meshes)
        self._index = CatalogIndex(self.zone, online=self.online)
        self._vip_keys = {}
        self._keys_changed = True
        for res in [*dataplanes, *ingresses]:
            self.put(res.type, res.meta.mesh, res.meta.name, res)

    def put(self, type_name: str, mesh: str, name: str, res: Resource | None) -> None:
        """The store's new state of one Dataplane or ZoneIngress (None: deleted)."""
        if type_name == "Dataplane" and res is not None and mesh in self.meshes:
            self._index.put(res)
        elif type_name == "ZoneIngress" and res is not None and is_relayed(res):
            self._index.put(remote_ingress(res))
        else:
            self._index.remove(type_name, mesh, name)

    def catalog(self) -> Catalog:
        return self._index.catalog()

    def available(self) -> list[dict[str, Any]]:
        return self._index.available()

    def take_changed(self) -> set[ServiceKey]:
        """The services whose entry changed since the last call; notes whether the VIP keys
        changed with them (`take_vip_keys`)."""
        changed = self._index.take_changed()
        for key in changed:
            entry = self._index.entry(*key)
            keys: tuple[VipKey, ...] = ()
            if entry is not None:
                keys = (VipKey(*key), *(VipKey(*key, z) for z in entry.zones(self.zone)))
            if self._vip_keys.get(key, ()) != keys:
                self._keys_changed = True
                if keys:
                    self._vip_keys[key] = keys
                else:
                    del self._vip_keys[key]
        return changed

    def take_vip_keys(self) -> list[VipKey] | None:
        """Every VIP key the catalog needs if they changed since the last call, else None."""
        if not self._keys_changed:
            return None
        self._keys_changed = False
        return [k for keys in self._vip_keys.values() for k in keys]
