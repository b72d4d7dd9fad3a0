"""Secret: mesh-scoped opaque data (the mesh CA), synced from the global to every zone."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.schema import Obj, Str, as_validator, is_base64
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN

SECRET_SCHEMA = Obj(
    {"data": Str(predicate=is_base64, message="must be base64-encoded (standard alphabet)")},
    required=("data",),
)

SECRET = TypeDescriptor(
    name="Secret",
    plural="secrets",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("secret",),
    validate=as_validator(SECRET_SCHEMA),
    # Never a DATA column: tables must not print key material.
    columns=(NAME_COLUMN, MESH_COLUMN, AGE_COLUMN),
    description="Mesh-scoped secret data (base64), e.g. the mesh CA.",
)
