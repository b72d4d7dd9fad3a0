"""Which endpoints an outbound may use now: priority levels and local-zone affinity (the
sidecar half of MeshLoadBalancingStrategy `localityAwareness`). Pure.

The control plane computes the order (meshfed/dpconfig/locality.py): each endpoint carries
a `priority` (0: the local zone, then the crossZone failover order; zones no rule reaches
are not sent at all) and, in the local zone, an `affinity` group. The sidecar only walks the
levels with its own health state (active checks, ejections):

- a level is used when its available share is at least `failoverThreshold` percent of its
  endpoints (and it has one available); with no threshold, as soon as one is available;
- when no level reaches the threshold, the first level with an available endpoint is used;
- within the local level, `affinityWeights` split requests between the affinity groups that
  have available endpoints, by weight (Kuma's localZone.affinityTags).

A level is `(priority, remote)`, so a config from an older control plane (every endpoint
priority 0) still puts the local zone first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from meshfed.dpconfig.model import Endpoint, Locality


class HasEndpoint(Protocol):
    @property
    def endpoint(self) -> Endpoint: ...


S = TypeVar("S", bound=HasEndpoint)


def level(e: Endpoint) -> tuple[int, int]:
    return (e.priority, 0 if e.locality is Locality.LOCAL else 1)


def priority_group(
    states: Sequence[S],
    candidates: Sequence[S],
    available: Callable[[S], bool],
    threshold: float,
) -> list[S]:
    """The available candidates of the level to use; [] when none is available."""
    levels = sorted({level(s.endpoint) for s in states} | {level(s.endpoint) for s in candidates})
    fallback: list[S] = []
    for lv in levels:
        members = [s for s in states if level(s.endpoint) == lv]
        usable = [s for s in candidates if level(s.endpoint) == lv and available(s)]
        if not usable:
            continue
        healthy = sum(1 for s in members if available(s))
        if not members or healthy * 100 >= threshold * len(members):
            return usable
        if not fallback:
            fallback = usable
    return fallback


def first_level(candidates: Sequence[S]) -> list[S]:
    """The candidates of the best level (panic routing: none is available)."""
    if not candidates:
        return []
    best = min(level(s.endpoint) for s in candidates)
    return [s for s in candidates if level(s.endpoint) == best]


def affinity_group(group: Sequence[S], weights: Sequence[int], rng: random.Random) -> list[S]:
    """Within the local level, the affinity group to use for one request, by weight among
    the groups present (an endpoint's `affinity` indexes `weights`)."""
    if not weights or len(group) < 2:
        return list(group)
    present = sorted({s.endpoint.affinity for s in group})
    if len(present) == 1:
        return list(group)
    chosen = rng.choices(present, [_weight(weights, a) for a in present])[0]
    return [s for s in group if s.endpoint.affinity == chosen]


def _weight(weights: Sequence[int], index: int) -> int:
    return weights[index] if index < len(weights) else 1
