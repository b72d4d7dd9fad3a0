"""MeshService and MeshMultiZoneService outbounds (issue 17): a MeshService's VIP and ports
reach its own zone only (local instances on the target port, or that zone's ingress); a
MeshMultiZoneService reaches every zone of the MeshServices it selects; the Mesh's
meshServices.mode decides whether kuma.io/service outbounds stay."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.catalog import build_catalog
from meshfed.dpconfig.meshservices import (
    MESH_MULTI_ZONE_SERVICE,
    MESH_SERVICE,
    resolve_targets,
    vip_key,
)
from meshfed.dpconfig.model import Locality, SidecarConfig
from meshfed.pki.leaf import Leaf
from meshfed.resources.model import Meta, Resource
from tests.unit.dpconfig.test_build import MESH, WEB, Z1_BACKENDS, Z2_INGRESS, build, ca, leaf
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc, to

__all__ = ["ca", "leaf"]  # fixtures


def mesh_service(name: str, zone: str | None, service: str, port: int, target: Any) -> Resource:
    labels = {} if zone is None else {"kuma.io/zone": zone, "kuma.io/origin": "global"}
    if zone is not None:
        labels["kuma.io/display-name"] = service
    spec = {
        "spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": service}},
            "ports": [{"port": port, "targetPort": target, "appProtocol": "tcp"}],
        }
    }
    return Resource("MeshService", Meta(name=name, mesh="default", labels=labels), spec)


LOCAL = mesh_service("backend", None, "backend", 80, 18080)
REMOTE = mesh_service("backend.abc", "zone-2", "backend", 80, 18080)
MZS = Resource(
    "MeshMultiZoneService",
    Meta(name="backend", mesh="default"),
    {
        "spec": {
            "selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "backend"}}},
            "ports": [{"port": 8080, "appProtocol": "tcp"}],
        }
    },
)
TARGET_VIPS = {
    vip_key(MESH_SERVICE, "default", "backend"): "127.1.1.1",
    vip_key(MESH_SERVICE, "default", "backend.abc"): "127.1.1.2",
    vip_key(MESH_MULTI_ZONE_SERVICE, "default", "backend"): "127.1.1.3",
}
TARGETS = resolve_targets("zone-1", [LOCAL, REMOTE], [MZS], TARGET_VIPS)


def outbound(config: SidecarConfig, address: str) -> Any:
    return next(o for o in config.outbounds if o.address == address)


def no_locality(name: str, ref: dict[str, Any]) -> Resource:
    """A MeshLoadBalancingStrategy turning locality awareness off for `ref`."""
    conf = {"localityAwareness": {"disabled": True}}
    return policy("MeshLoadBalancingStrategy", name, MESH_REF, to=[to(ref, conf)])


def mesh_with(mode: str) -> Resource:
    return Resource(MESH.type, MESH.meta, {**MESH.spec, "meshServices": {"mode": mode}})


def two_port_targets(admin_target: int) -> Any:
    """backend's MeshService with ports main (80 -> 18080) and admin (81 -> `admin_target`)."""
    two_ports = Resource(
        "MeshService",
        Meta(name="backend", mesh="default"),
        {
            "spec": {
                "selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
                "ports": [
                    {"name": "main", "port": 80, "targetPort": 18080},
                    {"name": "admin", "port": 81, "targetPort": admin_target},
                ],
            }
        },
    )
    return resolve_targets("zone-1", [two_ports], [], TARGET_VIPS)


def test_a_mesh_service_reaches_its_own_zone_only(leaf: Leaf) -> None:
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=TARGETS)
    local = outbound(config, "127.1.1.1")
    assert local.port == 80 and local.zone == "zone-1"
    assert {(e.address, e.port, e.locality) for e in local.endpoints} == {
        ("127.0.1.1", 18080, Locality.LOCAL),
        ("127.0.1.2", 18080, Locality.LOCAL),
    }
    remote = outbound(config, "127.1.1.2")
    assert remote.zone == "zone-2"
    assert [(e.address, e.zone, e.via_ingress) for e in remote.endpoints] == [
        ("127.0.2.100", "zone-2", True)
    ]
    assert any(o.address == "127.1.0.1" for o in config.outbounds)  # kuma.io/service kept


