"""ZoneEgress: a zone's exit for MeshExternalService traffic (zone_egress/), registered by the
zone-cp when the egress connects with a zone token of scope `egress`; synced up to the global
(Kuma's flags) for the views. Its insight holds its connection history, as an ingress's does."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import AGE_COLUMN, NAME_COLUMN, column, dig

ZONE_EGRESS = TypeDescriptor(
    name="ZoneEgress",
    plural="zoneegresses",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    short_names=("ze", "zoneegress"),
    model="meshfed.resources.models.external:ZoneEgressSpec",
    columns=(
        NAME_COLUMN,
        column("ZONE", lambda r: str(r.spec.get("zone") or "-")),
        column(
            "ADDRESS",
            lambda r: f"{dig(r.spec, 'networking', 'address')}:{dig(r.spec, 'networking', 'port')}",
        ),
        AGE_COLUMN,
    ),
    description="A zone egress: where the zone's sidecars send MeshExternalService traffic.",
)

ZONE_EGRESS_INSIGHT = TypeDescriptor(
    name="ZoneEgressInsight",
    plural="zoneegressinsights",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    system_only=True,
    model="meshfed.resources.models.system:InsightSpec",
    columns=(NAME_COLUMN, AGE_COLUMN),
    description="A zone egress's connection to its zone control plane.",
)
