"""Kuma 2.x's service resources (issue 17): MeshService (a zone's, synced to the global and
on to every other zone, as ZoneIngresses are), MeshMultiZoneService (the global's, grouping
MeshServices of several zones) and HostnameGenerator (the global's: hostname templates).

MeshService and MeshMultiZoneService keep Kuma's `spec` and `status` at the top level of the
document (not `spec_wrapped`); their models are meshfed/resources/models/services.py.
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.common import (
    AGE_COLUMN,
    MESH_COLUMN,
    NAME_COLUMN,
    as_list,
    column,
    dig,
)

_MODELS = "meshfed.resources.models.services"


def _ports(res: Resource) -> str:
    ports = [dig(p, "port") for p in as_list(dig(res.spec, "spec", "ports"))]
    return ",".join(str(p) for p in ports if isinstance(p, int)) or "-"


def _vips(res: Resource) -> str:
    vips = [dig(v, "ip") for v in as_list(dig(res.spec, "status", "vips"))]
    return ",".join(v for v in vips if isinstance(v, str)) or "-"


def _hostnames(res: Resource) -> str:
    names = [dig(a, "hostname") for a in as_list(dig(res.spec, "status", "addresses"))]
    return ",".join(n for n in names if isinstance(n, str)) or "-"


def spec_of(res: Resource) -> dict[str, Any]:
    """The `spec` part of a MeshService or MeshMultiZoneService body."""
    spec = res.spec.get("spec")
    return spec if isinstance(spec, dict) else {}


MESH_SERVICE = TypeDescriptor(
    name="MeshService",
    plural="meshservices",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL, KdsFlag.SYNCED_ACROSS_ZONES}),
    short_names=("msvc", "meshservice"),
    model=f"{_MODELS}:MeshServiceSpec",
    columns=(
        NAME_COLUMN,
        MESH_COLUMN,
        column("ZONE", lambda r: r.meta.labels.get(LABEL_ZONE, "-")),
        column("PORTS", _ports),
        column("VIPS", _vips),
        column("ADDRESSES", _hostnames),
        AGE_COLUMN,
    ),
    description="A zone's service: the Dataplanes it selects, its ports, VIPs and hostnames.",
)

MESH_MULTI_ZONE_SERVICE = TypeDescriptor(
    name="MeshMultiZoneService",
    plural="meshmultizoneservices",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("mzsvc", "meshmultizoneservice"),
    model=f"{_MODELS}:MeshMultiZoneServiceSpec",
    columns=(NAME_COLUMN, MESH_COLUMN, column("PORTS", _ports), AGE_COLUMN),
    description="MeshServices of several zones behind one VIP and hostname.",
)

HOSTNAME_GENERATOR = TypeDescriptor(
    name="HostnameGenerator",
    plural="hostnamegenerators",
    scope=Scope.GLOBAL,
    spec_wrapped=True,
    owner=Mode.GLOBAL,
    # Also applied at a zone (Kuma: "global or zone"), with `kuma.io/origin: zone`: it names
    # that zone's services only, syncs up read-only and goes to no other zone (decision 149).
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE, KdsFlag.ZONE_TO_GLOBAL}),
    zone_origin=True,
    short_names=("hg", "hostnamegenerator"),
    model=f"{_MODELS}:HostnameGeneratorSpec",
    columns=(
        NAME_COLUMN,
        column("TEMPLATE", lambda r: str(r.spec.get("template") or "-")),
        AGE_COLUMN,
    ),
    description="A hostname template for the MeshServices (and multi-zone ones) it selects.",
)

SERVICE_TYPES: tuple[TypeDescriptor, ...] = (
    MESH_SERVICE,
    MESH_MULTI_ZONE_SERVICE,
    HOSTNAME_GENERATOR,
)
