"""Zone: one per zone control plane, created at the global (auto-created on first connect)."""

from __future__ import annotations

from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor
from meshfed.resources.types.common import AGE_COLUMN, NAME_COLUMN, column


def zone_enabled(spec: dict[str, object]) -> bool:
    """Kuma's default: a Zone without `enabled` is enabled."""
    return spec.get("enabled") is not False


ZONE = TypeDescriptor(
    name="Zone",
    plural="zones",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    short_names=("zone",),
    model="meshfed.resources.models.system:ZoneSpec",
    columns=(
        NAME_COLUMN,
        column("ENABLED", lambda r: str(zone_enabled(r.spec)).lower()),
        AGE_COLUMN,
    ),
    description="A zone control plane known to the global.",
)
