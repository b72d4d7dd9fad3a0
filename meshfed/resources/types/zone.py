"""Zone: one per zone control plane, created at the global (auto-created on first connect)."""

from __future__ import annotations

from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor

ZONE = TypeDescriptor(
    name="Zone",
    plural="zones",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    short_names=("zone",),
    description="A zone control plane known to the global.",
)
