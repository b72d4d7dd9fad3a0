"""MeshTrace resolved into the sidecar config (meshfed/dpconfig/tracing.py): the most
specific policy wins field by field, one backend, Kuma's defaults."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.tracing import TraceTag, Tracing
from meshfed.policy.otlp import parse_endpoint
from tests.unit.dpconfig.test_build import PLAIN_MESH, POLICIES, build
from tests.unit.policy.factories import MESH_REF, policy, svc


def _build(*extra: Any) -> SidecarConfig:
    policies = dict(POLICIES)
    for p in extra:
        policies.setdefault(p.type, []).append(p)
    return build(None, policies=policies, mesh=PLAIN_MESH)


def _zipkin(url: str, **more: Any) -> dict[str, Any]:
    return {"backends": [{"type": "Zipkin", "zipkin": {"url": url, **more}}]}


def test_no_meshtrace_no_tracing() -> None:
    assert _build().tracing is None
    other = policy("MeshTrace", "other", svc("backend"), default=_zipkin("http://z:9411/s"))
    assert _build(other).tracing is None  # selects another service's dataplanes


def test_the_most_specific_policy_wins_field_by_field() -> None:
    mesh_wide = policy(
        "MeshTrace",
        "all",
        MESH_REF,
        default={
            **_zipkin("http://z:9411/api/v2/spans", sharedSpanContext=False),
            "sampling": {"overall": 10, "client": "40.5"},
            "tags": [{"name": "team", "literal": "core"}],
        },
    )
    web = policy(
        "MeshTrace",
        "web",
        svc("web"),
        default={
            "sampling": {"overall": 50},
            "tags": [{"name": "env", "header": {"name": "X-Env", "default": "prod"}}],
        },
    )
    t = _build(mesh_wide, web).tracing
    assert t == Tracing(
        "zipkin",
        "http://z:9411/api/v2/spans",
        "web",
        shared_span_context=False,
        overall=50.0,
        client=40.5,
        random=100.0,
        tags=(TraceTag("env", header="x-env", default="prod"),),
        sources=("MeshTrace/all", "MeshTrace/web"),
    )
    datadog = policy(
        "MeshTrace",
        "dd",
        svc("web"),
        default={"backends": [{"type": "Datadog", "datadog": {"url": "http://a:8126"}}]},
    )
    t = _build(mesh_wide, datadog).tracing
    assert t is not None and (t.kind, t.url, t.overall) == ("datadog", "http://a:8126", 10.0)


def test_kuma_defaults_and_the_opentelemetry_endpoint_forms() -> None:
    t = _build(policy("MeshTrace", "z", MESH_REF, default=_zipkin("http://z/s"))).tracing
    assert t is not None
    assert (t.shared_span_context, t.trace_id128bit, t.overall, t.client, t.random) == (
        True,
        False,
        100.0,
        100.0,
        100.0,
    )
    # the endpoint's rules are the access logs' and metrics' (decision 142)
    assert parse_endpoint("otel:4317").url("traces") == "otel:4317"  # OTLP/gRPC
    assert parse_endpoint("http://otel:4318").url("traces") == "http://otel:4318/v1/traces"
    assert parse_endpoint("https://o:4318/p").url("traces") == "https://o:4318/p/v1/traces"
