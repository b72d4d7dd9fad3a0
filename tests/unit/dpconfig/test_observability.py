"""MeshAccessLog and MeshMetric resolved into the sidecar config (meshfed/dpconfig/
observability.py): which backends each inbound and outbound gets, and the merged metrics."""

from __future__ import annotations

from typing import Any

from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.observability import (
    AccessLog,
    App,
    LogFormat,
    MetricsEndpoint,
    MetricsPush,
    Selector,
)
from tests.unit.dpconfig.test_build import PLAIN_MESH, POLICIES, build
from tests.unit.policy.factories import MESH_REF, policy, svc, to


def _file(path: str, fmt: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"path": path}
    if fmt is not None:
        block["format"] = fmt
    return {"backends": [{"type": "File", "file": block}]}


def _build(*extra: Any) -> SidecarConfig:
    policies = dict(POLICIES)
    for p in extra:
        policies.setdefault(p.type, []).append(p)
    return build(None, policies=policies, mesh=PLAIN_MESH)


def test_outbound_logs_follow_to_entries_and_append_in_policy_order() -> None:
    mesh_wide = policy("MeshAccessLog", "all", MESH_REF, to=[to(MESH_REF, _file("/a.log"))])
    backend = policy(
        "MeshAccessLog",
        "backend",
        svc("web"),
        to=[
            to(
                svc("backend"),
                {
                    "backends": [
                        {
                            "type": "Tcp",
                            "tcp": {
                                "address": "127.0.0.1:5000",
                                "format": {
                                    "type": "Json",
                                    "json": [{"key": "s", "value": "%RESPONSE_CODE%"}],
                                    "omitEmptyValues": True,
                                },
                            },
                        },
                        {"type": "File", "file": {"path": "/a.log"}},
                    ]
                },
            )
        ],
    )
    config = _build(mesh_wide, backend)
    logs = {(o.service, o.zone): o.access_logs for o in config.outbounds}
    assert logs[("web", None)] == (AccessLog("file", "/a.log", source="MeshAccessLog/all"),)
    assert logs[("backend", None)] == (
        AccessLog("file", "/a.log", source="MeshAccessLog/all"),
        AccessLog(
            "tcp",
            "127.0.0.1:5000",
            LogFormat(json=(("s", "%RESPONSE_CODE%"),), omit_empty_values=True),
            source="MeshAccessLog/backend",
        ),
    )
    assert all(not i.access_logs for i in config.inbounds)


def test_inbound_logs_come_from_from_and_rules_of_policies_selecting_it() -> None:
    fmt = {"type": "Plain", "plain": "%KUMA_SOURCE_SERVICE%"}
    frm_policy = policy(
        "MeshAccessLog",
        "in",
        svc("web"),
        from_=[{"targetRef": MESH_REF, "default": _file("/in.log", fmt)}],
    )
    other = policy("MeshAccessLog", "other", svc("backend"), rules=[{"default": _file("/x")}])
    config = _build(frm_policy, other)
    (web,) = config.inbounds
    assert web.access_logs == (
        AccessLog("file", "/in.log", LogFormat(plain="%KUMA_SOURCE_SERVICE%"), "MeshAccessLog/in"),
    )
    assert all(not o.access_logs for o in config.outbounds)


def test_metrics_merge_the_selecting_policies_with_kuma_defaults() -> None:
    assert build(None, mesh=PLAIN_MESH).metrics is None
    base = policy(
        "MeshMetric",
        "base",
        MESH_REF,
        default={
            "backends": [{"type": "Prometheus", "prometheus": {}}],
            "sidecar": {"profiles": {"exclude": [{"type": "Prefix", "match": "process_"}]}},
        },
    )
    web = policy(
        "MeshMetric",
        "web",
        svc("web"),
        default={
            "applications": [{"port": 8888}],
            "sidecar": {"includeUnused": True, "profiles": {"appendProfiles": [{"name": "All"}]}},
        },
    )
    m = _build(base, web).metrics
    assert m is not None
    assert m.address == "127.0.1.10"
    assert m.endpoints == (MetricsEndpoint(5670, "/metrics"),)
    assert m.applications == (App(8888, "/metrics", "127.0.0.1"),)
    assert m.include_unused and m.profiles == ("All",)
    assert m.exclude == (Selector("Prefix", "process_"),)
    assert m.sources == ("MeshMetric/base", "MeshMetric/web")


def test_otel_access_log_backends_carry_body_and_attributes() -> None:
    otel = {
        "type": "OpenTelemetry",
        "openTelemetry": {
            "endpoint": "otel-collector:4317",
            "body": {"stringValue": "%KUMA_MESH%"},
            "attributes": [{"key": "dst", "value": "%KUMA_DESTINATION_SERVICE%"}],
        },
    }
    p = policy("MeshAccessLog", "otel", MESH_REF, to=[to(MESH_REF, {"backends": [otel, otel]})])
    logs = {log for o in _build(p).outbounds for log in o.access_logs}
    assert logs == {
        AccessLog(
            "otel",
            "otel-collector:4317",
            LogFormat(
                json=(("dst", "%KUMA_DESTINATION_SERVICE%"),), body='{"stringValue":"%KUMA_MESH%"}'
            ),
            "MeshAccessLog/otel",
        )
    }


def test_metrics_otel_pushes_tls_and_regex() -> None:
    p = policy(
        "MeshMetric",
        "m",
        MESH_REF,
        default={
            "sidecar": {"regex": "http_.*"},
            "backends": [
                {
                    "type": "Prometheus",
                    "prometheus": {"port": 5671, "tls": {"mode": "ProvidedTLS"}},
                },
                {"type": "OpenTelemetry", "openTelemetry": {"endpoint": "c:4317"}},
                {
                    "type": "OpenTelemetry",
                    "openTelemetry": {"endpoint": "http://c:4318", "refreshInterval": "250ms"},
                },
            ],
        },
    )
    m = _build(p).metrics
    assert m is not None
    assert m.endpoints == (MetricsEndpoint(5671, "/metrics", tls=True),)
    assert m.pushes == (MetricsPush("c:4317", 60.0), MetricsPush("http://c:4318", 0.25))
    assert m.regex == "http_.*"
