"""Dataplane: a workload's sidecar, in Kuma's Universal shape (networking.inbound/outbound)."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor

DATAPLANE = TypeDescriptor(
    name="Dataplane",
    plural="dataplanes",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    short_names=("dp",),
    description="A sidecar and the inbounds it serves; owned by its zone.",
)
