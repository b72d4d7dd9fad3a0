"""`explain`: one constructed mesh, healthy, then broken at one hop per test; the first broken
hop must be that one, named with the reason (the deciding policy for a denial)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from meshfed.dpconfig.catalog import available_services
from meshfed.dpconfig.explain import HOPS, Explanation, Inventory, explain
from meshfed.resources.model import Resource
from meshfed.resources.types.vips import VipEntry, vips_spec
from tests.unit.policy.factories import (
    MESH_REF,
    dataplane,
    frm,
    inbound,
    mesh_resource,
    mtp,
    policy,
    resource,
    svc,
    to,
    zone_ingress,
)

MESH = mesh_resource()
Z1, Z2 = "zone-1", "zone-2"


def dp(name: str, service: str, zone: str, *, ready: bool = True, address: str) -> Resource:
    return dataplane(
        name,
        inbound(service, 18080, servicePort=8080, health={"ready": ready}),
        address=address,
        labels={"kuma.io/zone": zone},
    )


def insight(type_: str, name: str, *, connected: bool = True, acked: bool = True) -> Resource:
    sub: dict[str, Any] = {
        "id": "s1",
        "controlPlaneInstanceId": "zone-cp-1",
        "connectTime": "2026-03-01T12:00:00Z",
        "config": {"sent": "v2", "acknowledged": "v2" if acked else "v1", "lastNackError": ""},
    }
    if not connected:
        sub["disconnectTime"] = "2026-03-01T12:05:00Z"
    doc = {"type": type_, "name": name, "subscriptions": [sub]}
    if type_ == "DataplaneInsight":
        doc["mesh"] = "default"
    return resource(doc)


def vips(zone: str, services: dict[str, str]) -> Resource:
    entries = [VipEntry(s, None, v, True) for s, v in services.items()]
    return resource(
        {
            "type": "VirtualIPs",
            "mesh": "default",
            "name": zone,
            "labels": {"kuma.io/zone": zone},
            "spec": vips_spec("240.0.0.0/24", "240.0.0.9", entries),
        }
    )


WEB = dp("web-1", "web", Z1, address="127.0.1.10")
BACKENDS = [dp(f"backend-{i}", "backend", Z2, address=f"127.0.2.{i}") for i in (1, 2)]
INGRESS = zone_ingress("ingress-2", Z2, "127.0.2.100", 10001, available_services(BACKENDS, Z2))
ALLOW = mtp("web-to-backend", svc("backend"), from_=[frm(svc("web"), "Allow")])
TIMEOUT = policy("MeshTimeout", "slow", MESH_REF, to_=[to(MESH_REF, {"connectionTimeout": "7s"})])


def inventory(**changes: Any) -> Inventory:
    """The global's view of a healthy mesh: web in zone-1, backend in zone-2 behind an
    ingress, backend.mesh with a VIP in zone-1, web allowed."""
    base = Inventory(
        mesh=MESH,
        dataplanes=[WEB, *BACKENDS],
        dataplane_insights=[insight("DataplaneInsight", d.meta.name) for d in [WEB, *BACKENDS]],
        ingresses=[INGRESS],
        ingress_insights=[insight("ZoneIngressInsight", "ingress-2")],
        virtual_ips=[vips(Z1, {"backend": "240.0.0.2"})],
        policies={"MeshTrafficPermission": [ALLOW], "MeshTimeout": [TIMEOUT]},
    )
    return replace(base, **changes)


def verdicts(e: Explanation) -> dict[str, str]:
    return {h.name: h.verdict for h in e.hops}


def hop(e: Explanation, name: str) -> str:
    return next(h.detail for h in e.hops if h.name == name)


def test_a_healthy_path_passes_every_hop() -> None:
    e = explain(inventory(), "web", "backend")

    assert e.zone == Z1
    assert [h.name for h in e.hops] == list(HOPS)
    assert set(verdicts(e).values()) == {"ok"}, e.to_json()
    assert e.broken is None
    assert "240.0.0.2" in hop(e, "dns")
    assert "zone-2: 2 instances via ingress" in hop(e, "endpoints")
    assert "240.0.0.2:8080" in hop(e, "outbound")
    assert "MeshTrafficPermission/web-to-backend" in hop(e, "permission")
    assert "connect timeout 7s" in hop(e, "policies")
    assert "MeshTimeout/slow" in hop(e, "policies")
    assert e.to_json()["brokenHop"] is None


def test_a_deny_names_the_policy_that_decides() -> None:
    deny = mtp("no-web", svc("backend"), from_=[frm(svc("web"), "Deny")])
    e = explain(inventory(policies={"MeshTrafficPermission": [ALLOW, deny]}), "web", "backend")

    assert e.broken is not None and e.broken.name == "permission"
    assert "MeshTrafficPermission/no-web" in e.broken.detail
    assert "Deny" in e.broken.detail


def test_no_permission_at_all_is_denied_by_default() -> None:
    e = explain(inventory(policies={}), "web", "backend")

    assert e.broken is not None and e.broken.name == "permission"
    assert "no MeshTrafficPermission allows spiffe://default/web" in e.broken.detail


def test_a_rules_deny_names_its_policy() -> None:
    rule = mtp(
        "rules-deny",
        svc("backend"),
        rules=[
            {"default": {"deny": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/w"}}]}}
        ],
    )
    e = explain(inventory(policies={"MeshTrafficPermission": [ALLOW, rule]}), "web", "backend")

    assert e.broken is not None and e.broken.name == "permission"
    assert "MeshTrafficPermission/rules-deny (rules deny: Prefix" in e.broken.detail


def test_no_ingress_in_the_remote_zone() -> None:
    e = explain(inventory(ingresses=[], virtual_ips=[]), "web", "backend")

    assert e.broken is not None and e.broken.name == "ingress"
    assert "zone-2: no ZoneIngress in the zone" in e.broken.detail
    # what follows from it fails too, but is not named first
    assert verdicts(e)["dns"] == "fail"


def test_an_offline_ingress_breaks_the_ingress_hop() -> None:
    offline = insight("ZoneIngressInsight", "ingress-2", connected=False)
    e = explain(inventory(ingress_insights=[offline]), "web", "backend")

    assert e.broken is not None and e.broken.name == "ingress"
    assert "ingress-2 offline" in e.broken.detail


def test_an_ingress_not_advertising_the_service() -> None:
    empty = zone_ingress("ingress-2", Z2, "127.0.2.100", 10001, [])
    e = explain(inventory(ingresses=[empty]), "web", "backend")

    assert e.broken is not None and e.broken.name == "ingress"
    assert "does not advertise backend" in e.broken.detail


def test_a_disconnected_sidecar_is_the_first_broken_hop() -> None:
    gone = insight("DataplaneInsight", "web-1", connected=False)
    others = [insight("DataplaneInsight", b.meta.name) for b in BACKENDS]
    e = explain(inventory(dataplane_insights=[gone, *others]), "web", "backend")

    assert e.broken is not None and e.broken.name == "sidecar"
    assert "web-1: sidecar not connected" in e.broken.detail


def test_a_config_not_acked_yet_is_a_warning() -> None:
    pending = insight("DataplaneInsight", "web-1", acked=False)
    e = explain(inventory(dataplane_insights=[pending]), "web", "backend")

    assert verdicts(e)["sidecar"] == "warn"
    assert verdicts(e)["outbound"] == "warn"
    assert e.broken is None


def test_an_unknown_service_names_the_service_hop() -> None:
    e = explain(inventory(), "web", "bakend")

    assert e.broken is not None and e.broken.name == "service"
    assert "unknown service 'bakend'" in e.broken.detail
    assert "known: backend, web" in e.broken.detail


def test_an_unknown_caller() -> None:
    e = explain(inventory(), "nobody", "backend")

    assert e.broken is not None and e.broken.name == "caller"
    assert verdicts(e)["sidecar"] == "skip"


def test_a_caller_asked_in_a_zone_where_it_does_not_run() -> None:
    e = explain(inventory(), "web", "backend", Z2)

    assert e.broken is not None and e.broken.name == "caller"
    assert "(it runs in zone-1)" in e.broken.detail


def test_no_vip_breaks_dns() -> None:
    e = explain(inventory(virtual_ips=[]), "web", "backend")

    assert e.broken is not None and e.broken.name == "dns"
    assert "backend.mesh has no VIP in zone-1" in e.broken.detail


def test_instances_none_ready() -> None:
    down = [dp(f"backend-{i}", "backend", Z1, ready=False, address=f"127.0.1.{i}") for i in (1, 2)]
    e = explain(inventory(dataplanes=[WEB, *down], ingresses=[]), "web", "backend")

    assert e.broken is not None and e.broken.name == "service"
    assert "no instance ready" in e.broken.detail


def test_without_mtls_other_zones_cannot_be_reached() -> None:
    e = explain(inventory(mesh=mesh_resource(mtls=False)), "web", "backend")

    assert e.broken is not None and e.broken.name == "ingress"
    assert "has no mTLS" in e.broken.detail
    assert verdicts(e)["permission"] == "ok"  # not enforced without mTLS


def test_some_instances_out_is_a_warning_not_a_break() -> None:
    local = dp("backend-local", "backend", Z1, address="127.0.1.20")
    e = explain(inventory(dataplanes=[WEB, local, *BACKENDS], ingresses=[]), "web", "backend")

    assert e.broken is None, e.to_json()
    assert verdicts(e)["ingress"] == "warn"
    assert "zone-1: 1 instance" in hop(e, "endpoints")


def test_a_zone_cp_sees_remote_services_through_the_relayed_ingress() -> None:
    """A zone-cp holds its own Dataplanes and the ingresses the global relays, not other
    zones' Dataplanes: the service is known from the advertisement, the permission is left
    to the global."""
    e = explain(inventory(dataplanes=[WEB], here=Z1), "web", "backend")

    assert e.zone == Z1
    assert e.broken is None, e.to_json()
    assert "zone-2: 2 advertised by its ingress" in hop(e, "service")
    assert verdicts(e)["permission"] == "skip"
    assert "ask the global" in hop(e, "permission")
