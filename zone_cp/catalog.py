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

import copy
from collections.abc import Container, Iterable
from typing import Any

from meshfed.dpconfig.catalog import Catalog, Predicate, available_services, build_catalog
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
        updated = ingress.clone()
        updated.spec["zone"] = zone
        updated.spec["availableServices"] = copy.deepcopy(wanted)
        out.append(updated)
    return out
