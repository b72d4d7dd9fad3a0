"""Insights: status written by the system only (connections, sync state, health).

Their fields belong to the components that write them, so any field is accepted here; only
the shape (an object) is checked.
"""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN

_STATUS = "meshfed.resources.models.system:InsightSpec"

ZONE_INSIGHT = TypeDescriptor(
    name="ZoneInsight",
    plural="zone-insights",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    system_only=True,
    model=_STATUS,
    columns=(NAME_COLUMN, AGE_COLUMN),
    description="A zone's KDS connection history and per-type sync state.",
)

DATAPLANE_INSIGHT = TypeDescriptor(
    name="DataplaneInsight",
    plural="dataplane-insights",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    system_only=True,
    model=_STATUS,
    columns=(NAME_COLUMN, MESH_COLUMN, AGE_COLUMN),
    description="A dataplane's connection to its zone control plane and its health.",
)

ZONE_INGRESS_INSIGHT = TypeDescriptor(
    name="ZoneIngressInsight",
    plural="zone-ingress-insights",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    system_only=True,
    model=_STATUS,
    columns=(NAME_COLUMN, AGE_COLUMN),
    description="A zone ingress's connection to its zone control plane and its health.",
)
