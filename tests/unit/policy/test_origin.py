"""Where a policy was applied, in matching and merging (Kuma's "Merging configuration" order
and zone scope; issue 17 item 6, decision 150)."""

from __future__ import annotations

from typing import Any

from meshfed.policy.origin import applies_in_zone, origin_rank
from meshfed.policy.rules import match, outbound_conf, sort_policies
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc, to

GLOBAL = {"kuma.io/origin": "global"}


def zone(name: str, **extra: str) -> dict[str, str]:
    return {"kuma.io/origin": "zone", "kuma.io/zone": name, **extra}


def dp_in(zone_name: str) -> Any:
    return view_of(dataplane("web-1", inbound("web", 8080), labels=zone(zone_name)), zone_name)


def timeout(
    name: str, labels: dict[str, str], idle: str, target: dict[str, Any] | None = None
) -> Resource:
    t = MESH_REF if target is None else target
    return policy(
        "MeshTimeout", name, t, labels=labels, to=[to(svc("backend"), {"idleTimeout": idle})]
    )


def test_a_zone_policy_wins_over_a_global_one_with_the_same_target_whatever_the_names() -> None:
    for global_name, zone_name in (("aaa", "zzz"), ("zzz", "aaa")):
        policies = [
            timeout(zone_name, zone("zone-1"), "5s"),
            timeout(global_name, GLOBAL, "50s"),
        ]
        conf = outbound_conf(match(policies, dp_in("zone-1")), "backend")
        assert conf.conf == {"idleTimeout": "5s"}
        assert conf.sources == (f"MeshTimeout/{global_name}", f"MeshTimeout/{zone_name}")


def test_a_more_specific_global_target_still_beats_a_zone_policy_on_mesh() -> None:
    # targetRef comes first in Kuma's order; origin only breaks its ties.
    policies = [
        timeout("z", zone("zone-1"), "5s"),
        timeout("g", GLOBAL, "50s", {"kind": "MeshService", "name": "web"}),
    ]
    assert outbound_conf(match(policies, dp_in("zone-1")), "backend").conf == {"idleTimeout": "50s"}


def test_fields_merge_global_first_then_zone() -> None:
    g = policy(
        "MeshTimeout",
        "g",
        MESH_REF,
        labels=GLOBAL,
        to=[to(svc("backend"), {"idleTimeout": "50s", "connectionTimeout": "3s"})],
    )
    z = timeout("z", zone("zone-1"), "5s")
    conf = outbound_conf(match([z, g], dp_in("zone-1")), "backend").conf
    assert conf == {"idleTimeout": "5s", "connectionTimeout": "3s"}


def test_policy_role_orders_after_origin_and_before_the_name() -> None:
    order = sort_policies(
        [
            timeout("a-owner", zone("zone-1", **{"kuma.io/policy-role": "workload-owner"}), "1s"),
            timeout("b-consumer", zone("zone-1", **{"kuma.io/policy-role": "consumer"}), "1s"),
            timeout("c-producer", zone("zone-1", **{"kuma.io/policy-role": "producer"}), "1s"),
            timeout("d-system", zone("zone-1"), "1s"),  # no label: system
            timeout("e-global", GLOBAL, "1s"),
        ]
    )
    assert [p.meta.name for p in order] == [
        "e-global",
        "d-system",
        "c-producer",
        "b-consumer",
        "a-owner",
    ]
    assert origin_rank(order[0]) == (0, 0) and origin_rank(order[-1]) == (1, 3)


def test_a_zone_policy_applies_only_to_proxies_of_its_zone() -> None:
    z1 = timeout("z1", zone("zone-1"), "5s")
    assert [m.policy.meta.name for m in match([z1], dp_in("zone-1"))] == ["z1"]
    assert match([z1], dp_in("zone-2")) == []
    # A global policy applies everywhere; a producer policy to every caller of its service.
    g = timeout("g", GLOBAL, "5s")
    producer = timeout("p", zone("zone-1", **{"kuma.io/policy-role": "producer"}), "5s")
    assert [m.policy.meta.name for m in match([g, producer], dp_in("zone-2"))] == ["g", "p"]


def test_zone_scope_follows_kumas_dataplane_origin_rules() -> None:
    z1 = timeout("z1", zone("zone-1"), "5s")
    assert applies_in_zone(z1, {})  # a proxy with no origin is not zone-bound
    assert applies_in_zone(z1, GLOBAL)
    assert applies_in_zone(z1, {"kuma.io/origin": "zone"})  # its own zone's, unlabelled
    assert not applies_in_zone(z1, {"kuma.io/origin": "nonsense"})
    assert not applies_in_zone(z1, zone("zone-2"))
    unlabelled = timeout("old", {"kuma.io/origin": "zone"}, "5s")  # Kuma 2.7: no zone label
    assert applies_in_zone(unlabelled, zone("zone-2"))
