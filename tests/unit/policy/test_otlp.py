"""meshfed/policy/otlp.py: the endpoint forms, Kuma's body as an AnyValue template, and the
gate's checks of OpenTelemetry backends (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest

from meshfed.policy.enforced import NOT_ENFORCED, unenforced_fields
from meshfed.policy.observability import FormatError, Op, tokens
from meshfed.policy.otlp import (
    Endpoint,
    EndpointError,
    body_template,
    body_text,
    parse_endpoint,
)
from meshfed.resources.model import Resource
from tests.unit.policy.factories import resource


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("otel-collector:4317", Endpoint("grpc", "otel-collector", 4317)),
        ("otel-collector", Endpoint("grpc", "otel-collector", 4317)),
        ("10.0.0.1:5555", Endpoint("grpc", "10.0.0.1", 5555)),
        ("[::1]:4317", Endpoint("grpc", "::1", 4317)),
        ("http://127.0.0.1:4318", Endpoint("http", "127.0.0.1", 4318)),
        ("http://c.example/otlp/", Endpoint("http", "c.example", 80, "/otlp")),
        ("https://c.example", Endpoint("https", "c.example", 443)),
    ],
)
def test_endpoint_forms(text: str, want: Endpoint) -> None:
    assert parse_endpoint(text) == want


def test_endpoint_urls() -> None:
    assert parse_endpoint("http://h:1/p").url("logs") == "http://h:1/p/v1/logs"
    assert parse_endpoint("[::1]:9").url("logs") == "[::1]:9"


@pytest.mark.parametrize(
    "text",
    [
        "grpc://h:4317",
        "ftp://h",
        "http://h:99999",
        "h:0",
        "bad host:1",
        "http://u@h",
        "http://h:4318/v1/traces",  # a prefix: /v1/traces would be doubled
    ],
)
def test_endpoints_the_sidecar_cannot_send_to(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def test_body_kvlist_with_placeholders_in_keys_and_values() -> None:
    body = {
        "kvlistValue": {
            "values": [
                {"key": "mesh", "value": {"stringValue": "%KUMA_MESH%"}},
                {"key": "n", "value": {"intValue": "7"}},
                {"key": "list", "value": {"arrayValue": {"values": [{"boolValue": True}]}}},
            ]
        }
    }
    kind, pairs = body_template(body_text(body), [])
    assert kind == "kvlist"
    assert pairs[0] == (["mesh"], ("string", [Op("KUMA_MESH")]))
    assert pairs[1] == (["n"], ("int", 7))
    assert pairs[2] == (["list"], ("array", [("bool", True)]))


def test_body_unset_is_the_default_format_and_a_bad_shape_is_its_text() -> None:
    default = tokens("%KUMA_MESH%")
    assert body_template("", default) == ("string", default)
    # Kuma's page indents `values` beside `kvlistValue`: not an AnyValue, so (as Kuma) the
    # JSON text itself, its placeholders filled in
    odd = {"kvlistValue": None, "values": [{"key": "mesh"}]}
    kind, parts = body_template(body_text(odd), default)
    assert kind == "string" and parts[0] == '{"kvlistValue":null,"values":[{"key":"mesh"}]}'
    assert body_template(body_text({"bytesValue": "aGVsbG8="}), default) == ("bytes", b"hello")
    assert body_template(body_text({"stringValue": 5}), default)[0] == "string"  # text


def test_an_unknown_operator_in_a_body_is_refused() -> None:
    with pytest.raises(FormatError):
        body_template(body_text({"stringValue": "%RESPONSE_FLAGS%"}), [])


def access_log(backend: dict[str, Any]) -> Resource:
    spec = {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"backends": [backend]}}],
    }
    return resource(
        {"type": "MeshAccessLog", "mesh": "default", "name": "l", "spec": spec}, enforced=False
    )


def test_gate_takes_an_otel_backend_and_names_what_it_cannot_do() -> None:
    good = {
        "type": "OpenTelemetry",
        "openTelemetry": {
            "endpoint": "otel-collector:4317",
            "body": {"stringValue": "%KUMA_SOURCE_SERVICE%"},
            "attributes": [{"key": "start", "value": "%START_TIME%"}],
        },
    }
    assert unenforced_fields(access_log(good)) == []
    bad = {
        "type": "OpenTelemetry",
        "openTelemetry": {
            "endpoint": "grpc://x:1",
            "body": {"stringValue": "%RESPONSE_FLAGS%"},
            "attributes": [{"key": "f", "value": "%UPSTREAM_CLUSTER%"}],
        },
    }
    at = "spec.from[0].default.backends[0].openTelemetry"
    named = {e.field: e.reason for e in unenforced_fields(access_log(bad))}
    assert set(named) == {f"{at}.endpoint", f"{at}.body", f"{at}.attributes[0].value"}
    assert all(NOT_ENFORCED in r for r in named.values())


def metric(default: dict[str, Any]) -> Resource:
    spec = {"targetRef": {"kind": "Mesh"}, "default": default}
    return resource(
        {"type": "MeshMetric", "mesh": "default", "name": "m", "spec": spec}, enforced=False
    )


def test_gate_on_meshmetric_fields() -> None:
    ok = {
        "sidecar": {"regex": "http2_act.*", "includeUnused": True},
        "backends": [
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "http://c:4318"}},
            {"type": "Prometheus", "prometheus": {"tls": {"mode": "ProvidedTLS"}}},
        ],
    }
    assert unenforced_fields(metric(ok)) == []
    bad = {
        "sidecar": {"regex": "(("},
        "backends": [
            {
                "type": "Prometheus",
                "prometheus": {"clientId": "a", "tls": {"mode": "ActiveMTLSBackend"}},
            },
            {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "ftp://c"}},
        ],
    }
    named = {e.field for e in unenforced_fields(metric(bad))}
    assert named == {
        "spec.default.sidecar.regex",
        "spec.default.backends[0].prometheus.tls.mode",
        "spec.default.backends[1].openTelemetry.endpoint",
    }


def test_gate_checks_a_mesh_trace_endpoint_as_the_others() -> None:
    def trace(endpoint: str) -> Resource:
        backend = {"type": "OpenTelemetry", "openTelemetry": {"endpoint": endpoint}}
        spec = {"targetRef": {"kind": "Mesh"}, "default": {"backends": [backend]}}
        return resource(
            {"type": "MeshTrace", "mesh": "default", "name": "t", "spec": spec}, enforced=False
        )

    assert unenforced_fields(trace("otel-collector:4317")) == []
    assert unenforced_fields(trace("http://c:4318/otlp")) == []
    (bad,) = unenforced_fields(trace("http://c:4318/v1/traces"))
    assert bad.field == "spec.default.backends[0].openTelemetry.endpoint"
    assert NOT_ENFORCED in bad.reason and "prefix" in bad.reason
