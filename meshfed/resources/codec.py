"""Kuma's JSON/YAML shape <-> Resource, with every structural problem reported at once."""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import Registry, Scope, TypeDescriptor
from meshfed.resources.envelope import MAX_NAME as MAX_NAME
from meshfed.resources.envelope import META_KEYS, meta_errors
from meshfed.resources.envelope import NAME_RE as NAME_RE
from meshfed.resources.envelope import NAME_RULE as NAME_RULE
from meshfed.resources.envelope import check_labels as check_labels
from meshfed.resources.envelope import check_name as check_name
from meshfed.resources.envelope import is_name as is_name
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.model import Meta, Resource

__all__ = [
    "MAX_NAME",
    "NAME_RE",
    "NAME_RULE",
    "check_labels",
    "check_name",
    "is_name",
    "resource_from_dict",
    "resource_to_dict",
]


def resource_to_dict(res: Resource, desc: TypeDescriptor) -> dict[str, Any]:
    """Kuma's order: type, mesh, name, times, labels, then spec or the top-level fields."""
    out: dict[str, Any] = {"type": res.type}
    if desc.scope is Scope.MESH:
        out["mesh"] = res.meta.mesh
    out["name"] = res.meta.name
    if res.meta.creation_time:
        out["creationTime"] = res.meta.creation_time
    if res.meta.modification_time:
        out["modificationTime"] = res.meta.modification_time
    if res.meta.labels:
        out["labels"] = dict(res.meta.labels)
    if desc.spec_wrapped:
        out["spec"] = res.spec
    else:
        out.update(res.spec)
    return out


def resource_from_dict(
    data: Any,
    registry: Registry,
    *,
    expected_type: str | None = None,
    validate: bool = True,
) -> Resource:
    """Parse one document. Raises ValidationError listing every problem found."""
    if not isinstance(data, dict):
        raise ValidationError([FieldError("", "a resource must be a JSON/YAML object")])
    errors: list[FieldError] = []
    type_name = data.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ValidationError([FieldError("type", "is required and must be a string")])
    try:
        desc = registry.get(type_name)
    except KeyError:
        raise ValidationError(
            [FieldError("type", f"unknown resource type {type_name!r}")]
        ) from None
    if expected_type is not None and type_name != expected_type:
        errors.append(FieldError("type", f"must be {expected_type!r} for this path"))

    errors += meta_errors(data, type_name, mesh_scoped=desc.scope is Scope.MESH)
    mesh = data.get("mesh", "") if desc.scope is Scope.MESH else ""
    labels = data.get("labels") or {}

    meta_keys = set(META_KEYS)
    if desc.spec_wrapped:
        for key in data:
            if key not in meta_keys and key != "spec":
                errors.append(FieldError(key, "unknown field"))
        body = data.get("spec")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            errors.append(FieldError("spec", "must be an object"))
            body = {}
        prefix = "spec"
    else:
        body = {k: v for k, v in data.items() if k not in meta_keys}
        prefix = ""
    if validate:
        errors += desc.validate(body, prefix)
    if errors:
        raise ValidationError(errors)
    meta = Meta(
        name=str(data["name"]),
        mesh=str(mesh) if desc.scope is Scope.MESH else "",
        labels={str(k): str(v) for k, v in labels.items()},
        creation_time=str(data.get("creationTime", "")),
        modification_time=str(data.get("modificationTime", "")),
    )
    return Resource(type=type_name, meta=meta, spec=body)
