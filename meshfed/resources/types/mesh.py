"""Mesh: Kuma's top-level fields (mtls with a builtin CA backend, ...)."""

from __future__ import annotations

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor

MESH = TypeDescriptor(
    name="Mesh",
    plural="meshes",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("mesh",),
    description="A mesh: the unit of isolation, trust (mTLS CA) and policy.",
)
