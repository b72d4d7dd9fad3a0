"""The sidecar walks the control plane's priorities with its health state."""

from __future__ import annotations

import random
from collections import Counter

from mesh_dp.balancer import Balancer
from meshfed.dpconfig.model import (
    Endpoint,
    HashConf,
    HashPolicy,
    LbAlgorithm,
    Locality,
    OutboundPolicies,
)


def local(n: int, affinity: int = 0) -> Endpoint:
    return Endpoint(f"10.0.0.{n}", 80, "z1", affinity=affinity)


def remote(zone: str, priority: int) -> Endpoint:
    return Endpoint(f"10.9.{priority}.1", 80, zone, 1, Locality.REMOTE, True, "sni", priority)


def test_failover_walks_priorities_in_order() -> None:
    eps = [local(1), remote("z3", 2), remote("z2", 1)]
    b = Balancer(eps, OutboundPolicies())
    assert b.choose(0).endpoint.zone == "z1"  # type: ignore[union-attr]
    b.states[0].healthy = False
    assert b.choose(0).endpoint.zone == "z2"  # type: ignore[union-attr]
    b.states[2].healthy = False
    assert b.choose(0).endpoint.zone == "z3"  # type: ignore[union-attr]
    b.states[1].healthy = False  # nothing available: panic goes to the first level
    assert b.choose(0).endpoint.zone == "z1"  # type: ignore[union-attr]


def test_failover_threshold_leaves_a_level_below_its_share() -> None:
    eps = [local(1), local(2), local(3), local(4), remote("z2", 1)]
    b = Balancer(eps, OutboundPolicies(failover_threshold=50))
    b.states[0].healthy = b.states[1].healthy = False  # 50 % healthy: stays
    assert {b.choose(0).endpoint.zone for _ in range(6)} == {"z1"}  # type: ignore[union-attr]
    b.states[2].healthy = False  # 25 %: leaves
    assert {b.choose(0).endpoint.zone for _ in range(6)} == {"z2"}  # type: ignore[union-attr]
    b.states[4].healthy = False  # no level reaches it: the first with an available one
    assert {b.choose(0).endpoint.zone for _ in range(6)} == {"z1"}  # type: ignore[union-attr]


def test_affinity_groups_share_local_traffic_by_weight() -> None:
    eps = [local(1, 0), local(2, 1), local(3, 2)]
    b = Balancer(eps, OutboundPolicies(affinity_weights=(90, 9, 1)), random.Random(7))
    picks = Counter(b.choose(0).endpoint.address for _ in range(5000))  # type: ignore[union-attr]
    assert picks["10.0.0.1"] > 4300 and 300 < picks["10.0.0.2"] < 600
    b.states[0].healthy = False  # an empty group gives its share to the others
    picks = Counter(b.choose(0).endpoint.address for _ in range(1000))  # type: ignore[union-attr]
    assert picks["10.0.0.1"] == 0 and picks["10.0.0.2"] > 800


def test_ring_hash_keeps_a_key_on_one_endpoint_and_retries_elsewhere() -> None:
    policies = OutboundPolicies(
        load_balancer=LbAlgorithm.RING_HASH,
        hash=HashConf(policies=(HashPolicy(type="Header", name="x"),)),
    )
    b = Balancer([local(i) for i in range(1, 5)], policies)
    owners = {k: b.choose(0, (), k) for k in range(0, 2**64, 2**58)}
    assert all(b.choose(0, (), k) is s for k, s in owners.items())
    assert len({id(s) for s in owners.values()}) == 4
    key, first = next(iter(owners.items()))
    assert first is not None
    second = b.choose(0, [first], key)
    assert second is not None and second is not first
    first.healthy = False  # an unavailable owner's keys move; others stay
    moved = {k: b.choose(0, (), k) for k in owners}
    assert all(moved[k] is s for k, s in owners.items() if s is not first)
    assert all(moved[k] is not first for k in owners)


def test_hash_without_a_key_picks_at_random() -> None:
    policies = OutboundPolicies(load_balancer=LbAlgorithm.MAGLEV)
    b = Balancer([local(i) for i in range(1, 5)], policies, random.Random(1))
    assert len({b.choose(0).endpoint.address for _ in range(100)}) == 4  # type: ignore[union-attr]
