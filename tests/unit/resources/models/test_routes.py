"""Issue 14's types against Kuma 2.14's validation rules: every documented example passes the
model, the gate refuses it naming fields, and each rule reports at its path, all at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshfed.resources.codec import resource_from_dict
from meshfed.resources.descriptors import KdsFlag, Mode
from meshfed.resources.errors import ValidationError
from meshfed.resources.types import default_registry
from meshfed.resources.types.policies import NOT_YET_ENFORCED
from tests.integration.api.test_kuma_docs_examples import PENDING
from tests.unit.policy.factories import schema_registry

FIXTURES = Path(__file__).parents[3] / "fixtures" / "kuma-docs"
ROUTE_TYPES = ("MeshHTTPRoute", "MeshTCPRoute", "MeshFaultInjection", "MeshRateLimit")
TYPES = {name.lower(): name for name in ROUTE_TYPES}
DOCUMENTED = sorted(
    p.relative_to(FIXTURES).as_posix() for t in TYPES for p in (FIXTURES / t).glob("*.yaml")
)
FRONTEND = {"kind": "Dataplane", "labels": {"app": "frontend"}}
BACKEND = {"kind": "MeshService", "name": "backend"}


def errors(kind: str, spec: dict[str, Any]) -> dict[str, str]:
    """Every problem of a `kind` policy with `spec`, Kuma's shape only (no gate)."""
    doc = {"type": kind, "name": "p", "mesh": "default", "spec": spec}
    try:
        resource_from_dict(doc, schema_registry())
    except ValidationError as exc:
        return {e.field: e.reason for e in exc.errors}
    return {}


def http_route(rule: dict[str, Any], **to: Any) -> dict[str, Any]:
    return {"targetRef": FRONTEND, "to": [{"targetRef": BACKEND, "rules": [rule], **to}]}


def prefix_rule(**default: Any) -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "default": default}


def local(**conf: Any) -> dict[str, Any]:
    return {"targetRef": FRONTEND, "rules": [{"default": {"local": conf}}]}


def test_the_four_types_are_policies_with_kumas_names() -> None:
    registry = default_registry()
    for short, plural, name in [
        ("mhttpr", "meshhttproutes", "MeshHTTPRoute"),
        ("mtcpr", "meshtcproutes", "MeshTCPRoute"),
        ("mfi", "meshfaultinjections", "MeshFaultInjection"),
        ("mrl", "meshratelimits", "MeshRateLimit"),
    ]:
        desc = registry.lookup(short)
        assert desc is not None and desc.name == name and desc.plural == plural
        assert desc.owner is Mode.GLOBAL and KdsFlag.GLOBAL_TO_ZONE in desc.kds


def test_every_documented_example_is_one_of_the_four_types() -> None:
    # MeshTCPRoute's 2 (decision 124), MeshHTTPRoute's 4 (125), MeshFaultInjection's and
    # MeshRateLimit's 7 (128): all four types are enforced, so every example applies unchanged
    assert len(DOCUMENTED) >= 13, DOCUMENTED
    assert not set(DOCUMENTED) & set(PENDING)
    assert not set(ROUTE_TYPES) & {d.name for d in NOT_YET_ENFORCED}


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented_example_passes_the_model_and_the_gate(name: str) -> None:
    doc = yaml.safe_load((FIXTURES / name).read_text())
    assert doc["type"] == TYPES[name.split("/")[0]]
    assert resource_from_dict(doc, schema_registry()).spec == doc["spec"]
    assert resource_from_dict(doc, default_registry()).spec == doc["spec"]


def test_http_path_matches() -> None:
    def path(kind: str, value: str) -> dict[str, str]:
        rule = {"matches": [{"path": {"type": kind, "value": value}}], "default": {}}
        return errors("MeshHTTPRoute", http_route(rule))

    at = "spec.to[0].rules[0].matches[0].path"
    assert path("Exact", "/a") == {} and path("PathPrefix", "/") == {}
    assert path("PathPrefix", "/api") == {} and path("RegularExpression", "^/v[0-9]+$") == {}
    assert path("Exact", "a") == {f"{at}.value": "must be an absolute path (start with '/')"}
    assert path("PathPrefix", "/api/") == {
        f"{at}.value": "must not end with '/': a prefix matches whole '/'-separated segments"
    }
    assert path("Prefix", "/") == {
        f"{at}.type": "must be one of Exact, PathPrefix, RegularExpression"
    }
    assert path("Exact", "") == {f"{at}.value": "must not be empty"}