def test_a_multi_zone_service_spans_the_zones_of_the_services_it_selects(leaf: Leaf) -> None:
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=TARGETS)
    mz = outbound(config, "127.1.1.3")
    assert mz.port == 8080 and mz.zone is None and mz.service == "backend"
    assert sorted(e.zone for e in mz.endpoints) == ["zone-1", "zone-1", "zone-2"]


def test_a_target_port_that_no_instance_listens_on_leaves_no_local_endpoint(leaf: Leaf) -> None:
    other = mesh_service("backend", None, "backend", 80, 9999)
    targets = resolve_targets("zone-1", [other], [], TARGET_VIPS)
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=targets)
    assert outbound(config, "127.1.1.1").endpoints == ()


def test_a_target_port_naming_an_inbound_keeps_the_instances_with_that_name(leaf: Leaf) -> None:
    # backend-1's inbound is named `http-port`, backend-2's has no name (Kuma's
    # "MeshService with named targetPort")
    named = dataplane(
        "backend-1",
        inbound("backend", 18080, servicePort=8080, name="http-port"),
        address="127.0.1.1",
    )
    catalog = build_catalog("zone-1", [WEB, named, Z1_BACKENDS[1]], [Z2_INGRESS])
    by_name = mesh_service("backend", None, "backend", 80, "http-port")
    targets = resolve_targets("zone-1", [by_name], [], TARGET_VIPS)
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=targets, catalog=catalog)
    assert [(e.address, e.port) for e in outbound(config, "127.1.1.1").endpoints] == [
        ("127.0.1.1", 18080)
    ]
    other = resolve_targets(
        "zone-1", [mesh_service("backend", None, "backend", 80, "grpc")], [], TARGET_VIPS
    )
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=other, catalog=catalog)
    assert outbound(config, "127.1.1.1").endpoints == ()


def test_modes(leaf: Leaf) -> None:
    exclusive = build(leaf, mesh=mesh_with("Exclusive"), targets=TARGETS)
    assert {o.address for o in exclusive.outbounds if o.kind == "vip"} == {
        "127.1.1.1",
        "127.1.1.2",
        "127.1.1.3",
    }
    # ReachableBackends: only the MeshServices of the services the sidecar announced
    reach = build(leaf, mesh=mesh_with("ReachableBackends"), targets=TARGETS, reachable={"web"})
    assert not any(o.address.startswith("127.1.1.") for o in reach.outbounds)
    reach = build(leaf, mesh=mesh_with("ReachableBackends"), targets=TARGETS, reachable={"backend"})
    assert sum(o.address.startswith("127.1.1.") for o in reach.outbounds) == 3


def test_section_name_selects_one_named_port(leaf: Leaf) -> None:
    targets = two_port_targets(18080)
    ref = {"kind": "MeshService", "name": "backend", "sectionName": "main"}
    timeouts = policy("MeshTimeout", "main-only", MESH_REF, to=[to(ref, {"idleTimeout": "7s"})])
    config = build(
        leaf,
        mesh=mesh_with("Everywhere"),
        targets=targets,
        policies={"MeshTimeout": [timeouts]},
    )
    by_port = {o.port: o for o in config.outbounds if o.address == "127.1.1.1"}
    assert by_port[80].policies.idle_timeout == 7.0
    assert by_port[81].policies.idle_timeout == 3600.0  # Kuma's default
    # MeshLoadBalancingStrategy's locality fields follow the port too
    lbs = no_locality("main-lb", ref)
    config = build(
        leaf,
        mesh=mesh_with("Everywhere"),
        targets=targets,
        policies={"MeshTimeout": [timeouts], "MeshLoadBalancingStrategy": [lbs]},
    )
    by_port = {o.port: o for o in config.outbounds if o.address == "127.1.1.1"}
    assert (by_port[80].policies.locality_aware, by_port[81].policies.locality_aware) == (
        False,
        True,
    )
    # the kuma.io/service outbound is no MeshService port: not selected either
    classic = next(o for o in config.outbounds if o.address == "127.1.0.1" and o.zone is None)
    assert classic.policies.idle_timeout == 3600.0


