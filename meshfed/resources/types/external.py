"""MeshExternalService: a service outside the mesh, written at the global and synced to every
zone, where it gets a hostname and a VIP and is reached through the zone egress (model:
meshfed/resources/models/external.py)."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN, column, dig


def _port_cell(spec: dict[str, object]) -> str:
    port, protocol = dig(spec, "match", "port"), dig(spec, "match", "protocol") or "tcp"
    return f"{port}/{protocol}" if isinstance(port, int) else "-"


MESH_EXTERNAL_SERVICE = TypeDescriptor(
    name="MeshExternalService",
    plural="meshexternalservices",
    scope=Scope.MESH,
    spec_wrapped=True,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("extsvc", "mes"),
    model="meshfed.resources.models.external:MeshExternalServiceSpec",
    columns=(
        NAME_COLUMN,
        MESH_COLUMN,
        column("PORT", lambda r: _port_cell(r.spec)),
        column("TLS", lambda r: "on" if dig(r.spec, "tls", "enabled") is True else "off"),
        AGE_COLUMN,
    ),
    description="A service outside the mesh, reached through the zone egress.",
)