def test_http_header_query_and_method_matches() -> None:
    match = {
        "method": "FETCH",
        "headers": [
            {"name": "x-a"},
            {"type": "Present", "name": "x-b", "value": "1"},
            {"type": "Absent", "name": "X-C"},
            {"type": "Suffix", "name": "x-d", "value": "z"},
        ],
        "queryParams": [
            {"type": "Exact", "name": "q", "value": "1"},
            {"type": "Exact", "name": "q", "value": "2"},
            {"type": "Prefix", "name": "r", "value": "3"},
        ],
    }
    at = "spec.to[0].rules[0].matches[0]"
    assert errors("MeshHTTPRoute", http_route({"matches": [match], "default": {}})) == {
        f"{at}.method": (
            "must be one of CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE"
        ),
        f"{at}.queryParams[2].type": "must be one of Exact, RegularExpression",
        f"{at}.queryParams[1].name": "multiple entries for name q",
        f"{at}.headers[1].value": "must not be set when type is Present",
        f"{at}.headers[2].name": "must be a lower-case HTTP header name",
        f"{at}.headers[3].type": "must be one of Exact, Present, RegularExpression, Absent, Prefix",
    }
    no_matches = {"default": {}}
    assert errors("MeshHTTPRoute", http_route(no_matches)) == {
        "spec.to[0].rules[0].matches": "is required"
    }
    empty = {"matches": [], "default": {}}
    assert errors("MeshHTTPRoute", http_route(empty)) == {
        "spec.to[0].rules[0].matches": "must have at least 1 item"
    }


def test_a_filter_takes_the_block_of_its_type_only() -> None:
    filters = [
        {"type": "RequestHeaderModifier"},
        {"type": "URLRewrite", "requestMirror": {"backendRef": BACKEND}},
        {"type": "RequestRedirect", "requestRedirect": {"statusCode": 302}},
        {"type": "Rewrite"},
    ]
    at = "spec.to[0].rules[0].default.filters"
    assert errors("MeshHTTPRoute", http_route(prefix_rule(filters=filters))) == {
        f"{at}[0].requestHeaderModifier": "is required when type is RequestHeaderModifier",
        f"{at}[1].urlRewrite": "is required when type is URLRewrite",
        f"{at}[1].requestMirror": "can only be set when type is RequestMirror",
        f"{at}[3].type": (
            "must be one of RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, "
            "URLRewrite, RequestMirror"
        ),
    }


def test_header_modifiers() -> None:
    many = [{"name": f"x-{i}", "value": "v"} for i in range(17)]
    filters = [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {}},
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "set": [{"name": "x-a", "value": "1"}],
                "add": [{"name": "x-a", "value": "2"}, {"name": "X-B", "value": "3"}],
                "remove": ["x-a"],
            },
        },
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": many}},
    ]
    at = "spec.to[0].rules[0].default.filters"
    assert errors("MeshHTTPRoute", http_route(prefix_rule(filters=filters))) == {
        f"{at}[0].requestHeaderModifier": "at least one of 'set', 'add', 'remove' must be set",
        f"{at}[1].responseHeaderModifier.add[1].name": "must be a lower-case HTTP header name",
        f"{at}[1].responseHeaderModifier.add[0].name": "duplicate header name",
        f"{at}[1].responseHeaderModifier.remove[0]": "duplicate header name",
        f"{at}[2].requestHeaderModifier.set": "must have at most 16 items",
    }


