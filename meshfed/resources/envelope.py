"""A resource's envelope (type, mesh, name, labels, times) checked and ordered as the codec
does it, on its own: the proxies check the resource their Hello announces with it without
loading the resource schema (the codec, the descriptors, every type and the policy modules
they import; decision 187). `meshfed.resources.codec` uses these rules and re-exports them;
the spec is zone-cp's to check (it refuses a bad Hello naming the field)."""

from __future__ import annotations

import re
from typing import Any

from meshfed.resources.errors import FieldError

# Set by the control plane on zone resources (meshfed.resources.model re-exports it).
LABEL_DISPLAY_NAME = "kuma.io/display-name"
# The envelope's keys, in Kuma's order (the codec writes a resource so).
META_KEYS = ("type", "mesh", "name", "creationTime", "modificationTime", "labels")

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


def envelope_errors(doc: dict[str, Any], kind: str, *, mesh_scoped: bool) -> list[FieldError]:
    """What `meshfed.resources.codec.resource_from_dict` says of a `kind` document's
    envelope, with its rules and words; not of its spec."""
    given = doc.get("type")
    if not isinstance(given, str) or not given:
        return [FieldError("type", "is required and must be a string")]
    wrong = [] if given == kind else [FieldError("type", f"must be {kind!r}")]
    return wrong + meta_errors(doc, kind, mesh_scoped=mesh_scoped)


def meta_errors(doc: dict[str, Any], kind: str, *, mesh_scoped: bool) -> list[FieldError]:
    """The name, the mesh (of a type scoped to one; refused on the others), the labels and
    the times of a `kind` document."""
    errors = check_name(doc.get("name"), "name")
    if mesh_scoped:
        errors += check_name(doc.get("mesh", ""), "mesh")
    elif "mesh" in doc:
        errors.append(FieldError("mesh", f"{kind} is not scoped to a mesh; remove this field"))
    labels = doc.get("labels") or {}
    errors += check_labels(labels)
    if isinstance(labels, dict) and EFFECT_LABEL in labels:
        errors.append(FieldError(f"labels[{EFFECT_LABEL!r}]", EFFECT_REFUSED))
    for key in ("creationTime", "modificationTime"):
        if key in doc and not isinstance(doc[key], str):
            errors.append(FieldError(key, "must be an RFC 3339 timestamp string"))
    return errors


def in_kuma_order(doc: dict[str, Any]) -> dict[str, Any]:
    """A checked document as the codec writes it (`resource_to_dict` of a type whose fields
    are top-level, as the proxies' are): type, mesh, name, the times and labels when set,
    then the rest."""
    out = {k: doc[k] for k in META_KEYS if k in doc and (doc[k] or k in ("type", "mesh", "name"))}
    out.update((k, v) for k, v in doc.items() if k not in META_KEYS)
    return out
