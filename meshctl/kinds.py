"""What the user typed as TYPE -> a type descriptor, or a usage error listing every known type."""

from __future__ import annotations

from meshctl.errors import EXIT_USAGE, CliError
from meshfed.resources.descriptors import Registry, TypeDescriptor
from meshfed.resources.unsupported import unsupported_type


def known_types(registry: Registry) -> list[str]:
    """One line per type: the name, then what else may be typed for it."""
    lines = []
    for desc in registry:
        aliases = [desc.plural, *(s for s in desc.short_names if s != desc.name.lower())]
        lines.append(f"{desc.name} ({', '.join(aliases)})")
    return lines


def resolve_type(registry: Registry, typed: str) -> TypeDescriptor:
    desc = registry.lookup(typed.strip())
    if desc is None:
        missing = unsupported_type(typed.strip())
        if missing is not None:
            raise CliError(missing.message(), EXIT_USAGE)
        raise CliError(
            f"unknown resource type {typed!r}; known types (name, then plural and short names):",
            EXIT_USAGE,
            known_types(registry),
        )
    return desc
