"""MeshFaultInjection and MeshRateLimit merged per inbound (meshfed/dpconfig/traffic_rules.py)
and looked up per caller (meshfed/dpconfig/traffic.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from meshfed.dpconfig.model import Inbound
from meshfed.dpconfig.traffic import (
    Abort,
    Bandwidth,
    Delay,
    HttpFault,
    InboundFaults,
    InboundRateLimit,
    Rate,
)
from meshfed.dpconfig.traffic_rules import bits_per_second, compile_faults, compile_rate_limit
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from tests.unit.policy.factories import MESH, MESH_REF, dataplane, inbound, policy, subset

VIEW = view_of(dataplane("backend-1", inbound("backend", 8080), inbound("admin", 9090)), "zone-1")
FRONTEND = f"spiffe://{MESH}/frontend"
OTHER = f"spiffe://{MESH}/other"


def abort(status: int, pct: Any) -> dict[str, Any]:
    return {"abort": {"httpStatus": status, "percentage": pct}}


def fi(name: str, target: dict[str, Any] = MESH_REF, **sections: Any) -> Any:
    return policy("MeshFaultInjection", name, target, **sections)


def frm(ref: dict[str, Any], *faults: dict[str, Any]) -> dict[str, Any]:
    return {"targetRef": ref, "default": {"http": list(faults)}}


def test_no_policy_no_faults() -> None:
    assert compile_faults(match([], VIEW), 0, MESH) == InboundFaults()
    assert InboundFaults().for_caller(FRONTEND) == ()


def test_from_callers_by_service_and_mesh() -> None:
    p = fi(
        "f",
        from_=[
            frm(MESH_REF, {"delay": {"value": "250ms", "percentage": 100}}),
            frm(subset({"kuma.io/service": "frontend"}), abort(503, "50.5")),
        ],
    )
    got = compile_faults(match([p], VIEW), 0, MESH)
    assert got.sources == ("MeshFaultInjection/f",)
    assert got.for_caller(FRONTEND) == (HttpFault(abort=Abort(503, 50.5)),)  # replaced whole
    assert got.for_caller(OTHER) == (HttpFault(delay=Delay(0.25, 100.0)),)
    assert got.for_caller(None) == (HttpFault(delay=Delay(0.25, 100.0)),)
    assert got.for_caller("spiffe://other-mesh/frontend") == (HttpFault(delay=Delay(0.25, 100.0)),)


def test_rules_by_spiffe_id_override_from_and_the_last_match_wins() -> None:
    older = fi("0", from_=[frm(MESH_REF, abort(500, 100))])
    first = fi("a", rules=[{"default": {"http": [abort(501, 100)]}}])
    second = fi(
        "b",
        {"kind": "MeshService", "name": "backend"},
        rules=[
            {
                "matches": [{"spiffeID": {"type": "Exact", "value": FRONTEND}}],
                "default": {"http": [abort(502, 100)]},
            }
        ],
    )
    got = compile_faults(match([second, first, older], VIEW), 0, MESH)
    assert got.for_caller(FRONTEND) == (HttpFault(abort=Abort(502, 100.0)),)
    assert got.for_caller(OTHER) == (HttpFault(abort=Abort(501, 100.0)),)
    assert got.for_caller(None) == (HttpFault(abort=Abort(501, 100.0)),)


def rl(name: str, section: str, local: dict[str, Any]) -> Any:
    entry: dict[str, Any] = {"default": {"local": local}}
    if section == "from":
        entry["targetRef"] = MESH_REF
    return policy("MeshRateLimit", name, MESH_REF, **{section: [entry]})


def test_rate_limit_merges_from_then_rules() -> None:
    a = rl(
        "a",
        "from",
        {
            "http": {
                "requestRate": {"num": 5, "interval": "1s"},
                "onRateLimit": {
                    "status": 423,
                    "headers": {"set": [{"name": "x-limited", "value": "yes"}]},
                },
            },
            "tcp": {"connectionRate": {"num": 2, "interval": "10s"}},
        },
    )
    b = rl("b", "rules", {"http": {"requestRate": {"num": 7, "interval": "2s"}}})
    got = compile_rate_limit(match([a, b], VIEW), 0)
    assert got == InboundRateLimit(
        http=Rate(7, 2.0),
        status=423,
        set_headers=(("x-limited", "yes"),),
        tcp=Rate(2, 10.0),
        sources=("MeshRateLimit/a", "MeshRateLimit/b"),
    )


def test_rate_limit_disabled_and_defaults() -> None:
    a = rl("a", "rules", {"http": {"requestRate": {"num": 5, "interval": "1s"}}})
    assert compile_rate_limit(match([a], VIEW), 0).status == 429
    off = rl("z-off", "rules", {"http": {"disabled": True}, "tcp": {"disabled": True}})
    got = compile_rate_limit(match([a, off], VIEW), 0)
    assert got.http is None and got.tcp is None
    assert compile_rate_limit(match([], VIEW), 0) == InboundRateLimit()


def test_the_inbound_config_carries_them_and_round_trips() -> None:
    faults = InboundFaults(
        mesh=MESH, default=(HttpFault(abort=Abort(503, 50.0)),), sources=("MeshFaultInjection/f",)
    )
    limit = InboundRateLimit(http=Rate(5, 1.0), tcp=Rate(1, 0.5), sources=("MeshRateLimit/r",))
    raw = msgspec.json.encode({"faults": faults, "rateLimit": limit})
    back = msgspec.json.decode(raw)
    assert back["rateLimit"]["http"] == {"num": 5, "interval": 1.0}
    assert msgspec.json.decode(msgspec.json.encode(faults), type=InboundFaults) == faults
    assert msgspec.json.decode(msgspec.json.encode(limit), type=InboundRateLimit) == limit
    assert "faults" in Inbound.__struct_fields__ and "rate_limit" in Inbound.__struct_fields__


def test_bandwidth_limits_in_bits_per_second() -> None:
    assert bits_per_second("10kbps") == 10_000
    assert bits_per_second("50 Mbps") == 50_000_000
    assert bits_per_second("1Gbps") == 10**9
    assert bits_per_second("0kbps") == 1  # never zero: a body would never end
    slow = {"responseBandwidth": {"limit": "8kbps", "percentage": 25}}
    got = compile_faults(match([fi("bw", from_=[frm(MESH_REF, slow)])], VIEW), 0, MESH)
    assert got.for_caller(FRONTEND) == (HttpFault(response_bandwidth=Bandwidth(8_000, 25.0)),)
