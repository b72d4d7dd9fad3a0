"""Insights: status written by the system only (connections, sync state, health)."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor

ZONE_INSIGHT = TypeDescriptor(
    name="ZoneInsight",
    plural="zone-insights",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    system_only=True,
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
    description="A zone ingress's connection to its zone control plane and its health.",
)
