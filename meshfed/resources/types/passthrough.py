"""MeshPassthrough: which destinations outside the mesh a sidecar reaches directly (model:
meshfed/resources/models/passthrough.py; enforced by mesh-dp's passthrough proxy, decision
158). A global policy, synced to zones like the others."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN, column, dig
from meshfed.resources.types.targetref import describe

MESH_PASSTHROUGH = TypeDescriptor(
    name="MeshPassthrough",
    plural="meshpassthroughs",
    scope=Scope.MESH,
    spec_wrapped=True,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("mpt",),
    model="meshfed.resources.models.passthrough:MeshPassthroughSpec",
    columns=(
        NAME_COLUMN,
        MESH_COLUMN,
        column("TARGETREF", lambda r: describe(r.spec.get("targetRef"))),
        column("MODE", lambda r: str(dig(r.spec, "default", "passthroughMode") or "None")),
        AGE_COLUMN,
    ),
    description="Destinations outside the mesh a sidecar may reach directly.",
)
