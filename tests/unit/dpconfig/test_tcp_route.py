"""MeshTCPRoute: the effective route of an outbound (Kuma's merge) and the weighted endpoint
sets the builder makes of its backendRefs (decision 124)."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.model import Endpoint, Locality, OutboundKind, Split
from meshfed.dpconfig.policies import (
    ANY_SERVICE,
    RouteBackend,
    route_backend,
    route_targets,
    routed_services,
    tcp_route,
    with_route_backends,
)
from meshfed.pki.leaf import Leaf
from meshfed.policy.rules import Matched, match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.dpconfig.test_build import POLICIES, SNI, WEB, build, ca, leaf
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc

__all__ = ["ca", "leaf"]  # the fixtures this module's tests take

VIEW = view_of(dataplane("web-1", inbound("web", 8080), labels={"app": "web"}), "zone-1")
WEB_REF = {"kind": "Dataplane", "labels": {"app": "web"}}
Z2_INGRESS = Endpoint("127.0.2.100", 10001, "zone-2", 2, Locality.REMOTE, True, SNI)


def route(name: str, refs: list[dict[str, Any]], target: dict[str, Any] = MESH_REF) -> Resource:
    to = [{"targetRef": svc("backend"), "rules": [{"default": {"backendRefs": refs}}]}]
    return policy("MeshTCPRoute", name, target, to=to)


def matched(*routes: Resource) -> dict[str, list[Matched]]:
    return {"MeshTCPRoute": match(routes, VIEW)}


def test_no_route_selects_the_outbound() -> None:
    assert tcp_route({}, "backend") is None
    assert tcp_route(matched(route("r", [svc("web")])), "web") is None


def test_the_most_specific_route_replaces_the_backend_list_whole() -> None:
    mesh_wide = route("mesh-wide", [svc("backend"), svc("web")])
    for_web = route("for-web", [{**svc("web"), "weight": 5}], WEB_REF)
    got = tcp_route(matched(for_web, mesh_wide), "backend")
    assert got is not None
    assert got.backends == (RouteBackend(weight=5, name="web"),)
    assert got.sources == ("MeshTCPRoute/mesh-wide", "MeshTCPRoute/for-web")


def test_backend_refs_name_a_service_a_subset_and_a_zone() -> None:
    assert route_backend(svc("backend")) == RouteBackend(weight=1, name="backend")
    pinned = {
        "kind": "MeshServiceSubset",
        "name": "backend",
        "weight": 10,
        "tags": {"kuma.io/zone": "zone-2", "kuma.io/service": "backend"},
    }
    assert route_backend(pinned) == RouteBackend(weight=10, name="backend", zone="zone-2")
    v2 = {"kind": "MeshServiceSubset", "name": "backend", "weight": 0, "tags": {"version": "v2"}}
    assert route_backend(v2) == RouteBackend(weight=0, name="backend", tags={"version": "v2"})
    labels = {"kuma.io/display-name": "web", "kuma.io/zone": "zone-1"}
    by_labels = {"kind": "MeshService", "labels": labels}
    assert route_backend(by_labels) == RouteBackend(weight=1, labels=labels, zone="zone-1")
    anywhere = {"kind": "MeshService", "labels": {"kuma.io/zone": "*"}}
    assert route_backend(anywhere).zone is None


def _build(leaf: Leaf, *routes: Resource) -> dict[tuple[str, str | None, int], Any]:
    cfg = build(leaf, policies={**POLICIES, "MeshTCPRoute": list(routes)})
    return {(o.service, o.zone, o.port): o for o in cfg.outbounds}


def test_each_backend_ref_becomes_a_weighted_endpoint_set(leaf: Leaf) -> None:
    canary = route(
        "canary",
        [
            {**svc("backend"), "weight": 90},
            {"kind": "MeshServiceSubset", "name": "backend", "weight": 10,
             "tags": {"kuma.io/zone": "zone-2"}},
            {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}},
            {"kind": "MeshService", "labels": {"kuma.io/display-name": "web"}, "weight": 3},
            {**svc("nowhere"), "weight": 7},
        ],
    )  # fmt: skip
    outbounds = _build(leaf, canary)
    backend = outbounds[("backend", None, 8080)]
    assert backend.route == ("MeshTCPRoute/canary",)
    everywhere, zone_2, v2, web, nowhere = backend.splits
    assert everywhere == Split("backend", 90, backend.endpoints)
    assert zone_2 == Split("backend", 10, (Z2_INGRESS,), "zone-2")
    # a tag subset: local instances only (the ingress routes by service and mesh)
    assert v2 == Split("backend", 1, (Endpoint("127.0.1.2", 18080, "zone-1"),))
    assert web == Split("web", 3, (Endpoint("127.0.1.10", 18000, "zone-1"),))
    assert nowhere == Split("nowhere", 7, ())


def test_outbounds_that_chose_a_zone_or_subset_are_not_routed(leaf: Leaf) -> None:
    outbounds = _build(leaf, route("to-web", [svc("web")]))
    routed = {key for key, o in outbounds.items() if o.splits}
    assert routed == {("backend", None, 8080)}  # not backend.zone-2.mesh, not explicit ones
    explicit = [o for o in outbounds.values() if o.kind is OutboundKind.EXPLICIT]
    assert len(explicit) == 2 and not any(o.splits for o in explicit)


def test_an_explicit_outbound_of_the_whole_service_is_routed(leaf: Leaf) -> None:
    plain = {**WEB.spec["networking"]["outbound"][0], "port": 9002}
    plain["tags"] = {"kuma.io/service": "backend"}
    web = dataplane(
        "web-1",
        inbound("web", 18000, servicePort=3000, serviceAddress="127.0.0.1", name="http"),
        address="127.0.1.10",
        labels={"app": "web"},
        outbounds=[plain],
    )
    policies = {**POLICIES, "MeshTCPRoute": [route("to-web", [svc("web")])]}
    cfg = build(leaf, dataplane=web, policies=policies)
    (explicit,) = (o for o in cfg.outbounds if o.kind is OutboundKind.EXPLICIT)
    assert [s.service for s in explicit.splits] == ["web"]


def test_what_a_sidecar_depends_on_through_routes() -> None:
    """zone-cp narrows a sidecar's catalog to the services it calls and rebuilds it when one
    changes: a route's backends count as called by the callers of the routed service."""
    by_labels = {"kind": "MeshService", "labels": {"kuma.io/display-name": "web"}}
    anything = {"kind": "MeshService", "labels": {"team": "a"}}
    routes = [route("r1", [svc("backend"), by_labels]), route("r2", [svc("next")])]
    assert route_targets(routes) == {
        "backend": {"backend"},
        "web": {"backend"},
        "next": {"backend"},
    }
    assert with_route_backends(frozenset({"backend"}), routes) == {"backend", "web", "next"}
    assert with_route_backends(frozenset({"api"}), routes) == {"api"}
    assert with_route_backends(frozenset({"backend"}), [route("r3", [anything])]) is None
    assert routed_services("next", routes) == {"backend"}
    assert routed_services("api", routes) == set()
    assert routed_services("api", [route("r3", [anything])]) == {"backend"}
    assert route_targets([route("r3", [anything])]) == {ANY_SERVICE: {"backend"}}
