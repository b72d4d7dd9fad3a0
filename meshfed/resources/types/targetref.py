"""Kuma's `targetRef`: which proxies a policy applies to, and which peers its entries match.

Kuma allows a different set of kinds at each position (top level, `to[]`, `from[]`) per
policy. meshfed accepts the subset of those it can enforce: Mesh, MeshSubset, MeshService,
MeshServiceSubset and Dataplane. Kinds Kuma has but meshfed cannot enforce (gateways, routes,
MeshExternalService, MeshMultiZoneService) get a reason naming the allowed kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshfed.resources.errors import FieldError
from meshfed.resources.schema import (
    Check,
    Enum,
    ListOf,
    Obj,
    OneOfKinds,
    Schema,
    Str,
    Unsupported,
    join,
)
from meshfed.resources.types.common import LABELS, NAME, NOT_SUPPORTED, SELECTOR_TAGS, TAGS

MESH = "Mesh"
MESH_SUBSET = "MeshSubset"
MESH_SERVICE = "MeshService"
MESH_SERVICE_SUBSET = "MeshServiceSubset"
DATAPLANE = "Dataplane"

TOP_LEVEL_KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET, DATAPLANE)

# Kinds that exist in Kuma but that meshfed does not implement, with the reason.
UNSUPPORTED_KINDS = {
    "MeshGateway": f"{NOT_SUPPORTED} (there are no built-in gateways)",
    "MeshGatewayRoute": f"{NOT_SUPPORTED} (there are no built-in gateways)",
    "MeshHTTPRoute": f"{NOT_SUPPORTED} (there are no MeshHTTPRoute resources)",
    "MeshExternalService": f"{NOT_SUPPORTED} (there are no external services)",
    "MeshMultiZoneService": (
        f"{NOT_SUPPORTED} (services are reachable across zones by name already)"
    ),
}

_PROXY_TYPES = ListOf(
    Enum("Sidecar", unsupported={"Gateway": f"{NOT_SUPPORTED} (there are no built-in gateways)"}),
    min_items=1,
)
_NO_NAMESPACE = Unsupported(
    f"{NOT_SUPPORTED}: meshfed runs in Universal mode, without Kubernetes namespaces"
)
_NO_MESH = Unsupported(f"{NOT_SUPPORTED}: a policy can only target its own mesh")
_NO_PORT_NAMES = Unsupported(
    f"{NOT_SUPPORTED}: services have no named ports (there are no MeshService resources)"
)
_ALL_FIELDS = ("kind", "name", "tags", "labels", "sectionName", "proxyTypes")


def _dataplane_selector(obj: dict[str, Any], path: str) -> list[FieldError]:
    if obj.get("name") is not None and obj.get("labels") is not None:
        return [FieldError(join(path, "labels"), "either labels or name must be specified")]
    return []


def _variant(
    kind: str,
    fields: dict[str, Schema],
    *,
    required: Sequence[str] = (),
    checks: Sequence[Check] = (),
) -> Obj:
    """A kind's shape; targetRef fields that belong to other kinds get a reason, not a shrug."""
    declared: dict[str, Schema] = {"kind": Str(), **fields}
    for name in _ALL_FIELDS:
        declared.setdefault(name, Unsupported(f"must not be set with kind {kind}"))
    declared["namespace"] = _NO_NAMESPACE
    declared["mesh"] = _NO_MESH
    return Obj(declared, required=required, checks=checks)


def target_ref(
    kinds: Sequence[str], *, top_level: bool = False, inbound: bool = False
) -> OneOfKinds:
    """The targetRef accepted at one position of one policy.

    `top_level` allows `proxyTypes`; `inbound` (policies with from[]/rules[]) allows a
    Dataplane's `sectionName`, which picks one inbound by name or port.
    """
    proxy: dict[str, Schema] = {"proxyTypes": _PROXY_TYPES} if top_level else {}
    section: Schema = (
        Str(non_empty=True)
        if inbound
        else Unsupported("can only be used with inbound policies (those with from or rules)")
    )
    no_labels = Unsupported(
        f"{NOT_SUPPORTED}: select a service by its kuma.io/service name with 'name'"
    )
    variants = {
        MESH: _variant(MESH, {**proxy}),
        MESH_SUBSET: _variant(MESH_SUBSET, {"tags": TAGS, **proxy}),
        MESH_SERVICE: _variant(
            MESH_SERVICE,
            {"name": NAME, "labels": no_labels, "sectionName": _NO_PORT_NAMES},
            required=("name",),
        ),
        MESH_SERVICE_SUBSET: _variant(
            MESH_SERVICE_SUBSET, {"name": NAME, "tags": SELECTOR_TAGS}, required=("name",)
        ),
        DATAPLANE: _variant(
            DATAPLANE,
            {"name": NAME, "labels": LABELS, "sectionName": section},
            checks=(_dataplane_selector,),
        ),
    }
    return OneOfKinds({k: variants[k] for k in kinds}, unsupported=UNSUPPORTED_KINDS)


def describe(ref: Any) -> str:
    """`Mesh`, `MeshService:backend`, `MeshSubset:env=prod`, `Dataplane:app=web`: for tables."""
    if not isinstance(ref, dict):
        return MESH  # Kuma's default when targetRef is omitted
    kind = str(ref.get("kind") or MESH)
    parts: list[str] = []
    if isinstance(ref.get("name"), str):
        parts.append(ref["name"])
    for selector in ("tags", "labels"):
        sel = ref.get(selector)
        if isinstance(sel, dict) and sel:
            parts.append(",".join(f"{k}={v}" for k, v in sel.items()))
    if isinstance(ref.get("sectionName"), str):
        parts.append(f"[{ref['sectionName']}]")
    return f"{kind}:{' '.join(parts)}" if parts else kind
