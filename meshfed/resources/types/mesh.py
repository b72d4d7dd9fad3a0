"""Mesh: Kuma's top-level fields (mtls with a builtin CA backend, routing, constraints, ...).

The model is meshfed/resources/models/mesh.py:MeshSpec. Fields of Kuma's shape that nothing in
meshfed acts on are refused by the descriptor's gate, as the policies' unenforced fields are.
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError, join
from meshfed.resources.types.common import AGE_COLUMN, NAME_COLUMN, column, dig

# Mesh fields of Kuma's shape that nothing in meshfed acts on, each with the reason. They are
# declared by the model (Kuma's shape: documents round-trip, schema tests use them) and
# refused by the Mesh's gate, as the policies' unenforced fields are (docs/architecture.md).
MESH_NOT_ENFORCED = "is not enforced by meshfed"
UNENFORCED_MESH_FIELDS: dict[tuple[str, ...], str] = {
    ("skipCreatingInitialPolicies",): "meshfed creates no initial default policies to skip",
    ("routing", "localityAwareLoadBalancing"): "locality-aware load balancing is on by "
    "default and set per service with MeshLoadBalancingStrategy localityAwareness",
    ("constraints", "dataplaneProxy"): "Dataplanes are not checked against requirements or "
    "restrictions",
}


def _unenforced(body: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for steps, reason in UNENFORCED_MESH_FIELDS.items():
        if dig(body, *steps) is not None:
            where = path
            for step in steps:
                where = join(where, step)
            errors.append(FieldError(where, f"{MESH_NOT_ENFORCED}: {reason}"))
    return errors


def _mtls_cell(spec: dict[str, Any]) -> str:
    enabled = dig(spec, "mtls", "enabledBackend")
    return f"{enabled}" if isinstance(enabled, str) and enabled else "off"


MESH = TypeDescriptor(
    name="Mesh",
    plural="meshes",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("mesh",),
    model="meshfed.resources.models.mesh:MeshSpec",
    gate=_unenforced,
    columns=(NAME_COLUMN, column("MTLS", lambda r: _mtls_cell(r.spec)), AGE_COLUMN),
    description="A mesh: the unit of isolation, trust (mTLS CA) and policy.",
)
