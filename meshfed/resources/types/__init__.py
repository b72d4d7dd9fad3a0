"""Every resource type meshfed knows, as descriptors. The registry is built from this list."""

from __future__ import annotations

from functools import cache

from meshfed.resources.descriptors import Registry, TypeDescriptor
from meshfed.resources.types import (
    dataplane,
    external,
    insights,
    mesh,
    passthrough,
    policies,
    secret,
    services,
    vips,
    zone,
    zone_egress,
    zone_ingress,
)

ALL_TYPES: tuple[TypeDescriptor, ...] = (
    mesh.MESH,
    zone.ZONE,
    insights.ZONE_INSIGHT,
    secret.SECRET,
    secret.GLOBAL_SECRET,
    dataplane.DATAPLANE,
    insights.DATAPLANE_INSIGHT,
    zone_ingress.ZONE_INGRESS,
    insights.ZONE_INGRESS_INSIGHT,
    vips.VIRTUAL_IPS,
    *services.SERVICE_TYPES,
    *policies.POLICIES,
    external.MESH_EXTERNAL_SERVICE,
    passthrough.MESH_PASSTHROUGH,
    zone_egress.ZONE_EGRESS,
    zone_egress.ZONE_EGRESS_INSIGHT,
)


@cache
def default_registry() -> Registry:
    return Registry(ALL_TYPES)
