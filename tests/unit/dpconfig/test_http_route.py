"""MeshHTTPRoute at zone-cp: Kuma's merge of rules across routes, Gateway API's precedence,
and the rules the builder ships on an http outbound (decisions 120, 125)."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.catalog import build_catalog
from meshfed.dpconfig.http_route import HttpRoute, RouteRule, http_route, precedence
from meshfed.dpconfig.model import (
    Endpoint,
    HeaderKV,
    HeaderModifier,
    HttpMatch,
    PathMatch,
    RequestMirror,
    Split,
)
from meshfed.dpconfig.policies import RouteBackend, route_targets
from meshfed.pki.leaf import Leaf
from meshfed.policy.rules import Matched, match
from meshfed.policy.targetref import view_of
from meshfed.resources.model import Resource
from tests.unit.dpconfig.test_build import CATALOG, POLICIES, WEB, build, ca, leaf
from tests.unit.policy.factories import MESH_REF, dataplane, inbound, policy, svc

__all__ = ["ca", "leaf"]

VIEW = view_of(dataplane("web-1", inbound("web", 8080), labels={"app": "web"}), "zone-1")
WEB_REF = {"kind": "Dataplane", "labels": {"app": "web"}}
HEADER_MOD = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-a"]}}
HTTP = {"kuma.io/protocol": "http"}
# zone-1 with backend speaking http: v1 and v2 instances
HTTP_CATALOG = build_catalog(
    "zone-1",
    [
        WEB,
        dataplane("backend-1", inbound("backend", 18080, tags={"version": "v1", **HTTP}),
                  address="127.0.1.1"),
        dataplane("backend-2", inbound("backend", 18080, tags={"version": "v2", **HTTP}),
                  address="127.0.1.2"),
    ],
    [],
)  # fmt: skip


def path(kind: str, value: str) -> dict[str, Any]:
    return {"path": {"type": kind, "value": value}}


def rule(matches: list[dict[str, Any]], **default: Any) -> dict[str, Any]:
    return {"matches": matches, "default": default}


def route(
    name: str, rules: list[dict[str, Any]], target: dict[str, Any] = MESH_REF, to: str = "backend"
) -> Resource:
    return policy("MeshHTTPRoute", name, target, to=[{"targetRef": svc(to), "rules": rules}])


def matched(*routes: Resource) -> dict[str, list[Matched]]:
    return {"MeshHTTPRoute": match(routes, VIEW)}


def test_no_route_selects_the_outbound() -> None:
    assert http_route({}, "backend") is None
    assert http_route(matched(route("r", [rule([path("Exact", "/")])])), "web") is None


def test_gateway_api_precedence() -> None:
    ordered = [
        path("Exact", "/a"),
        path("PathPrefix", "/longer"),
        path("PathPrefix", "/b"),
        {**path("RegularExpression", "/x.*y"), "method": "GET"},
        path("RegularExpression", "/x.*"),
        {"method": "GET"},
        {"headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]},
        {"headers": [{"name": "a", "value": "1"}], "queryParams": [{"name": "q"}]},
        {"headers": [{"name": "a", "value": "1"}]},
        {},
    ]
    assert sorted(reversed(ordered), key=precedence) == ordered


def test_rules_merge_by_matches_and_order_by_precedence() -> None:
    mesh_wide = route(
        "mesh-wide",
        [
            rule([path("PathPrefix", "/")], backendRefs=[svc("v1")]),
            rule(
                [path("PathPrefix", "/api"), {"method": "POST"}],
                filters=[HEADER_MOD],
                backendRefs=[svc("v1")],
            ),
        ],
    )
    # more specific (a Dataplane top-level ref): its default merges over the mesh-wide one
    for_web = route(
        "for-web",
        [
            rule([path("PathPrefix", "/api"), {"method": "POST"}], backendRefs=[svc("v2")]),
            rule([path("Exact", "/health")]),
        ],
        WEB_REF,
    )
    got = http_route(matched(for_web, mesh_wide), "backend")
    header_mod = (HEADER_MOD,)
    v2 = (RouteBackend(weight=1, name="v2"),)
    assert got == HttpRoute(
        (
            RouteRule(path("Exact", "/health")),
            RouteRule(path("PathPrefix", "/api"), header_mod, v2),
            RouteRule(path("PathPrefix", "/"), (), (RouteBackend(weight=1, name="v1"),)),
            RouteRule({"method": "POST"}, header_mod, v2),  # the same rule's other match
        ),
        ("MeshHTTPRoute/mesh-wide", "MeshHTTPRoute/for-web"),
    )


def test_the_builder_ships_ordered_rules_with_weighted_splits(leaf: Leaf) -> None:
    canary = route(
        "canary",
        [
            rule(
                [{"headers": [{"name": "x-version", "value": "v2"}]}],
                backendRefs=[
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}}
                ],
            ),
            rule(
                [path("Exact", "/")],
                filters=[
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-a", "value": "b"}]},
                    },
                    {
                        "type": "RequestMirror",
                        "requestMirror": {"percentage": "12.5", "backendRef": svc("web")},
                    },
                ],
            ),
        ],
    )
    cfg = build(leaf, policies={**POLICIES, "MeshHTTPRoute": [canary]}, catalog=HTTP_CATALOG)
    backend = next(o for o in cfg.outbounds if o.service == "backend" and o.zone is None)
    assert backend.protocol == "http"
    exact, header = backend.http_rules
    assert exact.match == HttpMatch(path=PathMatch("Exact", "/")) and exact.splits == ()
    set_a = HeaderModifier(set=(HeaderKV("x-a", "b"),))
    assert exact.filters[0].request_header_modifier == set_a
    web = Split("web", 1, (Endpoint("127.0.1.10", 18000, "zone-1"),))
    assert exact.filters[1].request_mirror == RequestMirror(web, 12.5)
    assert header.splits == (Split("backend", 1, (Endpoint("127.0.1.2", 18080, "zone-1"),)),)
    assert backend.splits == () and backend.route == ("MeshHTTPRoute/canary",)


def test_an_http_route_wins_over_a_tcp_route_on_an_http_service(leaf: Leaf) -> None:
    tcp = policy(
        "MeshTCPRoute",
        "tcp",
        MESH_REF,
        to=[{"targetRef": svc("backend"), "rules": [{"default": {"backendRefs": [svc("web")]}}]}],
    )
    http = route("http", [rule([path("PathPrefix", "/")], backendRefs=[svc("web")])])
    policies = {**POLICIES, "MeshTCPRoute": [tcp], "MeshHTTPRoute": [http]}
    for catalog, http_wins in ((HTTP_CATALOG, True), (CATALOG, False)):
        cfg = build(leaf, policies=policies, catalog=catalog)
        backend = next(o for o in cfg.outbounds if o.service == "backend" and o.zone is None)
        assert backend.protocol == ("http" if http_wins else "tcp")
        if http_wins:
            assert backend.http_rules and backend.splits == ()
            assert backend.route == ("MeshHTTPRoute/http",)
        else:  # a tcp service: only the TCP route applies
            assert backend.http_rules == () and backend.splits


def test_a_mirror_counts_as_a_backend_for_narrowed_catalogs() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": svc("shadow")}}
    r = route("m", [rule([path("Exact", "/")], filters=[mirror], backendRefs=[svc("v2")])])
    assert route_targets([r]) == {"shadow": {"backend"}, "v2": {"backend"}}
