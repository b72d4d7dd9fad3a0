"""Kuma's JSON/YAML shape <-> Resource, with every structural problem reported at once."""

from __future__ import annotations

import re
from typing import Any

from meshfed.resources.descriptors import Registry, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.model import Meta, Resource

# Kuma Universal accepts DNS-1123-like names; dots allow Kuma's "<name>.<hash>" zone names.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
MAX_LABEL_VALUE = 63


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


def check_name(value: Any, field: str) -> list[FieldError]:
    if not isinstance(value, str) or not value:
        return [FieldError(field, "must be a non-empty string")]
    if not NAME_RE.match(value):
        return [
            FieldError(
                field,
                "must consist of lower case alphanumeric characters, '-', '.' or '_', start and "
                "end with an alphanumeric character, and be at most 253 characters",
            )
        ]
    return []


def check_labels(value: Any, field: str = "labels") -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [FieldError(field, "must be a map of string keys to string values")]
    errors: list[FieldError] = []
    for k, v in value.items():
        if not isinstance(k, str) or not LABEL_KEY_RE.match(k):
            errors.append(FieldError(f"{field}[{k!r}]", "invalid label key"))
        if not isinstance(v, str):
            errors.append(FieldError(f"{field}[{k!r}]", "label value must be a string"))
        elif len(v) > MAX_LABEL_VALUE:
            errors.append(
                FieldError(f"{field}[{k!r}]", f"must be at most {MAX_LABEL_VALUE} characters")
            )
    return errors


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

    errors += check_name(data.get("name"), "name")
    mesh = data.get("mesh", "")
    if desc.scope is Scope.MESH:
        errors += check_name(mesh, "mesh")
    elif "mesh" in data:
        errors.append(FieldError("mesh", f"{type_name} is not scoped to a mesh; remove this field"))
        mesh = ""
    labels = data.get("labels") or {}
    errors += check_labels(labels)
    for tkey in ("creationTime", "modificationTime"):
        if tkey in data and not isinstance(data[tkey], str):
            errors.append(FieldError(tkey, "must be an RFC 3339 timestamp string"))

    meta_keys = {"type", "mesh", "name", "labels", "creationTime", "modificationTime"}
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
