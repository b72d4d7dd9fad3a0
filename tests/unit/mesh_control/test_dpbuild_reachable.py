"""zone-cp's build path with a sidecar's reachable services: only their outbounds, from a
catalog narrowed to them, and which catalog changes concern which proxy."""

from __future__ import annotations

import datetime as dt

from meshfed.dpconfig.catalog import VipKey, build_catalog
from meshfed.dpconfig.model import OutboundKind, SidecarConfig
from meshfed.dpconfig.protocol import ProxyType
from meshfed.resources.model import Resource
from tests.unit.policy.factories import dataplane, inbound, mesh_resource
from zone_cp.certs import CertIssuer
from zone_cp.dpbuild import (
    BuildInputs,
    Wants,
    build_config,
    changed_services,
    narrowed,
    wanted_services,
)

ZONE = "zone-1"
MESH = mesh_resource(mtls=False)
SERVICES = [f"svc-{i:03d}" for i in range(200)]
INSTANCES = [
    dataplane(f"{s}-1", inbound(s, 10000 + i), address=f"127.0.{i // 200}.{i % 200 + 1}")
    for i, s in enumerate([*SERVICES, "backend"])
]
VIPS = {VipKey("default", s): f"127.1.{i // 250}.{i % 250 + 1}" for i, s in enumerate(SERVICES)}
VIPS[VipKey("default", "backend")] = "127.1.9.1"
VIPS[VipKey("default", "backend", ZONE)] = "127.1.9.2"
WEB = dataplane(
    "web-1",
    inbound("web", 18000),
    address="127.0.9.1",
    outbounds=[{"port": 9000, "tags": {"kuma.io/service": "svc-007"}}],
)


def build(web: Resource, reachable: frozenset[str] | None) -> SidecarConfig:
    config = build_config(
        ProxyType.SIDECAR,
        web,
        ZONE,
        build_catalog(ZONE, INSTANCES, []),
        VIPS,
        BuildInputs.of([MESH], [], []),
        CertIssuer(dt.timedelta(hours=1)),
        reachable=reachable,
    )
    assert isinstance(config, SidecarConfig)
    return config


def test_only_reachable_services_get_vip_outbounds() -> None:
    everything = build(WEB, None)
    assert len([o for o in everything.outbounds if o.kind is not OutboundKind.EXPLICIT]) == 202

    config = build(WEB, frozenset({"backend", "not-in-the-mesh"}))
    vip = [
        (o.service, o.zone, o.address)
        for o in config.outbounds
        if o.kind is not OutboundKind.EXPLICIT
    ]
    assert vip == [("backend", None, "127.1.9.1"), ("backend", ZONE, "127.1.9.2")]
    # The explicit outbound still finds its service's endpoints in the narrowed catalog.
    (explicit,) = [o for o in config.outbounds if o.kind is OutboundKind.EXPLICIT]
    assert explicit.service == "svc-007" and [e.port for e in explicit.endpoints] == [10007]
    # Same inputs, same content: the config version (a content hash) is stable.
    assert build(WEB, frozenset({"backend"})).version == config.version


def test_nothing_reachable_leaves_the_explicit_outbounds() -> None:
    config = build(WEB, frozenset())
    assert [(o.service, o.kind) for o in config.outbounds] == [("svc-007", OutboundKind.EXPLICIT)]


def test_a_change_to_an_unreachable_service_keeps_the_version() -> None:
    before = build(WEB, frozenset({"backend"}))
    more = [*INSTANCES, dataplane("svc-001-2", inbound("svc-001", 10001), address="127.0.8.1")]
    config = build_config(
        ProxyType.SIDECAR,
        WEB,
        ZONE,
        build_catalog(ZONE, more, []),
        {**VIPS, VipKey("default", "late"): "127.1.9.9"},
        BuildInputs.of([MESH], [], []),
        CertIssuer(dt.timedelta(hours=1)),
        reachable=frozenset({"backend"}),
    )
    assert config.version == before.version


def test_wanted_services_and_narrowed_catalog() -> None:
    assert wanted_services(WEB, None) is None
    assert wanted_services(WEB, frozenset({"backend"})) == frozenset({"backend", "svc-007"})
    catalog = narrowed(build_catalog(ZONE, INSTANCES, []), "default", ["backend", "nope"])
    assert [e.service for e in catalog] == ["backend"] and catalog.zone == ZONE
    assert narrowed(catalog, "other-mesh", ["backend"]).services("default") == []


def test_changed_services_compares_entries_and_vips() -> None:
    old = build_catalog(ZONE, INSTANCES, [])
    assert changed_services(old, VIPS, build_catalog(ZONE, INSTANCES, []), dict(VIPS)) == set()
    scaled = [*INSTANCES, dataplane("svc-003-2", inbound("svc-003", 10003), address="127.0.8.2")]
    gone = [i for i in scaled if i.name != "svc-004-1"]
    vips = {**VIPS, VipKey("default", "svc-005", ZONE): "127.1.9.8"}
    assert changed_services(old, VIPS, build_catalog(ZONE, gone, []), vips) == {
        ("default", "svc-003"),
        ("default", "svc-004"),
        ("default", "svc-005"),
    }


def test_wants_says_which_changes_concern_a_proxy() -> None:
    narrow = Wants.of(ProxyType.SIDECAR, WEB, frozenset({"backend"}))
    broad = Wants.of(ProxyType.SIDECAR, WEB, None)
    ingress = Wants.of(ProxyType.INGRESS, WEB, None)
    assert narrow.affected_by({("default", "backend")})
    assert narrow.affected_by({("default", "svc-007")})  # its explicit outbound's service
    assert not narrow.affected_by({("default", "svc-001"), ("other", "backend")})
    assert broad.affected_by({("default", "svc-001")})
    assert not broad.affected_by({("other", "backend")})
    assert ingress.affected_by({("other", "x")}) and not ingress.affected_by(set())
