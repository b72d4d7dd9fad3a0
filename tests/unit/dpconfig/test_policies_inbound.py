"""MeshTimeout `rules`: the timeouts of an inbound (meshfed/dpconfig/policies.py), and what
the sidecar's inbound makes of them (mesh_dp/inbound.py)."""

from __future__ import annotations

from typing import Any

from mesh_dp.inbound import app_policy
from meshfed.dpconfig.model import DEFAULT_REQUEST_TIMEOUT, InboundTimeouts
from meshfed.dpconfig.policies import inbound_timeouts
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, to

# Two inbounds: `api` (index 0, named "http") and `admin` (index 1).
VIEW = view_of(
    dataplane("web-1", inbound("api", 8080, name="http"), inbound("admin", 9090)), "zone-1"
)


def rules(name: str, default: dict[str, Any], target: dict[str, Any] = MESH_REF) -> Any:
    return policy("MeshTimeout", name, target, rules=[{"default": default}])


def test_no_rules_keep_the_inbound_as_it_was() -> None:
    outbound_only = policy("MeshTimeout", "out", MESH_REF, to=[to(MESH_REF, {"idleTimeout": "1s"})])
    got = inbound_timeouts(match([outbound_only], VIEW), 0)
    assert got == InboundTimeouts()
    assert got.idle_timeout == got.request_timeout == 0.0 and got.connect_timeout == 5.0


def test_every_rules_field_reaches_the_inbound() -> None:
    p = rules(
        "all",
        {
            "connectionTimeout": "2s",
            "idleTimeout": "60s",
            "http": {
                "requestTimeout": "10s",
                "streamIdleTimeout": "1h",
                "maxStreamDuration": "30m",
                "maxConnectionDuration": "20m",
                "requestHeadersTimeout": "3s",
            },
        },
    )
    got = inbound_timeouts(match([p], VIEW), 1)
    assert got == InboundTimeouts(
        2.0, 60.0, 10.0, 3600.0, 1800.0, 1200.0, 3.0, ("MeshTimeout/all",)
    )
    policy_ = app_policy(got)
    assert (policy_.connect_timeout, policy_.response_timeout) == (2.0, 60.0)
    t = policy_.timeouts
    assert (t.request, t.stream_idle, t.max_stream, t.max_connection, t.request_headers) == (
        10.0,
        3600.0,
        1800.0,
        1200.0,
        3.0,
    )
    assert policy_.retry.num_retries == 0  # an inbound never retries


def test_unset_fields_take_kumas_defaults_and_policies_merge() -> None:
    # Same targetRef kind: the lexicographically smaller name wins, as in Kuma.
    first = rules("a", {"http": {"requestTimeout": "4s"}})
    second = rules("b", {"idleTimeout": "10s", "http": {"requestTimeout": "2s"}})
    got = inbound_timeouts(match([first, second], VIEW), 0)
    assert (got.idle_timeout, got.request_timeout, got.connect_timeout) == (10.0, 4.0, 5.0)
    assert set(got.sources) == {"MeshTimeout/a", "MeshTimeout/b"}
    only_idle = inbound_timeouts(match([rules("c", {"idleTimeout": "10s"})], VIEW), 0)
    assert only_idle.request_timeout == DEFAULT_REQUEST_TIMEOUT


def test_section_name_picks_one_inbound() -> None:
    ref = {"kind": "Dataplane", "sectionName": "http"}
    p = rules("one-port", {"http": {"requestTimeout": "1s"}}, ref)
    assert inbound_timeouts(match([p], VIEW), 0).request_timeout == 1.0
    assert inbound_timeouts(match([p], VIEW), 1) == InboundTimeouts()