def test_redirects_rewrites_and_mirrors() -> None:
    filters = [
        {
            "type": "RequestRedirect",
            "requestRedirect": {
                "scheme": "ftp",
                "hostname": "10.0.0.1",
                "port": 0,
                "statusCode": 304,
                "path": {"type": "ReplacePrefixMatch"},
            },
        },
        {
            "type": "URLRewrite",
            "urlRewrite": {
                "hostname": "Example.com",
                "hostToBackendHostname": True,
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"},
            },
        },
        {
            "type": "RequestMirror",
            "requestMirror": {"percentage": "100.5", "backendRef": {**BACKEND, "weight": 1}},
        },
    ]
    rule = {"matches": [{"method": "GET"}], "default": {"filters": filters}}
    at = "spec.to[0].rules[0].default.filters"
    redirect, rewrite, mirror = f"{at}[0].requestRedirect", f"{at}[1].urlRewrite", f"{at}[2]"
    hostname = "must be a lower-case DNS name (RFC 1123), not an IP address"
    assert errors("MeshHTTPRoute", http_route(rule)) == {
        f"{redirect}.scheme": "must be one of http, https",
        f"{redirect}.hostname": hostname,
        f"{redirect}.port": "must be an integer between 1 and 65535",
        f"{redirect}.statusCode": "must be one of 301, 302, 303, 307, 308",
        f"{redirect}.path.replacePrefixMatch": "is required when type is ReplacePrefixMatch",
        f"{rewrite}.hostname": hostname,
        f"{rewrite}.hostToBackendHostname": (
            "is not supported by meshfed: it applies to built-in gateways, and meshfed has none"
        ),
        f"{rewrite}.path.replacePrefixMatch": (
            "can only be used when every match is a path PathPrefix"
        ),
        f"{mirror}.requestMirror.percentage": (
            'must be an integer or a decimal string (e.g. "99.5") at least 0 and at most 100'
        ),
        f"{mirror}.requestMirror.backendRef.weight": (
            "must not be set on a mirror's backendRef (it has one destination)"
        ),
    }
    # with every match a PathPrefix, a prefix rewrite is fine
    ok = [{"type": "URLRewrite", "urlRewrite": {"path": filters[1]["urlRewrite"]["path"]}}]
    assert errors("MeshHTTPRoute", http_route(prefix_rule(filters=ok))) == {}


def test_backend_refs_kinds_weights_and_zone_pins() -> None:
    refs = [
        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"kuma.io/zone": "zone-2"}},
        {"kind": "MeshService", "labels": {"kuma.io/display-name": "backend"}, "weight": 0},
        {"kind": "Mesh"},
        {"kind": "MeshExternalService", "name": "httpbin"},
        {"kind": "MeshService", "name": "backend", "port": 8080, "weight": -1},
        {"kind": "MeshService", "name": "backend", "sectionName": "http"},
        {"kind": "MeshServiceSubset", "tags": {"version": "v2"}},
    ]
    at = "spec.to[0].rules[0].default.backendRefs"
    assert errors("MeshHTTPRoute", http_route(prefix_rule(backendRefs=refs))) == {
        f"{at}[2].kind": (
            "'Mesh' is not allowed here; must be one of MeshService, MeshServiceSubset"
        ),
        f"{at}[3].kind": (
            "MeshExternalService is not supported by meshfed here (only as the top-level "
            "targetRef of a MeshTrafficPermission, or in to[] of MeshTimeout, MeshRetry, "
            "MeshCircuitBreaker, MeshHealthCheck and MeshLoadBalancingStrategy); "
            "must be one of MeshService, MeshServiceSubset"
        ),
        f"{at}[4].weight": "must be an integer between 0 and 4294967295",
        f"{at}[5].sectionName": (
            "is not supported by meshfed here: a MeshService's named port can be selected "
            "only in the to[] targetRef of a policy other than a route"
        ),
        f"{at}[6].name": "is required",
    }


