"""Kuma's full policy shapes parse (the model declares every field of Kuma's docs), and the
descriptor still refuses what the sidecar does not enforce: declaring is not accepting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from meshfed.resources.errors import ValidationError
from meshfed.resources.models.base import check, parse
from meshfed.resources.models.load_balancing import LoadBalancingConf
from meshfed.resources.models.policies import (
    CircuitBreakerConf,
    HealthCheckConf,
    MeshRetrySpec,
    RetryConf,
    TimeoutConf,
)
from meshfed.resources.types import default_registry

MESH = {"kind": "Mesh"}

FULL_CONFS: list[tuple[type[Any], dict[str, Any]]] = [
    (
        TimeoutConf,
        {
            "connectionTimeout": "2s",
            "idleTimeout": "20s",
            "http": {
                "requestTimeout": "2s",
                "streamIdleTimeout": "1h",
                "maxStreamDuration": "0s",
                "maxConnectionDuration": "0s",
                "requestHeadersTimeout": "500ms",
            },
        },
    ),
    (
        RetryConf,
        {
            "tcp": {"maxConnectAttempt": 3},
            "http": {
                "numRetries": 5,
                "perTryTimeout": "16s",
                "backOff": {"baseInterval": "15s", "maxInterval": "20m"},
                "retryOn": ["5xx", "Reset", "503"],
                "retriableResponseHeaders": [{"name": "x-retry", "type": "Exact", "value": "1"}],
                "rateLimitedBackOff": {
                    "resetHeaders": [{"name": "retry-after", "format": "Seconds"}],
                    "maxInterval": "30s",
                },
            },
            "grpc": {"numRetries": 2, "retryOn": ["Unavailable", "Canceled"]},
        },
    ),
    (
        HealthCheckConf,
        {
            "interval": "10s",
            "timeout": "2s",
            "unhealthyThreshold": 3,
            "healthyThreshold": 1,
            "http": {"path": "/health", "expectedStatuses": [200, 201]},
            "grpc": {"serviceName": "svc", "authority": "a"},
        },
    ),
    (
        CircuitBreakerConf,
        {
            "connectionLimits": {
                "maxConnections": 2,
                "maxPendingRequests": 8,
                "maxRequests": 2,
                "maxRetries": 2,
                "maxConnectionPools": 1,
            },
            "outlierDetection": {
                "disabled": False,
                "interval": "5s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 20,
                "splitExternalAndLocalErrors": True,
                "detectors": {
                    "totalFailures": {"consecutive": 10},
                    "gatewayFailures": {"consecutive": 10},
                    "localOriginFailures": {"consecutive": 10},
                    "successRate": {
                        "minimumHosts": 5,
                        "requestVolume": 10,
                        "standardDeviationFactor": "1.9",
                    },
                    "failurePercentage": {"requestVolume": 10, "minimumHosts": 5, "threshold": 85},
                },
            },
        },
    ),
    (
        LoadBalancingConf,
        {
            "localityAwareness": {
                "disabled": False,
                "localZone": {"affinityTags": [{"key": "k8s.io/node", "weight": 9}]},
                "crossZone": {
                    "failover": [
                        {"from": {"zones": ["zone-1"]}, "to": {"type": "Only", "zones": ["z2"]}},
                        {"to": {"type": "Any"}},
                    ],
                    "failoverThreshold": {"percentage": 70},
                },
            },
            "loadBalancer": {
                "type": "RingHash",
                "ringHash": {
                    "hashFunction": "MurmurHash2",
                    "minRingSize": 64,
                    "maxRingSize": 1024,
                    "hashPolicies": [
                        {"type": "Header", "header": {"name": "x-user"}},
                        {"type": "Cookie", "cookie": {"name": "c", "ttl": "1h", "path": "/"}},
                        {"type": "Connection", "connection": {"sourceIP": True}},
                        {"type": "QueryParameter", "queryParameter": {"name": "q"}},
                        {"type": "FilterState", "filterState": {"key": "k"}},
                    ],
                },
            },
        },
    ),
]


@pytest.mark.parametrize(("model", "conf"), FULL_CONFS, ids=lambda v: getattr(v, "__name__", ""))
def test_kumas_full_confs_parse(model: type[Any], conf: dict[str, Any]) -> None:
    assert check(model, conf, "default") == []


def test_typed_reads_with_kuma_defaults() -> None:
    timeout = parse(TimeoutConf, {"idleTimeout": "0s"})
    assert (timeout.connection_timeout, timeout.idle_timeout) == (timedelta(seconds=5), timedelta())
    assert parse(RetryConf, {"grpc": {"numRetries": 1}}).max_connect_attempt == 5
    hc = parse(HealthCheckConf, {"tcp": {}})
    assert (hc.interval, hc.timeout, hc.unhealthy_threshold, hc.healthy_threshold) == (
        timedelta(minutes=1),
        timedelta(seconds=15),
        5,
        1,
    )
    assert parse(CircuitBreakerConf, {"outlierDetection": {}}).max_connections == 1024
    lb = parse(LoadBalancingConf, {"loadBalancer": {"type": "LeastRequest"}})
    assert (lb.algorithm, lb.least_request_choices, lb.locality_aware) == ("LeastRequest", 2, True)


def test_declared_is_not_accepted_the_gate_still_refuses() -> None:
    desc = default_registry().get("MeshRetry")
    body = {"to": [{"targetRef": MESH, "default": {"grpc": {"numRetries": 2}}}]}
    assert [(e.field, e.reason.split(" (")[0]) for e in desc.validate(body, "spec")] == [
        ("spec.to[0].default.grpc", "is not enforced by meshfed's sidecar")
    ]


def test_meshservice_is_selected_by_name_or_by_labels() -> None:
    def body(ref: dict[str, object]) -> dict[str, object]:
        return {"to": [{"targetRef": ref, "default": {"tcp": {"maxConnectAttempt": 2}}}]}

    parse(MeshRetrySpec, body({"kind": "MeshService", "labels": {"app": "x"}}), "spec")
    parse(MeshRetrySpec, body({"kind": "MeshService", "name": "x"}), "spec")
    with pytest.raises(ValidationError) as info:
        parse(MeshRetrySpec, body({"kind": "MeshService"}), "spec")
    assert [(e.field, e.reason) for e in info.value.errors] == [
        ("spec.to[0].targetRef.name", "is required")
    ]
    with pytest.raises(ValidationError) as info:
        parse(MeshRetrySpec, body({"kind": "MeshService", "name": "x", "labels": {}}), "spec")
    assert [(e.field, e.reason) for e in info.value.errors] == [
        ("spec.to[0].targetRef.labels", "either labels or name must be specified")
    ]
