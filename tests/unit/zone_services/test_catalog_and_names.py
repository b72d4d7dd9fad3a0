"""Catalog inputs from a zone's store, the own ingresses' advertisement, and the DNS names of
every mesh (one server answers for all of them)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from meshfed.dpconfig.catalog import VipKey
from meshfed.resources.model import Meta, Resource
from zone_cp.catalog import ingress_updates, own_available_services, zone_catalog
from zone_cp.dns import DnsTable
from zone_cp.dns_wiring import (
    mesh_domain,
    names_by_vip,
    parse_upstream,
    parse_vip_cidr,
    service_name,
    zone_names,
)

ZONE = "zone-1"


def dataplane(name: str, service: str, mesh: str = "default", ready: bool = True) -> Resource:
    inbound: dict[str, Any] = {"port": 8080, "tags": {"kuma.io/service": service}}
    if not ready:
        inbound["health"] = {"ready": False}
    spec = {"networking": {"address": "127.0.0.1", "inbound": [inbound]}}
    return Resource("Dataplane", Meta(name=name, mesh=mesh), spec)


def ingress(name: str, services: list[dict[str, Any]] | None = None, **labels: str) -> Resource:
    spec: dict[str, Any] = {"networking": {"address": "127.0.0.1", "port": 10001}}
    if services is not None:
        spec["availableServices"] = services
    return Resource("ZoneIngress", Meta(name=name, labels=dict(labels), version="7"), spec)


def relayed(name: str, zone: str, *services: str) -> Resource:
    """Another zone's ingress as the global relays it: labelled, `zone` not in the body."""
    groups = [{"tags": {"kuma.io/service": s}, "instances": 2, "mesh": "default"} for s in services]
    return ingress(name, groups, **{"kuma.io/origin": "global", "kuma.io/zone": zone})


def test_catalog_joins_local_instances_and_relayed_ingresses() -> None:
    catalog = zone_catalog(
        ZONE,
        {"default"},
        [dataplane("web-1", "web"), dataplane("old", "gone", mesh="deleted")],
        [relayed("zi-2.abc", "zone-2", "backend", "web"), ingress("mine", [])],
    )
    assert [(e.mesh, e.service) for e in catalog] == [("default", "backend"), ("default", "web")]
    web = catalog.get("default", "web")
    assert web is not None and web.zones(ZONE) == ["zone-1", "zone-2"]
    backend = catalog.get("default", "backend")
    assert backend is not None and [(r.zone, r.instances) for r in backend.remote] == [
        ("zone-2", 2)
    ]
    assert VipKey("default", "backend", "zone-2") in catalog.vip_keys()


def test_own_ingresses_are_updated_only_when_their_advertisement_changes() -> None:
    available = own_available_services(
        ZONE, {"default"}, [dataplane("a", "backend"), dataplane("b", "backend", ready=False)]
    )
    assert [(g["tags"]["kuma.io/service"], g["instances"]) for g in available] == [("backend", 1)]
    fresh = ingress("mine")
    other = relayed("theirs", "zone-2", "x")
    updates = ingress_updates(ZONE, [fresh, other], available)
    assert [u.name for u in updates] == ["mine"]
    assert updates[0].spec["zone"] == ZONE and updates[0].spec["availableServices"] == available
    assert updates[0].meta.version == "7" and "zone" not in fresh.spec  # a copy, same version
    assert ingress_updates(ZONE, updates, available) == []
    assert [u.name for u in ingress_updates(ZONE, updates, [])] == ["mine"]


def test_names_of_the_default_mesh_and_of_other_meshes() -> None:
    vips = {
        VipKey("default", "backend"): "127.1.0.1",
        VipKey("default", "backend", "zone-2"): "127.1.0.2",
        VipKey("payments", "backend"): "127.1.0.3",
        VipKey("payments", "backend", "zone-2"): "127.1.0.4",
        VipKey("default", "backend_kuma-demo_svc_8080"): "127.1.0.5",
    }
    names = zone_names(vips)
    assert names.records == {
        "backend.mesh": "127.1.0.1",
        "backend.zone-2.mesh": "127.1.0.2",
        "backend.payments.meshes.mesh": "127.1.0.3",
        "backend.zone-2.payments.meshes.mesh": "127.1.0.4",
        "backend_kuma-demo_svc_8080.mesh": "127.1.0.5",
        "backend.kuma-demo.svc.8080.mesh": "127.1.0.5",
    }
    assert names.skipped == [] and names.conflicts == []
    assert service_name(VipKey("payments", "Web", "Zone-2")) == "web.zone-2.payments.meshes.mesh"
    assert names_by_vip(names)["127.1.0.5"] == [
        "backend.kuma-demo.svc.8080.mesh",
        "backend_kuma-demo_svc_8080.mesh",
    ]
    DnsTable(names.pairs())  # every name is one DNS can carry


def test_a_zone_named_like_a_mesh_cannot_collide_and_variants_lose_to_primary_names() -> None:
    vips = {
        VipKey("default", "backend", "payments"): "127.1.0.1",  # pinned to zone "payments"
        VipKey("payments", "backend"): "127.1.0.2",  # mesh "payments"
        VipKey("default", "backend_payments_meshes"): "127.1.0.3",  # variant hits mesh name
    }
    names = zone_names(vips)
    assert names.records["backend.payments.mesh"] == "127.1.0.1"
    assert names.records["backend.payments.meshes.mesh"] == "127.1.0.2"
    assert names.conflicts == ["backend.payments.meshes.mesh"]


def test_meshes_and_services_that_are_not_labels_are_skipped_and_reported() -> None:
    assert mesh_domain("default") == "mesh" and mesh_domain("a.b") is None
    names = zone_names(
        {VipKey("a.b", "backend"): "127.1.0.1", VipKey("default", "Bad Name"): "127.1.0.2"}
    )
    assert names.records == {}
    assert len(names.skipped) == 2 and "a.b" in names.skipped[0]


def test_option_parsers() -> None:
    assert parse_upstream("") is None
    assert parse_upstream("127.0.0.53") == ("127.0.0.53", 53)
    assert parse_upstream("[::1]:5300") == ("::1", 5300)
    assert parse_vip_cidr("127.2.0.0/16") == ipaddress.IPv4Network("127.2.0.0/16")
    for bad, reason in (
        ("127.2.0.1/16", "host bits"),
        ("10.0.0.0/31", "too small"),
        ("x", "IPv4 network"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_vip_cidr(bad)
    with pytest.raises(ValueError, match="port"):
        parse_upstream("127.0.0.1:99999")
