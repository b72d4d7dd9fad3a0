"""Choosing an upstream endpoint for one outbound connection. Pure: no sockets, no clock of
its own (callers pass `now`), randomness from an injected `random.Random`.

Order of preference, as Envoy does it for Kuma:

1. Priority: with locality awareness (the default), endpoints of the sidecar's own zone come
   first and other zones (their ingresses) are used only when no local endpoint is
   available, in the crossZone failover order the control plane wrote as each endpoint's
   `priority`, leaving a level below `failoverThreshold` (mesh_dp/locality.py).
   `localityAware=False` puts every endpoint in one group, by weight.
2. Availability: an endpoint is available unless active health checks say it is unhealthy
   or it is ejected after a failed connect (passive marking: ejected for `EJECT_BASE`
   seconds, doubling with each failure in a row up to `EJECT_MAX`; a successful connect
   clears it). When nothing is available anywhere, every endpoint not yet tried for this
   connection is a candidate again ("panic" routing, as Envoy): refusing outright would turn
   a wrong health verdict into an outage.
3. Algorithm within the chosen group (in the local zone, the affinity group drawn by
   weight first): RingHash / Maglev (mesh_dp/http/hashing.py: the request's key picks the
   endpoint; no key: random), RoundRobin (smooth weighted round robin, so a remote
   zone's ingress with weight 3 gets three turns per cycle), Random (weighted), or
   LeastRequest (sample `choiceCount` endpoints without replacement, take the one with the
   fewest open connections; the first sampled wins ties).

0. Split (MeshTCPRoute): an outbound with `splits` first draws one split per new connection,
   at random in proportion to the weights (`pick_split`, as Envoy's weighted clusters do),
   then walks 1-3 above among that split's endpoints with the split's own balancer. Random
   rather than smooth round robin: callers behind several sidecars see the documented shares
   without the sidecars having to coordinate, and a burst of connections is not lock-step.

One balancer lives per outbound listener (and one per split); `update` carries endpoint
state (health, ejection, open connections, counters) over to a new config where the
endpoint is still present.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from mesh_dp import locality
from mesh_dp.http.hashing import HashTable, Maglev, Ring
from meshfed.dpconfig.model import (
    Endpoint,
    HealthCheck,
    LbAlgorithm,
    OutboundPolicies,
)

EJECT_BASE = 0.5  # seconds an endpoint is skipped after one failed connect
EJECT_MAX = 30.0

EndpointKey = tuple[str, int, str]  # address, port, sni: what makes a different upstream
HASHED = (LbAlgorithm.RING_HASH, LbAlgorithm.MAGLEV)
TABLES_KEPT = 4  # hash tables cached per outbound (one per set of usable endpoints)


def endpoint_key(e: Endpoint) -> EndpointKey:
    return (e.address, e.port, e.sni)


@dataclass(slots=True)
class EndpointState:
    endpoint: Endpoint
    active: int = 0  # open proxied connections through it
    # Active health checking (MeshHealthCheck): the verdict and the current streaks.
    healthy: bool = True
    hc_failures: int = 0
    hc_successes: int = 0
    checks: int = 0  # active checks run
    changed_after: int = 0  # the streak of results that made the last verdict change
    # Passive marking: failed connects in a row and until when the endpoint is skipped.
    connect_failures_in_row: int = 0
    ejected_until: float = 0.0
    outlier_until: float = 0.0  # ejected by outlier detection (mesh_dp/http/outlier.py)
    # Counters for metrics.
    attempts: int = 0
    failures: int = 0
    connections: int = 0
    requests: int = 0  # HTTP responses relayed from it
    server_errors: int = 0  # ... of which 5xx (what outlier detection will read)
    smooth_weight: int = field(default=0)  # smooth weighted round robin's running weight
    _label: tuple[object, str] = field(default=(None, ""), repr=False, compare=False)

    @property
    def key(self) -> EndpointKey:
        return endpoint_key(self.endpoint)

    @property
    def label(self) -> str:
        """How metrics and logs name the endpoint (read per request: kept)."""
        e = self.endpoint
        if self._label[0] is not e:
            base = f"{e.address}:{e.port}"
            self._label = e, f"{base} ({e.zone} via ingress)" if e.via_ingress else base
        return self._label[1]

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until and now >= self.outlier_until


class Balancer:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        policies: OutboundPolicies,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self.policies = policies
        self.states: list[EndpointState] = [EndpointState(e) for e in _unique(endpoints)]
        self._tables: dict[tuple[object, ...], HashTable] = {}
        self._one_level: tuple[object, bool] = (None, False)

    def _single_level(self) -> bool:
        """Every endpoint is at one locality level (then the level walk has nothing to
        choose); kept per `states` list, which `update` replaces."""
        if self._one_level[0] is not self.states:
            levels = {locality.level(s.endpoint) for s in self.states}
            self._one_level = (self.states, len(levels) <= 1)
        return self._one_level[1]

    def update(self, endpoints: Sequence[Endpoint], policies: OutboundPolicies) -> None:
        """New endpoints and policies; endpoints that stay keep their state."""
        old = {s.key: s for s in self.states}
        states: list[EndpointState] = []
        for e in _unique(endpoints):
            state = old.get(endpoint_key(e))
            if state is None:
                state = EndpointState(e)
            else:
                state.endpoint = e  # weight or zone may have changed
            states.append(state)
        if policies.health_check is None:
            for s in states:  # no checks any more: nothing can keep an endpoint out
                s.healthy, s.hc_failures, s.hc_successes = True, 0, 0
        self.states = states
        if (
            policies.hash != self.policies.hash
            or policies.load_balancer != self.policies.load_balancer
        ):
            self._tables.clear()
        self.policies = policies

    def choose(
        self, now: float, tried: Collection[EndpointState] = (), key: int | None = None
    ) -> EndpointState | None:
        """The endpoint for the next connect attempt, or None when every one was tried.
        `key`: the request's hash (RingHash / Maglev), None when it has none."""
        if tried:
            candidates = [s for s in self.states if not any(s is t for t in tried)]
        else:
            candidates = list(self.states)
        if not candidates:
            return None
        group = self._group(candidates, now)
        if not group:
            # panic: nothing is available, try anyway
            group = (
                candidates if not self.policies.locality_aware else locality.first_level(candidates)
            )
        if key is not None and self.policies.load_balancer in HASHED:
            hashed = self._hashed(group, tried, key)
            if hashed is not None:
                return hashed
        return self._pick(group)

    def _group(self, candidates: list[EndpointState], now: float) -> list[EndpointState]:
        """The available candidates of the level to use (mesh_dp/locality.py)."""
        if not self.policies.locality_aware or self._single_level():
            return [s for s in candidates if s.available(now)]
        return locality.priority_group(
            self.states, candidates, lambda s: s.available(now), self.policies.failover_threshold
        )

    def _hashed(
        self, group: list[EndpointState], tried: Collection[EndpointState], key: int
    ) -> EndpointState | None:
        """The owner of `key` among the group. The table covers every endpoint of the
        group's level, so a key moves only when its own endpoint is unusable (unavailable,
        or tried already by this request)."""
        lv = locality.level(group[0].endpoint)
        aware = self.policies.locality_aware
        members = sorted(
            (s for s in self.states if not aware or locality.level(s.endpoint) == lv),
            key=lambda s: s.key,
        )
        usable = {id(s) for s in group}
        index = self._table(members).lookup(key, lambda i: id(members[i]) in usable)
        return None if index is None else members[index]

    def _table(self, members: list[EndpointState]) -> HashTable:
        p = self.policies
        cache_key = (p.load_balancer, p.hash, tuple((s.key, s.endpoint.weight) for s in members))
        table = self._tables.get(cache_key)
        if table is None:
            names = [f"{a}:{port}/{sni}" for a, port, sni in (s.key for s in members)]
            weights = [s.endpoint.weight for s in members]
            kind = Maglev if p.load_balancer is LbAlgorithm.MAGLEV else Ring
            table = kind(names, weights, p.hash)
            if len(self._tables) >= TABLES_KEPT:
                self._tables.pop(next(iter(self._tables)))
            self._tables[cache_key] = table
        return table

    def _pick(self, group: list[EndpointState]) -> EndpointState:
        algorithm = self.policies.load_balancer
        affinity = self.policies.affinity_weights
        if affinity and locality.level(group[0].endpoint) == (0, 0):
            group = locality.affinity_group(group, affinity, self._rng)
        if len(group) == 1:
            return group[0]
        if algorithm in HASHED:  # no key: Envoy picks at random
            return self._rng.choice(group)
        if algorithm is LbAlgorithm.RANDOM:
            weights = [max(1, s.endpoint.weight) for s in group]
            return self._rng.choices(group, weights)[0]
        if algorithm is LbAlgorithm.LEAST_REQUEST:
            k = min(self.policies.least_request_choices, len(group))
            sample = self._rng.sample(group, k)
            return min(sample, key=lambda s: s.active)  # min keeps the first of equals
        return _smooth_round_robin(group)

    # --- outcomes -----------------------------------------------------------------------

    def attempt(self, state: EndpointState) -> None:
        state.attempts += 1

    def connect_failed(self, state: EndpointState, now: float) -> None:
        state.failures += 1
        state.connect_failures_in_row += 1
        delay = min(EJECT_MAX, EJECT_BASE * 2 ** min(state.connect_failures_in_row - 1, 16))
        state.ejected_until = now + delay

    def connect_succeeded(self, state: EndpointState) -> None:
        state.connect_failures_in_row = 0
        state.ejected_until = 0.0
        state.connections += 1

    def health_result(self, state: EndpointState, ok: bool) -> bool:
        """Records one active check; True when the endpoint's verdict changed."""
        hc = self.policies.health_check
        if hc is None:
            return False
        return _apply_check(state, ok, hc)


