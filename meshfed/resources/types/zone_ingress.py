"""ZoneIngress: a zone's entry point for cross-zone traffic, advertising its services."""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import (
    AGE_COLUMN,
    NAME_COLUMN,
    as_list,
    column,
    dig,
)


def public_address(spec: dict[str, Any]) -> str:
    """Where other zones dial this ingress: the advertised address if any, as host:port."""
    net = dig(spec, "networking")
    host = dig(net, "advertisedAddress") or dig(net, "address")
    port = dig(net, "advertisedPort") if dig(net, "advertisedAddress") else dig(net, "port")
    if not isinstance(host, str):
        return "-"
    return f"{host}:{port}" if isinstance(port, int) else host


ZONE_INGRESS = TypeDescriptor(
    name="ZoneIngress",
    plural="zoneingresses",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL, KdsFlag.SYNCED_ACROSS_ZONES}),
    short_names=("zi", "zoneingress"),
    model="meshfed.resources.models.proxies:ZoneIngressSpec",
    columns=(
        NAME_COLUMN,
        column("ZONE", lambda r: str(r.spec.get("zone") or "-")),
        column("ADDRESS", lambda r: public_address(r.spec)),
        column("SERVICES", lambda r: str(len(as_list(r.spec.get("availableServices"))))),
        AGE_COLUMN,
    ),
    description="A zone ingress and the services it makes reachable from other zones.",
)
