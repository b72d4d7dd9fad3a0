"""Building sidecar and ingress configs from resources, and the cross-zone path end to end:
zone-2's availableServices -> zone-1's catalog -> web's config -> zone-2's ingress table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meshfed.dpconfig.build import BuildError, build_ingress_config, build_sidecar_config
from meshfed.dpconfig.catalog import VipKey, available_services, build_catalog
from meshfed.dpconfig.model import Endpoint, Locality, OutboundKind, SidecarConfig
from meshfed.dpconfig.sni import decode_sni
from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.leaf import Leaf, issue_leaf
from meshfed.policy.permissions import Action
from meshfed.resources.model import Resource
from tests.unit.policy.factories import (
    MESH_REF,
    dataplane,
    frm,
    inbound,
    mesh_resource,
    mtp,
    policy,
    svc,
    to,
    zone_ingress,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MESH = mesh_resource()
PLAIN_MESH = mesh_resource(mtls=False)

# zone-2: two backend instances and an ingress advertising them.
Z2_BACKENDS = [
    dataplane("backend-a", inbound("backend", 18080, servicePort=8080), address="127.0.2.1"),
    dataplane("backend-b", inbound("backend", 18080, servicePort=8080), address="127.0.2.2"),
]
Z2_INGRESS = zone_ingress(
    "ingress-2", "zone-2", "127.0.2.100", 10001, available_services(Z2_BACKENDS, "zone-2")
)

# zone-1: web, one backend v1 instance, one v2.
WEB = dataplane(
    "web-1",
    inbound("web", 18000, servicePort=3000, serviceAddress="127.0.0.1", name="http"),
    address="127.0.1.10",
    labels={"app": "web"},
    outbounds=[
        {"port": 9000, "tags": {"kuma.io/service": "backend", "version": "v1"}},
        {
            "port": 9001,
            "address": "127.0.0.5",
            "tags": {"kuma.io/service": "backend", "kuma.io/zone": "zone-2"},
        },
    ],
)
Z1_BACKENDS = [
    dataplane(
        "backend-1",
        inbound("backend", 18080, servicePort=8080, tags={"version": "v1"}),
        address="127.0.1.1",
    ),
    dataplane(
        "backend-2",
        inbound("backend", 18080, servicePort=8080, tags={"version": "v2"}),
        address="127.0.1.2",
    ),
]
CATALOG = build_catalog("zone-1", [WEB, *Z1_BACKENDS], [Z2_INGRESS])
VIPS = {
    VipKey("default", "backend"): "127.1.0.1",
    VipKey("default", "backend", "zone-2"): "127.1.0.2",
    VipKey("default", "web"): "127.1.0.3",
}
POLICIES: dict[str, list[Resource]] = {
    "MeshTimeout": [
        policy(
            "MeshTimeout",
            "timeouts",
            MESH_REF,
            to=[
                to(MESH_REF, {"connectionTimeout": "2s"}),
                to(svc("backend"), {"idleTimeout": "1m"}),
            ],
        )
    ],
    "MeshTrafficPermission": [
        mtp("web-from-backend", svc("web"), from_=[frm(svc("backend"), "Allow")]),
        mtp("not-web", svc("backend"), from_=[frm(MESH_REF, "Deny")]),
    ],
}
SNI = "backend.default.sni.mesh"


@pytest.fixture(scope="module")
def ca() -> MeshCA:
    return create_mesh_ca("default", now=NOW - dt.timedelta(days=1))


@pytest.fixture(scope="module")
def leaf(ca: MeshCA) -> Leaf:
    return issue_leaf(ca, "web", validity=dt.timedelta(hours=24), now=NOW)


def build(cert: Leaf | None, **overrides: Any) -> SidecarConfig:
    args: dict[str, Any] = {
        "dataplane": WEB,
        "zone": "zone-1",
        "mesh": MESH,
        "catalog": CATALOG,
        "vips": VIPS,
        "policies": POLICIES,
        "cert": cert,
    }
    args.update(overrides)
    return build_sidecar_config(**args)


def test_identity_tls_and_inbound(leaf: Leaf) -> None:
    cfg = build(leaf)
    assert (cfg.mesh, cfg.zone, cfg.dataplane) == ("default", "zone-1", "web-1")
    assert cfg.identity == "spiffe://default/web"
    assert cfg.mtls_enabled
    assert cfg.tls is not None
    assert cfg.tls.cert_pem == leaf.cert_pem.decode()
    assert cfg.tls.key_pem == leaf.key_pem.decode()
    assert cfg.tls.ca_pems == (leaf.ca_pem.decode(),)
    assert cfg.tls.expires_at == "2026-03-02T12:00:00Z"
    (web_in,) = cfg.inbounds
    assert (web_in.name, web_in.address, web_in.port) == ("http", "127.0.1.10", 18000)
    assert (web_in.service_address, web_in.service_port, web_in.service) == (
        "127.0.0.1",
        3000,
        "web",
    )
    perms = web_in.permissions
    assert perms.evaluate("spiffe://default/backend").action is Action.ALLOW
    assert perms.evaluate("spiffe://default/other").action is Action.DENY
    # "not-web" targets backend's inbounds, not web's.
    assert perms.sources == ("MeshTrafficPermission/web-from-backend",)


def test_vip_outbounds_list_local_and_remote_endpoints(leaf: Leaf) -> None:
    cfg = build(leaf)
    vip = [o for o in cfg.outbounds if o.kind is OutboundKind.VIP]
    assert [(o.service, o.zone, o.address, o.port, o.also_port_80) for o in vip] == [
        ("backend", None, "127.1.0.1", 8080, True),
        ("backend", "zone-2", "127.1.0.2", 8080, True),
        ("web", None, "127.1.0.3", 3000, True),
    ]
    backend, backend_z2, web = vip
    assert backend.endpoints == (
        Endpoint("127.0.1.1", 18080, "zone-1"),
        Endpoint("127.0.1.2", 18080, "zone-1"),
        Endpoint("127.0.2.100", 10001, "zone-2", 2, Locality.REMOTE, True, SNI),
    )
    assert backend_z2.endpoints == backend.endpoints[2:]
    assert web.endpoints == (Endpoint("127.0.1.10", 18000, "zone-1"),)
    assert (backend.policies.connect_timeout, backend.policies.idle_timeout) == (2.0, 60.0)
    assert (web.policies.connect_timeout, web.policies.idle_timeout) == (2.0, 3600.0)
    assert backend.policies.sources == ("MeshTimeout/timeouts",)


def test_explicit_outbounds_select_by_tags(leaf: Leaf) -> None:
    cfg = build(leaf)
    v1, pinned = (o for o in cfg.outbounds if o.kind is OutboundKind.EXPLICIT)
    # A tag subset is served by matching local instances only: an ingress routes by service.
    assert (v1.address, v1.port, v1.zone, v1.also_port_80) == ("127.0.0.1", 9000, None, False)
    assert v1.endpoints == (Endpoint("127.0.1.1", 18080, "zone-1"),)
    # kuma.io/zone pins a zone.
    assert (pinned.address, pinned.port, pinned.zone) == ("127.0.0.5", 9001, "zone-2")
    assert [e.zone for e in pinned.endpoints] == ["zone-2"]
    assert pinned.policies.idle_timeout == 60.0


def test_without_mtls_there_is_no_cross_zone_path(leaf: Leaf) -> None:
    cfg = build(leaf, mesh=PLAIN_MESH)
    assert not cfg.mtls_enabled and cfg.tls is None
    assert not cfg.inbounds[0].permissions.enforced
    for out in cfg.outbounds:
        assert all(not e.via_ingress for e in out.endpoints)
    pinned = next(o for o in cfg.outbounds if o.zone == "zone-2" and o.kind is OutboundKind.VIP)
    assert pinned.endpoints == ()
    assert build(None, mesh=PLAIN_MESH).version == cfg.version  # a cert is not needed


def test_reachable_services_and_port_80(leaf: Leaf) -> None:
    cfg = build(leaf, reachable={"web"}, port_80=False)
    assert [(o.service, o.kind, o.also_port_80) for o in cfg.outbounds] == [
        ("web", OutboundKind.VIP, False),
        ("backend", OutboundKind.EXPLICIT, False),
        ("backend", OutboundKind.EXPLICIT, False),
    ]
    no_vips = build(leaf, vips={})
    assert all(o.kind is OutboundKind.EXPLICIT for o in no_vips.outbounds)


def test_service_on_port_80_listens_once() -> None:
    web80 = dataplane("web-80", inbound("web", 80), address="127.0.1.10")
    catalog = build_catalog("zone-1", [web80], [])
    cfg = build(None, dataplane=web80, catalog=catalog, mesh=PLAIN_MESH)
    (out,) = cfg.outbounds
    assert (out.port, out.also_port_80) == (80, False)


def test_remote_only_service_without_port_uses_80(leaf: Leaf) -> None:
    old = zone_ingress(
        "old",
        "zone-3",
        "127.0.3.1",
        10001,
        [{"tags": {"kuma.io/service": "legacy"}, "instances": 1, "mesh": "default"}],
    )
    catalog = build_catalog("zone-1", [WEB], [old])
    cfg = build(leaf, catalog=catalog, vips={VipKey("default", "legacy"): "127.1.0.9"})
    legacy = next(o for o in cfg.outbounds if o.service == "legacy")
    assert (legacy.port, legacy.also_port_80) == (80, False)
    assert legacy.endpoints[0].sni == "legacy.default.sni.mesh"


def test_version_follows_content(leaf: Leaf, ca: MeshCA) -> None:
    first = build(leaf).stamped()
    assert not build(leaf).version  # zone-cp stamps when it encodes (once per push)
    assert build(leaf).stamped().version == first.version
    assert SidecarConfig.from_json(first.to_bytes()) == first
    timeouts = policy(
        "MeshTimeout", "timeouts", MESH_REF, to=[to(MESH_REF, {"connectionTimeout": "3s"})]
    )
    changed = build(leaf, policies={**POLICIES, "MeshTimeout": [timeouts]}).stamped()
    assert changed.version != first.version
    fewer = build_catalog("zone-1", [WEB, *Z1_BACKENDS[:1]], [Z2_INGRESS])
    assert build(leaf, catalog=fewer).stamped().version != first.version
    rotated = issue_leaf(ca, "web", now=NOW + dt.timedelta(hours=20))
    assert build(rotated).stamped().version != first.version


def test_ingress_config_routes_snis_to_local_instances() -> None:
    other_mesh = dataplane("pay-1", inbound("pay", 18080), address="127.0.2.9", mesh="payments")
    catalog = build_catalog("zone-2", [*Z2_BACKENDS, other_mesh], [])
    cfg = build_ingress_config(
        Z2_INGRESS,
        "zone-2",
        catalog,
        {"default": MESH, "payments": mesh_resource("payments", mtls=False)},
    )
    assert (cfg.zone, cfg.ingress) == ("zone-2", "ingress-2")
    (backend,) = cfg.services  # payments has no mTLS: nothing to route by SNI
    assert (backend.mesh, backend.service, backend.sni) == ("default", "backend", SNI)
    assert backend.endpoints == (
        Endpoint("127.0.2.1", 18080, "zone-2"),
        Endpoint("127.0.2.2", 18080, "zone-2"),
    )
    assert not cfg.version and cfg.stamped().version


def test_cross_zone_path_end_to_end(leaf: Leaf) -> None:
    web_cfg = build(leaf)
    backend = next(o for o in web_cfg.outbounds if o.service == "backend" and o.zone is None)
    remote = [e for e in backend.endpoints if e.via_ingress]
    assert [(e.address, e.port) for e in remote] == [("127.0.2.100", 10001)]
    ingress_cfg = build_ingress_config(
        Z2_INGRESS, "zone-2", build_catalog("zone-2", Z2_BACKENDS, [Z2_INGRESS]), {"default": MESH}
    )
    routed = ingress_cfg.by_sni()[remote[0].sni]
    assert decode_sni(remote[0].sni) == ("backend", "default")
    assert {(e.address, e.port) for e in routed.endpoints} == {
        ("127.0.2.1", 18080),
        ("127.0.2.2", 18080),
    }


def test_inputs_that_cannot_make_a_config(leaf: Leaf, ca: MeshCA) -> None:
    with pytest.raises(BuildError, match="mTLS enabled but no certificate"):
        build(None)
    with pytest.raises(BuildError, match="certificate names spiffe://default/backend"):
        build(issue_leaf(ca, "backend", now=NOW))
    with pytest.raises(BuildError, match="is in mesh 'default', not 'payments'"):
        build(leaf, mesh=mesh_resource("payments"))
    with pytest.raises(BuildError, match="catalog is zone 'zone-1'"):
        build(leaf, zone="zone-2")
    with pytest.raises(BuildError, match="expected a Dataplane and a Mesh"):
        build(leaf, dataplane=Z2_INGRESS)
    with pytest.raises(BuildError, match="expected a ZoneIngress"):
        build_ingress_config(WEB, "zone-1", CATALOG, {})
    broken = WEB.clone()
    broken.spec["networking"].pop("address")
    with pytest.raises(BuildError, match=r"no networking\.address"):
        build(leaf, dataplane=broken)
    no_inbound = WEB.clone()
    no_inbound.spec["networking"]["inbound"] = [{"port": 1}]
    with pytest.raises(BuildError, match="no usable inbound"):
        build(leaf, dataplane=no_inbound)
    clash = WEB.clone()
    clash.spec["networking"]["outbound"] = [
        {"port": 9000, "tags": {"kuma.io/service": "a"}},
        {"port": 9000, "tags": {"kuma.io/service": "b"}},
    ]
    with pytest.raises(BuildError, match=r"a and b both listen on 127\.0\.0\.1:9000"):
        build(leaf, dataplane=clash)
    bad_outbound = WEB.clone()
    bad_outbound.spec["networking"]["outbound"] = [{"port": 9000}]
    with pytest.raises(BuildError, match=r"networking.outbound\[0\]: needs a port"):
        build(leaf, dataplane=bad_outbound)


def test_protocols_come_from_the_kuma_protocol_tag(leaf: Leaf) -> None:
    grpc_web = dataplane(
        "web-1",
        inbound("web", 18000, servicePort=3000, tags={"kuma.io/protocol": "grpc"}),
        address="127.0.1.10",
    )
    http_backends = [
        dataplane(
            f"backend-{i}",
            inbound("backend", 18080, servicePort=8080, tags={"kuma.io/protocol": proto}),
            address=f"127.0.1.{i}",
        )
        for i, proto in ((1, "http"), (2, "http"), (3, "tcp"))
    ]
    catalog = build_catalog("zone-1", [grpc_web, *http_backends], [Z2_INGRESS])
    cfg = build(leaf, dataplane=grpc_web, catalog=catalog)
    assert [i.protocol for i in cfg.inbounds] == ["grpc"]
    by_service = {o.service: o.protocol for o in cfg.outbounds if o.zone is None}
    # instances that disagree fall back to tcp (Kuma expects one protocol per service)
    assert by_service == {"backend": "tcp", "web": "grpc"}
    agreeing = build_catalog("zone-1", [grpc_web, *http_backends[:2]], [])
    cfg = build(leaf, dataplane=grpc_web, catalog=agreeing)
    assert {o.service: o.protocol for o in cfg.outbounds if o.zone is None}["backend"] == "http"
    untagged = build(leaf)
    assert {o.protocol for o in untagged.outbounds} == {"tcp"}
    assert [i.protocol for i in untagged.inbounds] == ["tcp"]
