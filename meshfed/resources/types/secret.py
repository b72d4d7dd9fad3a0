"""Secret: mesh-scoped opaque data (the mesh CA), synced from the global to every zone."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor

SECRET = TypeDescriptor(
    name="Secret",
    plural="secrets",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("secret",),
    description="Mesh-scoped secret data (base64), e.g. the mesh CA.",
)
