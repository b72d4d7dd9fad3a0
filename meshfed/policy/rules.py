"""Kuma's policy matching for one dataplane: which policies apply, in which order, and the
merged `default` for an outbound (`to[]`) or for the callers of an inbound (`from[]`).

Order (least priority first; later entries win field by field, see merge.py):

1. policies by their top-level targetRef kind, in Kuma 2.14's order (precedence.py: Mesh <
   Dataplane < MeshSubset < MeshService < MeshServiceSubset; Dataplane: {} < labels <
   labels+sectionName < name < name+sectionName); then origin (global < zone) and policy
   role (origin.py); then by name in *inverted* lexicographic order, so on a tie `aaa`
   beats `zzz` (Kuma sorts the display names descending and lets the last one win);
2. the entries of all matched policies are concatenated in that order, then sorted (stably)
   by the kind of the entry's own targetRef: for `to[]` Mesh < MeshService, for `from[]`
   Mesh < MeshSubset < MeshService < MeshServiceSubset. So a narrower selection of peers
   overrides a broader one whichever policy holds it, and among equally narrow entries the
   more specific policy wins.

Everything here is pure: no store, no I/O. Callers pass the policies of one type and mesh.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from meshfed.policy.merge import merge_confs
from meshfed.policy.origin import applies_in_zone, origin_rank
from meshfed.policy.precedence import top_level_rank
from meshfed.policy.targetref import (
    DataplaneView,
    ServiceLabels,
    kind_of,
    kind_rank,
    selected_inbounds,
    selects_service,
)
from meshfed.resources.model import LABEL_DISPLAY_NAME, Resource
from meshfed.resources.types.common import SERVICE_TAG, as_list
from meshfed.resources.types.targetref import MESH, MESH_SERVICE, MESH_SERVICE_SUBSET, MESH_SUBSET


def display_name(policy: Resource) -> str:
    return policy.meta.labels.get(LABEL_DISPLAY_NAME, policy.meta.name)


def source_of(policy: Resource) -> str:
    """`MeshTimeout/name`: how a contributing policy is named in configs and logs."""
    return f"{policy.type}/{policy.meta.name}"


def sort_policies(policies: Iterable[Resource]) -> list[Resource]:
    """Least priority first: the last policy of the list wins a conflict."""
    by_name = sorted(policies, key=display_name, reverse=True)
    return sorted(
        by_name,
        key=lambda p: (
            *top_level_rank(p.spec.get("targetRef")),
            *origin_rank(p),
        ),
    )


@dataclass(frozen=True, slots=True)
class Matched:
    """A policy that applies to the dataplane, with the inbounds its targetRef selects."""

    policy: Resource
    inbounds: frozenset[int]


def match(policies: Iterable[Resource], dp: DataplaneView) -> list[Matched]:
    """The policies of `dp`'s mesh that select at least one of its inbounds, least priority
    first (a zone's policies only in that zone)."""
    out: list[Matched] = []
    mine = (p for p in policies if p.meta.mesh == dp.mesh and applies_in_zone(p, dp.labels))
    for policy in sort_policies(mine):
        chosen = selected_inbounds(policy.spec.get("targetRef"), dp)
        if chosen:
            out.append(Matched(policy, chosen))
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    """One `to[]`/`from[]` entry, with the policy it came from."""

    target_ref: dict[str, Any]
    default: dict[str, Any]
    policy: Resource


@dataclass(frozen=True, slots=True)
class Merged:
    """A merged `default` and the policies that contributed to it, in merge order."""

    conf: dict[str, Any]
    sources: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.sources


def entries(matched: Sequence[Matched], section: str, inbound: int | None = None) -> list[Entry]:
    """The `section` entries of the matched policies (those selecting `inbound`, if given),
    in merge order: sorted stably by the entry's targetRef kind."""
    out: list[Entry] = []
    for m in matched:
        if inbound is not None and inbound not in m.inbounds:
            continue
        for raw in as_list(m.policy.spec.get(section)):
            if not isinstance(raw, dict):
                continue
            ref = raw.get("targetRef")
            default = raw.get("default")
            out.append(
                Entry(
                    ref if isinstance(ref, dict) else {"kind": MESH},
                    default if isinstance(default, dict) else {},
                    m.policy,
                )
            )
    out.sort(key=lambda e: kind_rank(e.target_ref))
    return out


def merge_entries(selected: Iterable[Entry]) -> Merged:
    chosen = list(selected)
    sources: list[str] = []
    for e in chosen:
        name = source_of(e.policy)
        if name not in sources:
            sources.append(name)
    return Merged(merge_confs(e.default for e in chosen), tuple(sources))


# A MeshMultiZoneService's outbound is asked about as this "service" (a `/` cannot be in a
# kuma.io/service value): only `to[]` refs of that kind and name (and Mesh) select it.
MULTI_ZONE_PREFIX = "MeshMultiZoneService/"


def multi_zone_destination(name: str) -> str:
    return MULTI_ZONE_PREFIX + name


# A MeshExternalService's outbound likewise: `to[]` refs of that kind and name select it, and
# (decision 156) a MeshService ref naming the external service, and Mesh.
EXTERNAL_PREFIX = "MeshExternalService/"


def external_destination(name: str) -> str:
    return EXTERNAL_PREFIX + name


def to_selects(
    ref: dict[str, Any],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> bool:
    """A `to[]` targetRef selects outbound `service`: Mesh, or MeshService by name or by
    labels (the service's `labels`, targetref.service_labels), MeshExternalService by name
    (`external_destination`, which a MeshService ref by that name selects too); a MeshService
    ref with a
    `sectionName` only the outbound of that named port of a MeshService (`section`, issue
    17), never a `kuma.io/service` outbound."""
    kind = kind_of(ref)
    if kind == MESH:
        return True
    if kind == "MeshMultiZoneService":
        named = service == multi_zone_destination(str(ref.get("name")))
        return named and ref.get("sectionName") in (None, section)
    if kind == "MeshExternalService":
        return service == external_destination(str(ref.get("name")))
    service = service.removeprefix(EXTERNAL_PREFIX)
    if kind != MESH_SERVICE or not selects_service(ref, service, labels):
        return False
    wanted = ref.get("sectionName")
    return wanted is None or wanted == section


def outbound_conf(
    matched: Sequence[Matched],
    service: str,
    labels: ServiceLabels | None = None,
    section: str | None = None,
) -> Merged:
    """The merged `to[]` default of one policy type for the outbound to `service` (to its
    MeshService port named `section`, when given)."""
    return merge_entries(
        e for e in entries(matched, "to") if to_selects(e.target_ref, service, labels, section)
    )


def caller_subset(ref: dict[str, Any]) -> dict[str, str] | None:
    """The tags a `from[]` targetRef requires of a caller; None for a kind that selects no
    caller (a bad or unsupported one)."""
    kind = kind_of(ref)
    tags = ref.get("tags")
    tags = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}
    if kind == MESH:
        return {}
    if kind == MESH_SUBSET:
        return tags
    if kind in (MESH_SERVICE, MESH_SERVICE_SUBSET):
        name = ref.get("name")
        if not isinstance(name, str):
            return None
        base = tags if kind == MESH_SERVICE_SUBSET else {}
        if base.get(SERVICE_TAG, name) != name:
            return None  # a service cannot have two names: selects nobody
        return {**base, SERVICE_TAG: name}
    return None


def callers_by_service(matched: Sequence[Matched], inbound: int) -> list[str]:
    """The caller services `from[]` names for `inbound`, sorted: only a subset naming the
    service alone can match a caller a sidecar knows by its certificate (its service)."""
    named: set[str] = set()
    for e in entries(matched, "from", inbound):
        subset = caller_subset(e.target_ref)
        if subset is not None and set(subset) == {SERVICE_TAG}:
            named.add(subset[SERVICE_TAG])
    return sorted(named)


def inbound_conf(matched: Sequence[Matched], inbound: int, caller: dict[str, str]) -> Merged:
    """The merged `from[]` default for a caller with tags `caller` at one inbound."""

    def applies(e: Entry) -> bool:
        subset = caller_subset(e.target_ref)
        return subset is not None and all(caller.get(k) == v for k, v in subset.items())

    return merge_entries(e for e in entries(matched, "from", inbound) if applies(e))