def _apply_check(state: EndpointState, ok: bool, hc: HealthCheck) -> bool:
    before = state.healthy
    state.checks += 1
    if ok:
        state.hc_failures = 0
        state.hc_successes += 1
        if not state.healthy and state.hc_successes >= hc.healthy_threshold:
            state.healthy = True
            # A host that passes its checks again also gets a fresh passive record.
            state.connect_failures_in_row, state.ejected_until = 0, 0.0
    else:
        state.hc_successes = 0
        state.hc_failures += 1
        if state.healthy and state.hc_failures >= hc.unhealthy_threshold:
            state.healthy = False
    if state.healthy != before:
        state.changed_after = state.hc_successes if ok else state.hc_failures
        return True
    return False


def _smooth_round_robin(group: list[EndpointState]) -> EndpointState:
    """nginx's smooth weighted round robin: with equal weights it cycles in order; with
    weights it interleaves (5,1,1 -> a a b a c a a) instead of sending bursts."""
    total = 0
    best: EndpointState | None = None
    for s in group:
        weight = max(1, s.endpoint.weight)
        s.smooth_weight += weight
        total += weight
        if best is None or s.smooth_weight > best.smooth_weight:
            best = s
    assert best is not None
    best.smooth_weight -= total
    return best


def pick_split(weights: Sequence[int], rng: random.Random) -> int | None:
    """The index of the split a new connection takes, drawn in proportion to `weights`
    (a weight 0 is never drawn); None when every weight is 0."""
    total = sum(weights)
    if total <= 0:
        return None
    point = rng.randrange(total)
    for i, weight in enumerate(weights):
        if point < weight:
            return i
        point -= weight
    raise AssertionError("unreachable: point < total")


def _unique(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    seen: set[EndpointKey] = set()
    out: list[Endpoint] = []
    for e in endpoints:
        if endpoint_key(e) not in seen:
            seen.add(endpoint_key(e))
            out.append(e)
    return out