def test_route_destinations_are_services_and_hostnames_are_for_gateways() -> None:
    spec = {"to": [{"targetRef": {"kind": "Mesh"}, "hostnames": ["a.example"], "rules": []}]}
    assert errors("MeshHTTPRoute", spec) == {
        "spec.to[0].targetRef.kind": "'Mesh' is not allowed here; must be one of MeshService",
        "spec.to[0].hostnames": (
            "is not supported by meshfed: it applies to built-in gateways, and meshfed has none"
        ),
    }
    assert errors("MeshHTTPRoute", {"targetRef": FRONTEND}) == {
        "spec.to": "must have at least 1 item"
    }
    # one named port of a MeshService, and backends by a MeshService's port (decision 166)
    port = {**BACKEND, "sectionName": "http"}
    refs = [
        {**BACKEND, "port": 3001},
        {"kind": "MeshService", "labels": {"app": "b"}, "port": 3001},
        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"v": "1"}, "port": 3001},
    ]
    rule = prefix_rule(backendRefs=refs)
    spec = {"targetRef": FRONTEND, "to": [{"targetRef": port, "rules": [rule]}]}
    at = "spec.to[0].rules[0].default.backendRefs"
    assert errors("MeshHTTPRoute", spec) == {
        f"{at}[1].port": "needs name: a MeshService's port is found by the MeshService's name",
        f"{at}[2].port": (
            "is not supported by meshfed: only a MeshService's port is a backendRef's port "
            "(decision 166)"
        ),
    }


def test_tcp_route_has_one_rule_with_backends() -> None:
    rule = {"default": {"backendRefs": [BACKEND]}}
    one = {"to": [{"targetRef": BACKEND, "rules": [rule]}]}
    assert errors("MeshTCPRoute", one) == {}
    two = {"to": [{"targetRef": BACKEND, "rules": [rule, rule]}]}
    assert errors("MeshTCPRoute", two) == {"spec.to[0].rules": "must have at most 1 item"}
    empty = {"to": [{"targetRef": BACKEND, "rules": [{"default": {"backendRefs": []}}]}]}
    assert errors("MeshTCPRoute", empty) == {
        "spec.to[0].rules[0].default.backendRefs": "must have at least 1 item"
    }
    missing = {"to": [{"targetRef": BACKEND, "rules": [{"default": {}}]}]}
    assert errors("MeshTCPRoute", missing) == {
        "spec.to[0].rules[0].default.backendRefs": "is required"
    }
    unknown = {"to": [{"targetRef": BACKEND, "rules": [{"matches": [], **rule}]}]}
    assert errors("MeshTCPRoute", unknown) == {
        "spec.to[0].rules[0].matches": "unknown field (allowed: default)"
    }


def test_fault_values() -> None:
    faults = [
        {"abort": {"httpStatus": 600, "percentage": 101}},
        {"delay": {"value": "-5s", "percentage": "x"}},
        {"responseBandwidth": {"limit": "1000", "percentage": "50.5"}},
        {"abort": {"httpStatus": 99, "percentage": "0"}, "delay": {"value": "1s", "percentage": 0}},
    ]
    spec = {"targetRef": FRONTEND, "from": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}
    spec["from"][0]["default"] = {"http": faults}
    at = "spec.from[0].default.http"
    percent = 'must be an integer or a decimal string (e.g. "99.5") at least 0 and at most 100'
    assert errors("MeshFaultInjection", spec) == {
        f"{at}[0].abort.httpStatus": "must be an integer between 100 and 599",
        f"{at}[0].abort.percentage": percent,
        f"{at}[1].delay.value": "must not be negative",
        f"{at}[1].delay.percentage": percent,
        f"{at}[2].responseBandwidth.limit": 'must be in kbps/Mbps/Gbps units (e.g. "10kbps")',
        f"{at}[3].abort.httpStatus": "must be an integer between 100 and 599",
    }


def test_fault_and_rate_limit_sections_and_callers() -> None:
    default = {"http": []}
    callers = [
        {
            "targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "web"}},
            "default": default,
        },
        {"targetRef": {"kind": "MeshServiceSubset", "name": "web", "tags": {"v": "1"}}},
        {"targetRef": {"kind": "Dataplane", "name": "web-1"}, "default": default},
    ]
    assert errors("MeshFaultInjection", {"from": callers}) == {
        "spec.from[2].targetRef.kind": (
            "'Dataplane' is not allowed here; "
            "must be one of Mesh, MeshSubset, MeshService, MeshServiceSubset"
        )
    }
    both = {
        "from": [{"targetRef": {"kind": "Mesh"}, "default": default}],
        "rules": [{"default": default}],
        "to": [{"targetRef": {"kind": "Mesh"}, "default": default}],
    }
    gateways = "is not supported by meshfed: it applies to built-in gateways, and meshfed has none"
    assert errors("MeshFaultInjection", both) == {
        "spec.to": gateways,
        "spec": "'from' must be empty when 'rules' is defined",
    }
    limit = {"local": {"tcp": {"disabled": True}}}
    from_subset = {
        "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}}, "default": limit}]
    }
    assert errors("MeshRateLimit", from_subset) == {
        "spec.from[0].targetRef.kind": "'MeshSubset' is not allowed here; must be one of Mesh"
    }
    assert errors("MeshRateLimit", {"to": [{"targetRef": {"kind": "Mesh"}, "default": limit}]}) == {
        "spec.to": gateways,
        "spec": "at least one of 'from', 'rules' must be defined",
    }