def test_routes_attach_to_the_meshservice_port_their_section_names(leaf: Leaf) -> None:
    """Decision 166: a route's to[] `sectionName` routes one MeshService port's outbound."""
    targets = two_port_targets(18080)
    ref = {"kind": "MeshService", "name": "backend", "sectionName": "main"}
    refs = [{"kind": "MeshService", "name": "backend", "weight": 3}]
    rules = [{"default": {"backendRefs": refs}}]
    tcp = policy("MeshTCPRoute", "main-tcp", MESH_REF, to=[{"targetRef": ref, "rules": rules}])
    config = build(
        leaf, mesh=mesh_with("Everywhere"), targets=targets, policies={"MeshTCPRoute": [tcp]}
    )
    by_port = {o.port: o for o in config.outbounds if o.address == "127.1.1.1"}
    assert [(s.service, s.weight) for s in by_port[80].splits] == [("backend", 3)]
    assert by_port[80].route == ("MeshTCPRoute/main-tcp",)
    assert by_port[81].splits == () and by_port[81].route == ()
    # the kuma.io/service outbound is no MeshService port: not routed
    classic = next(o for o in config.outbounds if o.address == "127.1.0.1" and o.zone is None)
    assert classic.route == ()
    # without a sectionName the route takes every port of the MeshService
    whole = policy(
        "MeshTCPRoute", "all-tcp", MESH_REF, to=[{"targetRef": svc("backend"), "rules": rules}]
    )
    config = build(
        leaf, mesh=mesh_with("Everywhere"), targets=targets, policies={"MeshTCPRoute": [whole]}
    )
    routed = [o.port for o in config.outbounds if o.address == "127.1.1.1" and o.route]
    assert sorted(routed) == [80, 81]


def test_a_backend_ref_port_sends_to_that_meshservice_ports_endpoints(leaf: Leaf) -> None:
    """Decision 166: `{kind: MeshService, name, port}` resolves as that port's outbound."""
    targets = two_port_targets(19999)
    refs = [
        {"kind": "MeshService", "name": "backend", "port": 80, "weight": 1},
        {"kind": "MeshService", "name": "backend", "port": 81, "weight": 2},
        {"kind": "MeshService", "name": "backend", "port": 82, "weight": 3},
    ]
    rules = [{"default": {"backendRefs": refs}}]
    ref = {"kind": "MeshService", "name": "backend", "sectionName": "main"}
    tcp = policy("MeshTCPRoute", "split", MESH_REF, to=[{"targetRef": ref, "rules": rules}])
    config = build(
        leaf, mesh=mesh_with("Everywhere"), targets=targets, policies={"MeshTCPRoute": [tcp]}
    )
    main = next(o for o in config.outbounds if o.address == "127.1.1.1" and o.port == 80)
    assert [(s.weight, [(e.address, e.port) for e in s.endpoints]) for s in main.splits] == [
        (1, [(e.address, e.port) for e in main.endpoints]),
        (2, []),  # no instance listens on the admin port's targetPort
        (3, []),  # no such port
    ]
    assert main.endpoints and all(e.port == 18080 for e in main.endpoints)


def test_a_dataplane_ref_selects_that_dataplane_in_its_zone(leaf: Leaf) -> None:
    one = Resource(
        "MeshService",
        Meta(name="backend", mesh="default"),
        {"spec": {"selector": {"dataplaneRef": {"name": "backend-1"}}, "ports": [{"port": 80}]}},
    )
    targets = resolve_targets("zone-1", [one], [], TARGET_VIPS)
    config = build(leaf, mesh=mesh_with("Everywhere"), targets=targets)
    assert [e.address for e in outbound(config, "127.1.1.1").endpoints] == ["127.0.1.1"]


def test_policies_name_a_multi_zone_service_by_kind(leaf: Leaf) -> None:
    mzs_ref = {"kind": "MeshMultiZoneService", "name": "backend"}
    lbs = no_locality("mzs-lb", mzs_ref)
    timeouts = policy(
        "MeshTimeout", "svc", MESH_REF, to=[to(svc("backend"), {"idleTimeout": "9s"})]
    )
    config = build(
        leaf,
        mesh=mesh_with("Everywhere"),
        targets=TARGETS,
        policies={"MeshLoadBalancingStrategy": [lbs], "MeshTimeout": [timeouts]},
    )
    mz = outbound(config, "127.1.1.3")
    ms = outbound(config, "127.1.1.1")
    assert (mz.policies.locality_aware, ms.policies.locality_aware) == (False, True)
    # a MeshService ref is not the MeshMultiZoneService's (Kuma): its own defaults
    assert (mz.policies.idle_timeout, ms.policies.idle_timeout) == (3600.0, 9.0)
