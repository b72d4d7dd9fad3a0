"""The control plane's failover order and affinity groups (Kuma's MeshLoadBalancingStrategy)."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.locality import failover_order, plan_of
from meshfed.resources.models.base import parse
from meshfed.resources.models.load_balancing import Failover, LoadBalancingConf

ZONES = ("z1", "z2", "z3", "z4", "z5")


def conf(la: dict[str, Any]) -> LoadBalancingConf:
    return parse(LoadBalancingConf, {"localityAwareness": la})


def rules(*raw: dict[str, Any]) -> list[Failover]:
    return [parse(Failover, r) for r in raw]


def test_rules_give_priorities_in_order_and_none_stops() -> None:
    order = failover_order(
        rules(
            {"from": {"zones": ["other"]}, "to": {"type": "Any"}},  # not for z1: skipped
            {"to": {"type": "Only", "zones": ["z3", "z2"]}},
            {"to": {"type": "AnyExcept", "zones": ["z5"]}},
            {"to": {"type": "None"}},
            {"to": {"type": "Any"}},  # after None: never
        ),
        "z1",
        ZONES,
    )
    assert order == {"z2": 1, "z3": 1, "z4": 2}


def test_zones_no_rule_reaches_are_not_used() -> None:
    assert failover_order(rules({"to": {"type": "Only", "zones": ["z4"]}}), "z1", ZONES) == {
        "z4": 1
    }
    assert failover_order(rules({"to": {"type": "Any"}}), "z1", ZONES) == {z: 1 for z in ZONES[1:]}


def test_plans() -> None:
    default = plan_of(LoadBalancingConf.model_construct(), "z1", {})
    assert default.aware and default.zone_priority("z2", ZONES) == 0
    off = plan_of(conf({"disabled": True}), "z1", {})
    assert not off.aware
    local_only = plan_of(conf({"disabled": True, "localZone": {}}), "z1", {})
    assert local_only.aware and local_only.zone_priority("z2", ZONES) is None
    cross = plan_of(
        conf(
            {
                "crossZone": {
                    "failover": [{"to": {"type": "Only", "zones": ["z3"]}}],
                    "failoverThreshold": {"percentage": 70},
                }
            }
        ),
        "z1",
        {},
    )
    assert cross.threshold == 70.0
    assert cross.zone_priority("z3", ZONES) == 1 and cross.zone_priority("z2", ZONES) is None


def test_affinity_groups_and_weights() -> None:
    caller = {"node": "n1", "az": "a"}
    tags = [{"key": "node"}, {"key": "rack"}, {"key": "az"}]
    plan = plan_of(conf({"localZone": {"affinityTags": tags}}), "z1", caller)
    # rack: the caller has none, so nobody shares it and the key goes with its weight
    assert plan.affinity_keys == (("node", "n1"), ("az", "a"))
    assert plan.affinity_weights == (900, 9, 1)
    assert plan.affinity({"node": "n1", "az": "b"}) == 0
    assert plan.affinity({"node": "n2", "az": "a"}) == 1
    assert plan.affinity({"node": "n2"}) == 2
    weighted = [{"key": "node", "weight": 9000}, {"key": "az", "weight": 9}]
    plan = plan_of(conf({"localZone": {"affinityTags": weighted}}), "z1", caller)
    assert plan.affinity_weights == (9000, 9, 1)
    assert plan_of(conf({"localZone": {"affinityTags": []}}), "z1", caller).affinity_weights == ()
