"""Which of two policies matching the same proxy wins, by their top-level `targetRef`: Kuma
2.14's order (decision 154).

Kuma sorts matched policies by the kind of their top-level targetRef with one table for every
position (`order` in api/common/v1alpha1/targetref.go of Kuma's release-2.14,
https://github.com/kumahq/kuma/blob/release-2.14/api/common/v1alpha1/targetref.go):

    Mesh < Dataplane < MeshSubset < MeshGateway < MeshService < MeshExternalService <
    MeshMultiZoneService < MeshServiceSubset < MeshHTTPRoute

so a `Dataplane` policy ranks above `Mesh` but below the older tag-based kinds. Between two
`Dataplane` refs, the policies page's merge table (kuma.io/docs/2.14.x/policies/introduction/,
"Merging configuration"): `Dataplane` < with `labels` < with `labels`/`sectionName` < with
`name` < with `name`/`sectionName` (a `sectionName` alone ranks with `labels`/`sectionName`).
Ties go on to origin, then name (meshfed/policy/rules.py `sort_policies`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from meshfed.policy.targetref import kind_of
from meshfed.resources.types.targetref import (
    DATAPLANE,
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
)

TOP_LEVEL_ORDER: Final[Mapping[str, int]] = {
    MESH: 1,
    DATAPLANE: 2,
    MESH_SUBSET: 3,
    "MeshGateway": 4,
    MESH_SERVICE: 5,
    "MeshExternalService": 6,
    "MeshMultiZoneService": 7,
    MESH_SERVICE_SUBSET: 8,
    "MeshHTTPRoute": 9,
}


def _dataplane_rank(ref: Mapping[str, Any]) -> int:
    section = isinstance(ref.get("sectionName"), str)
    if isinstance(ref.get("name"), str):
        return 4 if section else 3
    if section:
        return 2
    return 1 if isinstance(ref.get("labels"), dict) else 0


def top_level_rank(ref: Any) -> tuple[int, int]:
    """Sort key of a policy's top-level targetRef, least priority first; an unknown kind
    (refused by validation) lowest rather than raising."""
    kind = kind_of(ref)
    sub = _dataplane_rank(ref) if kind == DATAPLANE and isinstance(ref, dict) else 0
    return TOP_LEVEL_ORDER.get(kind, 0), sub
