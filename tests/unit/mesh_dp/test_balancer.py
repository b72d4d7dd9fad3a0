"""Endpoint choice: locality, availability (health checks, passive ejection, panic), and the
three algorithms, on the pure Balancer."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from mesh_dp.balancer import EJECT_BASE, EJECT_MAX, Balancer, EndpointState, pick_split
from meshfed.dpconfig.model import Endpoint, HealthCheck, LbAlgorithm, Locality, OutboundPolicies

HC = HealthCheck(interval=1.0, timeout=1.0, unhealthy_threshold=2, healthy_threshold=3)


def local(n: int) -> Endpoint:
    return Endpoint(f"127.0.0.{n}", 8000 + n, "zone-1")


def remote(zone: str, instances: int) -> Endpoint:
    return Endpoint(
        f"127.0.9.{instances}", 10001, zone, instances, Locality.REMOTE, True, f"b.{zone}"
    )


def names(picks: list[EndpointState]) -> list[str]:
    return [p.endpoint.address for p in picks]


def pick_n(b: Balancer, n: int, now: float = 0.0) -> list[EndpointState]:
    out = []
    for _ in range(n):
        s = b.choose(now)
        assert s is not None
        out.append(s)
    return out


def test_round_robin_cycles_in_order() -> None:
    b = Balancer([local(1), local(2), local(3)], OutboundPolicies())
    assert names(pick_n(b, 6)) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"] * 2


def test_local_zone_first_remote_only_when_no_local_is_available() -> None:
    b = Balancer([remote("zone-2", 5), local(1)], OutboundPolicies())
    assert {s.endpoint.zone for s in pick_n(b, 10)} == {"zone-1"}
    b.connect_failed(b.states[1], now=0.0)
    assert b.choose(0.1) is b.states[0]  # the local one is ejected: zone-2's ingress
    assert b.choose(EJECT_BASE + 0.01) is b.states[1]  # the ejection lapsed


def test_locality_awareness_disabled_uses_weights_across_zones() -> None:
    policies = OutboundPolicies(locality_aware=False)
    b = Balancer([local(1), remote("zone-2", 3)], policies)
    counts = Counter(s.endpoint.zone for s in pick_n(b, 40))
    assert counts == {"zone-1": 10, "zone-2": 30}


def test_smooth_weighted_round_robin_interleaves() -> None:
    a = Endpoint("a", 1, "z", 5)
    bb = Endpoint("b", 1, "z", 1)
    c = Endpoint("c", 1, "z", 1)
    b = Balancer([a, bb, c], OutboundPolicies())
    assert "".join(names(pick_n(b, 7))) == "aabacaa"


def test_random_follows_weights() -> None:
    policies = OutboundPolicies(load_balancer=LbAlgorithm.RANDOM, locality_aware=False)
    b = Balancer([local(1), remote("zone-2", 3)], policies, rng=random.Random(7))
    counts = Counter(s.endpoint.zone for s in pick_n(b, 4000))
    assert 0.7 < counts["zone-2"] / 4000 < 0.8


def test_least_request_with_every_endpoint_sampled_is_exact() -> None:
    policies = OutboundPolicies(load_balancer=LbAlgorithm.LEAST_REQUEST, least_request_choices=3)
    b = Balancer([local(1), local(2), local(3)], policies, rng=random.Random(1))
    b.states[0].active, b.states[1].active, b.states[2].active = 4, 1, 2
    assert all(b.choose(0.0) is b.states[1] for _ in range(20))


def test_least_request_with_two_choices_never_takes_the_busiest() -> None:
    policies = OutboundPolicies(load_balancer=LbAlgorithm.LEAST_REQUEST, least_request_choices=2)
    b = Balancer([local(1), local(2), local(3)], policies, rng=random.Random(3))
    b.states[0].active, b.states[1].active, b.states[2].active = 9, 1, 2
    picks = Counter(id(b.choose(0.0)) for _ in range(300))
    assert id(b.states[0]) not in picks
    assert picks[id(b.states[1])] > picks[id(b.states[2])]


def test_passive_ejection_doubles_and_is_capped_and_cleared() -> None:
    b = Balancer([local(1)], OutboundPolicies())
    s = b.states[0]
    b.connect_failed(s, now=100.0)
    assert s.ejected_until == 100.0 + EJECT_BASE
    b.connect_failed(s, now=100.0)
    assert s.ejected_until == 100.0 + 2 * EJECT_BASE
    for _ in range(30):
        b.connect_failed(s, now=100.0)
    assert s.ejected_until == 100.0 + EJECT_MAX
    b.connect_succeeded(s)
    assert s.available(100.0) and s.connect_failures_in_row == 0


def test_panic_when_nothing_is_available_and_tried_ones_are_skipped() -> None:
    b = Balancer([local(1), local(2)], OutboundPolicies())
    for s in b.states:
        b.connect_failed(s, now=0.0)
    first = b.choose(0.0)
    assert first is not None  # nothing available: try anyway
    second = b.choose(0.0, tried=[first])
    assert second is not None and second is not first
    assert b.choose(0.0, tried=[first, second]) is None


def test_health_thresholds_and_the_streak_that_changed_the_verdict() -> None:
    b = Balancer([local(1), local(2)], OutboundPolicies(health_check=HC))
    s = b.states[0]
    assert not b.health_result(s, False)
    assert b.health_result(s, False)  # unhealthyThreshold 2
    assert not s.healthy and s.changed_after == 2
    assert [b.choose(0.0) for _ in range(3)] == [b.states[1]] * 3
    assert not b.health_result(s, True)
    assert not b.health_result(s, False)  # a failure resets the success streak
    assert not b.health_result(s, True)
    assert not b.health_result(s, True)
    assert b.health_result(s, True)  # healthyThreshold 3 in a row
    assert s.healthy and s.changed_after == 3 and s.checks == 7


def test_update_keeps_state_of_endpoints_that_stay() -> None:
    b = Balancer([local(1), local(2)], OutboundPolicies(health_check=HC))
    kept = b.states[1]
    kept.active, kept.attempts = 3, 7
    b.health_result(kept, False)
    b.health_result(kept, False)
    b.update([local(2), local(3)], OutboundPolicies(health_check=HC))
    assert b.states[0] is kept and not kept.healthy and kept.active == 3
    assert b.states[1].endpoint == local(3)
    # Without health checks nothing can keep an endpoint out any more.
    b.update([local(2), local(3)], OutboundPolicies())
    assert kept.healthy


def test_duplicate_endpoints_count_once() -> None:
    b = Balancer([local(1), local(1), local(2)], OutboundPolicies())
    assert len(b.states) == 2


@given(
    n=st.integers(1, 6),
    failed=st.sets(st.integers(0, 5)),
    unhealthy=st.sets(st.integers(0, 5)),
    algorithm=st.sampled_from(list(LbAlgorithm)),
    locality=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_every_attempt_sequence_tries_each_endpoint_once(
    n: int,
    failed: set[int],
    unhealthy: set[int],
    algorithm: LbAlgorithm,
    locality: bool,
    seed: int,
) -> None:
    endpoints = [local(i) if i % 2 else remote(f"zone-{i}", i + 1) for i in range(n)]
    policies = OutboundPolicies(load_balancer=algorithm, locality_aware=locality, health_check=HC)
    b = Balancer(endpoints, policies, rng=random.Random(seed))
    for i in failed & set(range(n)):
        b.connect_failed(b.states[i], now=0.0)
    for i in unhealthy & set(range(n)):
        for _ in range(HC.unhealthy_threshold):
            b.health_result(b.states[i], False)
    tried: list[EndpointState] = []
    while (s := b.choose(0.0, tried)) is not None:
        assert all(s is not t for t in tried)
        if s.available(0.0):  # available ones come before any unavailable one
            assert all(t.available(0.0) for t in tried)
        tried.append(s)
    assert len(tried) == len(b.states)


def test_pick_split_draws_in_proportion_to_weight() -> None:
    rng = random.Random(7)
    counts = Counter(pick_split([1, 0, 3], rng) for _ in range(4000))
    assert counts[1] == 0 and set(counts) == {0, 2}
    assert 900 <= counts[0] <= 1100  # 1000 expected, sd ~27
    assert pick_split([0, 0], rng) is None
    assert pick_split([], rng) is None
