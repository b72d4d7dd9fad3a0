"""Kuma's JSON/YAML shape <-> Resource, with every structural problem reported at once."""

from __future__ import annotations

import re
from typing import Any

from meshfed.resources.descriptors import Registry, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.model import LABEL_DISPLAY_NAME, Meta, Resource

# Kuma's rule for a resource name (its ValidateMeta): a lowercase RFC 1123 subdomain of at most
# 253 characters: dot-separated labels of lower case alphanumerics and '-', each starting and
# ending with an alphanumeric ("a..b", "a.-b", "a_b" are refused). Zone-originated names
# "<name>.<hash>" (meshfed/kds/naming.py) keep to it.
MAX_NAME = 253
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
NAME_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
NAME_RULE = (
    "must be a lowercase RFC 1123 subdomain: lower case alphanumeric characters, '-' or '.', "
    "starting and ending with an alphanumeric character (every part between dots too), "
    f"at most {MAX_NAME} characters"
)

# Kubernetes' label rules, which Kuma applies: a key is an optional DNS-subdomain prefix and
# '/' before a name of at most 63 characters; a value is empty or such a name.
MAX_LABEL_NAME = 63
MAX_LABEL_VALUE = 63
_LABEL_NAME_RE = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_NAME_RULE = (
    "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
# kuma.io/display-name holds a resource name (set by the control plane on zone resources),
# which may be longer than a label value: it follows the name rule instead.
NAME_VALUED_LABELS = frozenset({LABEL_DISPLAY_NAME})
# Kuma's `kuma.io/effect: shadow` previews a policy without applying it
# (https://kuma.io/docs/latest/policies/introduction/). meshfed has no shadow mode: storing the
# label would apply the policy for real, so it is refused until something acts on it.
EFFECT_LABEL = "kuma.io/effect"
EFFECT_REFUSED = "not supported: meshfed has no shadow mode, so the policy would take effect"


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


def is_name(value: str) -> bool:
    """Whether `value` is a valid resource name (the length is checked before the pattern)."""
    return 0 < len(value) <= MAX_NAME and NAME_RE.fullmatch(value) is not None


def check_name(value: Any, field: str) -> list[FieldError]:
    if not isinstance(value, str) or not value:
        return [FieldError(field, "must be a non-empty string")]
    if not is_name(value):
        return [FieldError(field, NAME_RULE)]
    return []


def label_key_problems(key: str) -> list[str]:
    """Why `key` is not a label key (Kubernetes' qualified name), or [] if it is one."""
    prefix, slash, name = key.rpartition("/")
    problems: list[str] = []
    if slash and not is_name(prefix):
        problems.append(
            "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters "
            "(e.g. 'example.com')"
        )
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > MAX_LABEL_NAME:
        problems.append(f"name part must be no more than {MAX_LABEL_NAME} characters")
    elif _LABEL_NAME_RE.fullmatch(name) is None:
        problems.append(f"name part must {_LABEL_NAME_RULE}")
    return problems


def label_value_problems(value: str) -> list[str]:
    """Why `value` is not a label value, or [] if it is one."""
    if len(value) > MAX_LABEL_VALUE:
        return [f"must be no more than {MAX_LABEL_VALUE} characters"]
    if value and _LABEL_NAME_RE.fullmatch(value) is None:
        return [f"a valid label must be an empty string or {_LABEL_NAME_RULE}"]
    return []


def check_labels(value: Any, field: str = "labels") -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [FieldError(field, "must be a map of string keys to string values")]
    errors: list[FieldError] = []
    for k, v in value.items():
        where = f"{field}[{k!r}]"
        if not isinstance(k, str):
            errors.append(FieldError(where, "label key must be a string"))
        else:
            errors += [FieldError(where, f"invalid label key: {p}") for p in label_key_problems(k)]
        if not isinstance(v, str):
            errors.append(FieldError(where, "label value must be a string"))
        elif k in NAME_VALUED_LABELS:
            if not is_name(v):
                errors.append(FieldError(where, "holds a resource name, which " + NAME_RULE))
        else:
            errors += [FieldError(where, p) for p in label_value_problems(v)]
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
    if isinstance(labels, dict) and EFFECT_LABEL in labels:
        errors.append(FieldError(f"labels[{EFFECT_LABEL!r}]", EFFECT_REFUSED))
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
