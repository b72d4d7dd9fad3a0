"""What the config server stores about its proxies: the Dataplane with zone labels and
inbound health, the ZoneIngress with its zone, and insights with subscriptions."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed._gen import dataplane_pb2 as pb
from meshfed.resources.model import Meta, Resource
from tests.unit.policy.factories import dataplane, inbound
from zone_cp import dpstate

ZONE = "zone-1"


def announced() -> Resource:
    dp = dataplane("web-1", inbound("web", 8080), inbound("admin", 9090), labels={"team": "a"})
    dp.meta.labels["kuma.io/zone"] = "elsewhere"  # a proxy cannot pick its zone
    return dp


def test_a_new_dataplane_is_stored_labelled_and_not_ready() -> None:
    stored = dpstate.registered_dataplane(announced(), ZONE, None)
    assert stored.meta.labels == {"team": "a", "kuma.io/origin": "zone", "kuma.io/zone": ZONE}
    assert dpstate.health_of(stored) == {0: False, 1: False}
    assert dpstate.without_health(stored) == announced().spec


def test_the_same_dataplane_keeps_its_health_a_changed_one_starts_over() -> None:
    before = dpstate.with_health(
        dpstate.registered_dataplane(announced(), ZONE, None), {0: True, 1: True}, default=False
    )
    assert dpstate.health_of(dpstate.registered_dataplane(announced(), ZONE, before)) == {
        0: True,
        1: True,
    }
    moved = announced()
    moved.spec["networking"]["address"] = "127.0.0.9"
    assert dpstate.health_of(dpstate.registered_dataplane(moved, ZONE, before)) == {
        0: False,
        1: False,
    }


def test_readiness_from_a_report_by_inbound_port() -> None:
    report = pb.Report(
        inbounds=[pb.InboundStatus(port=9090, ready=True), pb.InboundStatus(port=1, ready=True)]
    )
    assert dpstate.ready_by_port(announced(), report) == {1: True}


def test_ingress_gets_the_zone_and_keeps_its_advertised_services() -> None:
    hello = Resource(
        "ZoneIngress", Meta(name="zi"), {"networking": {"address": "127.0.0.1", "port": 10001}}
    )
    fresh = dpstate.registered_ingress(hello, ZONE, None)
    assert fresh.spec == {
        "networking": {"address": "127.0.0.1", "port": 10001},
        "zone": ZONE,
        "availableServices": [],
    }
    groups = [{"tags": {"kuma.io/service": "web"}, "instances": 1, "mesh": "default"}]
    stored = fresh.clone()
    stored.spec["availableServices"] = groups
    assert dpstate.registered_ingress(hello, ZONE, stored).spec["availableServices"] == groups
    relayed = stored.clone()
    relayed.meta.labels["kuma.io/origin"] = "global"
    with pytest.raises(dpstate.Refused, match="another zone's ingress"):
        dpstate.registered_ingress(hello, ZONE, relayed)


def test_insight_keeps_the_last_subscriptions_and_the_report() -> None:
    subs = [
        dpstate.Subscription(str(i), "cp-1", f"t{i}", "v", disconnect_time=f"u{i}").to_json()
        for i in range(7)
    ]
    live = dpstate.Subscription("7", "cp-2", "t7", "meshfed-mesh-dp/0.1.0")
    live.responses_sent, live.config_sent = 2, "abc"
    report = pb.Report(
        config_version="abc",
        inbounds=[pb.InboundStatus(port=8080, ready=True, counters=pb.Counters(bytes_sent=5))],
    )
    insight = dpstate.insight_resource(
        "sidecar", "default", "web-1", ZONE, [*subs, live.to_json()], report=report
    )
    assert insight.type == "DataplaneInsight"
    assert [s["id"] for s in insight.spec["subscriptions"]] == ["3", "4", "5", "6", "7"]
    last = insight.spec["subscriptions"][-1]
    assert "disconnectTime" not in last
    assert last["status"]["total"]["responsesSent"] == 2
    assert last["version"] == {"meshfedDp": {"version": "meshfed-mesh-dp/0.1.0"}}
    assert insight.spec["report"]["inbounds"][0]["bytesSent"] == 5
    assert dpstate.held_by_gone(insight, {"cp-1"})
    assert dpstate.held_by_gone(insight, set())
    assert not dpstate.held_by_gone(insight, {"cp-1", "cp-2"})
    closed = dpstate.insight_resource("ingress", "", "zi", ZONE, subs)
    assert closed.type == "ZoneIngressInsight"
    assert not dpstate.held_by_gone(closed, {"cp-9"})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
INBOUND = st.one_of(
    st.fixed_dictionaries(
        {"port": st.integers(1, 65535)},
        optional={"health": st.fixed_dictionaries({"ready": st.booleans()}), "tags": JSON},
    ),
    JSON,
)
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "networking": st.one_of(
            st.fixed_dictionaries(
                {"address": st.just("10.0.0.1")},
                optional={"inbound": st.one_of(st.lists(INBOUND, max_size=3), JSON)},
            ),
            JSON,
        ),
        "other": JSON,
    },
)


def deep_without_health(spec: dict[str, Any]) -> dict[str, Any]:
    """What without_health answered when it deep-copied the body (before issue 19's cut)."""
    out = copy.deepcopy(spec)
    networking = out.get("networking")
    inbounds = networking.get("inbound") if isinstance(networking, dict) else None
    for entry in inbounds if isinstance(inbounds, list) else []:
        if isinstance(entry, dict):
            entry.pop("health", None)
    return out


@settings(max_examples=300, deadline=None)
@given(SPEC)
def test_without_health_answers_as_the_deep_copy_did_and_leaves_the_body_alone(
    spec: dict[str, Any],
) -> None:
    before = copy.deepcopy(spec)
    dp = Resource("Dataplane", Meta("web-1", "default"), spec)
    assert dpstate.without_health(dp) == deep_without_health(spec)
    assert spec == before