def test_rate_limit_rates_and_answers() -> None:
    assert (
        errors("MeshRateLimit", local(http={"requestRate": {"num": 1, "interval": "51ms"}})) == {}
    )
    bad = local(
        http={
            "requestRate": {"num": 0, "interval": "50ms"},
            "onRateLimit": {"status": 0, "headers": {"set": [{"name": "X-A", "value": "1"}]}},
        },
        tcp={"connectionRate": {"num": 5, "interval": "10"}},
    )
    at = "spec.rules[0].default.local"
    assert errors("MeshRateLimit", bad) == {
        f"{at}.http.requestRate.num": "must be an integer between 1 and 4294967295",
        f"{at}.http.requestRate.interval": "must be greater than 50ms",
        f"{at}.http.onRateLimit.status": "must be an integer between 100 and 599",
        f"{at}.http.onRateLimit.headers.set[0].name": "must be a lower-case HTTP header name",
        f"{at}.tcp.connectionRate.interval": 'must be a duration such as "10s", "1m30s" or "500ms"',
    }
    assert errors("MeshRateLimit", local()) == {at: "at least one of 'http', 'tcp' must be set"}
    assert errors("MeshRateLimit", local(http={}, tcp={})) == {
        f"{at}.http": "at least one of 'disabled', 'requestRate', 'onRateLimit' must be set",
        f"{at}.tcp": "at least one of 'disabled', 'connectionRate' must be set",
    }
    no_local = {"rules": [{"default": {}}]}
    assert errors("MeshRateLimit", no_local) == {"spec.rules[0].default.local": "is required"}


def test_a_connection_rate_cannot_depend_on_the_caller() -> None:
    match = {"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}}
    spec = {"rules": [{"matches": [match], "default": {"local": {"tcp": {"disabled": False}}}}]}
    assert errors("MeshRateLimit", spec) == {
        "spec.rules[0].default.local.tcp": (
            "must not be set when matches name callers: "
            "a connection's rate cannot depend on the caller's identity"
        )
    }
    spec["rules"][0]["matches"] = [{"sni": {"type": "Exact", "value": "a.b"}}]
    reasons = errors("MeshRateLimit", spec)
    assert reasons["spec.rules[0].matches[0].spiffeID"] == "is required"
    assert reasons["spec.rules[0].matches[0].sni"].startswith("is not supported by meshfed")


def test_every_problem_of_a_route_comes_back_at_once_in_document_order() -> None:
    spec = {
        "targetRef": {"kind": "MeshGateway", "name": "edge"},
        "to": [
            {
                "targetRef": BACKEND,
                "rules": [
                    {
                        "matches": [{"path": {"type": "Exact", "value": "x"}}],
                        "default": {
                            "filters": [{"type": "RequestMirror"}],
                            "backendRefs": [{"kind": "MeshService"}],
                        },
                    }
                ],
            }
        ],
    }
    doc = {"type": "MeshHTTPRoute", "name": "p", "mesh": "default", "spec": spec}
    with pytest.raises(ValidationError) as info:
        resource_from_dict(doc, schema_registry())
    assert [e.field for e in info.value.errors] == [
        "spec.targetRef.kind",
        "spec.to[0].rules[0].matches[0].path.value",
        "spec.to[0].rules[0].default.filters[0].requestMirror",
        "spec.to[0].rules[0].default.backendRefs[0].name",
    ]
