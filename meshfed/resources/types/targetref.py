"""Kuma's `targetRef`: which proxies a policy applies to, and which peers its entries match.

Kuma allows a different set of kinds at each position (top level, `to[]`, `from[]`) per
policy. meshfed accepts the subset of those it can enforce: Mesh, MeshSubset, MeshService,
MeshServiceSubset and Dataplane. Kinds Kuma has but meshfed cannot enforce (gateways, routes,
MeshExternalService, MeshMultiZoneService) get a reason naming the allowed kinds. The models
are in meshfed/resources/models/targetref.py; this module is the pydantic-free part.
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.types.common import NOT_SUPPORTED

MESH = "Mesh"
MESH_SUBSET = "MeshSubset"
MESH_SERVICE = "MeshService"
MESH_SERVICE_SUBSET = "MeshServiceSubset"
DATAPLANE = "Dataplane"
# Only as the top-level targetRef of a MeshTrafficPermission: who may call an external
# service through the zone egress (zone_cp/egress_build.py).
MESH_EXTERNAL_SERVICE = "MeshExternalService"

TOP_LEVEL_KINDS = (MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET, DATAPLANE)

# Kinds that exist in Kuma but that meshfed does not implement, with the reason.
UNSUPPORTED_KINDS = {
    "MeshGateway": f"{NOT_SUPPORTED} (there are no built-in gateways)",
    "MeshGatewayRoute": f"{NOT_SUPPORTED} (there are no built-in gateways)",
    "MeshHTTPRoute": f"{NOT_SUPPORTED} (policies cannot target routes yet)",
    "MeshExternalService": f"{NOT_SUPPORTED} here (only as the top-level targetRef of a "
    "MeshTrafficPermission, or in to[] of MeshTimeout, MeshRetry, MeshCircuitBreaker, "
    "MeshHealthCheck and MeshLoadBalancingStrategy)",
    "MeshMultiZoneService": f"{NOT_SUPPORTED} here (a destination: name it in to[])",
}


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
