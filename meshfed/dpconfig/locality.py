"""The control plane's half of MeshLoadBalancingStrategy `localityAwareness`: which zones an
outbound may use and in which order, and the caller's local-zone affinity groups
(https://kuma.io/docs/latest/policies/meshloadbalancingstrategy/). Pure.

The order depends only on the caller's zone and tags, which the control plane knows, so it
is computed here once per config and written into each endpoint (`priority`, `affinity`);
the sidecar walks the priorities with its own health state (mesh_dp/locality.py).

- No `localityAwareness`: the local zone first, every other zone next (all priority 0: the
  sidecar's levels are `(priority, remote)`, so local endpoints of a priority come first).
- `disabled: true` (and no `localZone`/`crossZone`, which take precedence): one group.
- `localZone` without `crossZone`: traffic stays in the local zone (Kuma's "Disable cross
  zone traffic" examples set only `localZone`).
- `crossZone.failover`: the rules in order; a rule whose `from.zones` does not list the
  caller's zone is skipped; each other rule gives the zones it names and no earlier rule
  took the next priority: `Any` every other zone, `Only` its `zones`, `AnyExcept` every
  other zone but its `zones`; `None` stops (the zones not taken yet are never used). Zones
  no rule reaches are not used either. `failoverThreshold.percentage`: leave a priority when
  fewer than that share of its endpoints are healthy.
- `localZone.affinityTags`: local endpoints whose tag `key` has the caller's value form a
  group, the first matching key deciding; the others form a last group of weight 1. The
  groups share the local traffic by `weight`; without weights, each key weighs ten times
  the next (for two keys 90, 9 and 1: 90 %, 9 %, 1 %).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshfed.resources.models.load_balancing import Failover, LoadBalancingConf

ZonePriorities = Mapping[str, int]


@dataclass(frozen=True, slots=True)
class LocalityPlan:
    """How one caller reaches one service."""

    aware: bool = True  # False: every endpoint in one group
    remote: bool = True  # other zones are used at all
    failover: tuple[Failover, ...] | None = None  # None: every other zone at priority 1
    threshold: float = 0.0
    affinity_keys: tuple[tuple[str, str], ...] = ()  # (tag, the caller's value)
    affinity_weights: tuple[int, ...] = ()  # one per key, then the rest's
    local_zone: str = ""
    _cache: dict[frozenset[str], dict[str, int]] = field(default_factory=dict, compare=False)

    def zone_priority(self, zone: str, zones: Iterable[str]) -> int | None:
        """The priority of a remote `zone` among `zones` (every zone the service is in; the
        failover rules' first zones get 1); None: never used."""
        if not self.remote:
            return None
        if not self.aware or self.failover is None:
            return 0  # the sidecar puts remote endpoints after local ones of a priority
        key = frozenset(zones)
        order = self._cache.get(key)
        if order is None:
            order = self._cache[key] = failover_order(self.failover, self.local_zone, key)
        return order.get(zone)

    def affinity(self, tags: Mapping[str, str]) -> int:
        """The affinity group of a local endpoint with `tags`."""
        for i, (key, value) in enumerate(self.affinity_keys):
            if tags.get(key) == value:
                return i
        return len(self.affinity_keys)


def failover_order(
    rules: Iterable[Failover], local_zone: str, zones: Iterable[str]
) -> dict[str, int]:
    """Zone -> priority (1, 2, ...) for the remote zones the rules reach."""
    remaining = sorted(set(zones) - {local_zone})
    order: dict[str, int] = {}
    priority = 1
    for rule in rules:
        if rule.from_ is not None and local_zone not in rule.from_.zones:
            continue
        kind, listed = rule.to.type, set(rule.to.zones or ())
        if kind == "None":
            break
        if kind == "Only":
            taken = [z for z in remaining if z in listed]
        elif kind == "AnyExcept":
            taken = [z for z in remaining if z not in listed]
        else:
            taken = list(remaining)
        if not taken:
            continue
        for z in taken:
            order[z] = priority
        remaining = [z for z in remaining if z not in order]
        priority += 1
    return order


def _weights(conf: LoadBalancingConf, count: int) -> tuple[int, ...]:
    la = conf.locality_awareness
    tags = la.local_zone.affinity_tags if la and la.local_zone else None
    if not tags:
        return ()
    if all(t.weight is not None for t in tags):
        return (*(int(t.weight or 1) for t in tags[:count]), 1)
    return (*(9 * 10 ** (len(tags) - 1 - i) for i in range(count)), 1)


def plan_of(conf: LoadBalancingConf, local_zone: str, caller: Mapping[str, str]) -> LocalityPlan:
    """The plan of the merged `default` `conf` for a caller in `local_zone` with `caller`
    tags (its inbounds' tags)."""
    la = conf.locality_awareness
    if la is None:
        return LocalityPlan(local_zone=local_zone)
    cross, local = la.cross_zone, la.local_zone
    if la.disabled and cross is None and local is None:
        return LocalityPlan(aware=False, local_zone=local_zone)
    tags = list(local.affinity_tags or ()) if local is not None else []
    keys = tuple((t.key, caller[t.key]) for t in tags if t.key in caller)
    # a key the caller lacks matches nobody; its group is empty, so drop it with its weight
    weights = _weights(conf, len(tags))
    kept = [i for i, t in enumerate(tags) if t.key in caller]
    affinity_weights = (*(weights[i] for i in kept), 1) if weights else ()
    threshold = 0.0
    failover: tuple[Failover, ...] | None = None
    if cross is not None:
        if cross.failover_threshold is not None:
            threshold = float(cross.failover_threshold.percentage)
        if cross.failover:
            failover = tuple(cross.failover)
    return LocalityPlan(
        remote=cross is not None or local is None,
        failover=failover,
        threshold=threshold,
        affinity_keys=keys,
        affinity_weights=affinity_weights,
        local_zone=local_zone,
    )
