"""ZoneIngress: a zone's entry point for cross-zone traffic, advertising its services."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor

ZONE_INGRESS = TypeDescriptor(
    name="ZoneIngress",
    plural="zoneingresses",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL, KdsFlag.SYNCED_ACROSS_ZONES}),
    short_names=("zi", "zoneingress"),
    description="A zone ingress and the services it makes reachable from other zones.",
)
