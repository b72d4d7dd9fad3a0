"""Choosing an upstream endpoint for one outbound connection. Pure: no sockets, no clock of
its own (callers pass `now`), randomness from an injected `random.Random`.

Order of preference, as Envoy does it for Kuma:

1. Priority: with locality awareness (the default), endpoints of the sidecar's own zone come
   first and other zones (their ingresses) are used only when no local endpoint is
   available. `localityAware=False` puts every endpoint in one group, by weight.
2. Availability: an endpoint is available unless active health checks say it is unhealthy
   or it is ejected after a failed connect (passive marking: ejected for `EJECT_BASE`
   seconds, doubling with each failure in a row up to `EJECT_MAX`; a successful connect
   clears it). When nothing is available anywhere, every endpoint not yet tried for this
   connection is a candidate again ("panic" routing, as Envoy): refusing outright would turn
   a wrong health verdict into an outage.
3. Algorithm within the chosen group: RoundRobin (smooth weighted round robin, so a remote
   zone's ingress with weight 3 gets three turns per cycle), Random (weighted), or
   LeastRequest (sample `choiceCount` endpoints without replacement, take the one with the
   fewest open connections; the first sampled wins ties).

One balancer lives per outbound listener; `update` carries endpoint state (health, ejection,
open connections, counters) over to a new config where the endpoint is still present.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from meshfed.dpconfig.model import (
    Endpoint,
    HealthCheck,
    LbAlgorithm,
    Locality,
    OutboundPolicies,
)

EJECT_BASE = 0.5  # seconds an endpoint is skipped after one failed connect
EJECT_MAX = 30.0

EndpointKey = tuple[str, int, str]  # address, port, sni: what makes a different upstream


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

    @property
    def key(self) -> EndpointKey:
        return endpoint_key(self.endpoint)

    @property
    def label(self) -> str:
        """How metrics and logs name the endpoint."""
        e = self.endpoint
        base = f"{e.address}:{e.port}"
        return f"{base} ({e.zone} via ingress)" if e.via_ingress else base

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
        self.policies = policies

    def choose(self, now: float, tried: Collection[EndpointState] = ()) -> EndpointState | None:
        """The endpoint for the next connect attempt, or None when every one was tried."""
        candidates = [s for s in self.states if not any(s is t for t in tried)]
        if not candidates:
            return None
        group = self._group([s for s in candidates if s.available(now)])
        if not group:
            group = self._group(candidates)  # panic: nothing is available, try anyway
        return self._pick(group)

    def _group(self, states: list[EndpointState]) -> list[EndpointState]:
        """The highest-priority non-empty group."""
        if not self.policies.locality_aware:
            return states
        local = [s for s in states if s.endpoint.locality is Locality.LOCAL]
        return local or states

    def _pick(self, group: list[EndpointState]) -> EndpointState:
        algorithm = self.policies.load_balancer
        if len(group) == 1:
            return group[0]
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


def _unique(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    seen: set[EndpointKey] = set()
    out: list[Endpoint] = []
    for e in endpoints:
        if endpoint_key(e) not in seen:
            seen.add(endpoint_key(e))
            out.append(e)
    return out
