"""MeshHealthCheck http and MeshCircuitBreaker limits / outlierDetection as the sidecar gets
them (meshfed/dpconfig/policies.py)."""

from __future__ import annotations

from meshfed.dpconfig.model import (
    FailurePercentage,
    HttpCheck,
    OutboundPolicies,
    Outlier,
    SuccessRate,
)
from meshfed.dpconfig.policies import outbound_policies
from tests.unit.dpconfig.test_policies import matched, one

HC = "MeshHealthCheck"
CB = "MeshCircuitBreaker"


def test_http_check_with_kumas_defaults_and_the_tcp_fallback() -> None:
    p = outbound_policies(matched(one(HC, {"interval": "1s", "http": {}})), "backend")
    assert p.health_check is not None and p.health_check.http == HttpCheck()
    assert p.health_check.tcp  # a tcp outbound is still checked by a connect
    full = {
        "http": {
            "path": "/health",
            "expectedStatuses": [200, 201],
            "requestHeadersToAdd": {
                "set": [{"name": "a", "value": "1"}],
                "add": [{"name": "b", "value": "2"}],
            },
        },
        "tcp": {"disabled": True},
    }
    hc = outbound_policies(matched(one(HC, full)), "backend").health_check
    assert hc is not None and not hc.tcp
    assert hc.http == HttpCheck("/health", (200, 201), (("a", "1"),), (("b", "2"),))
    # Kuma's "protocol fallback": http disabled, tcp on
    fallback = {"tcp": {}, "http": {"disabled": True}}
    hc = outbound_policies(matched(one(HC, fallback)), "backend").health_check
    assert hc is not None and hc.tcp and hc.http is None
    off = {"tcp": {"disabled": True}, "http": {"disabled": True}}
    assert outbound_policies(matched(one(HC, off)), "backend").health_check is None


def test_connection_limits_reach_the_outbound_and_default_as_envoy() -> None:
    limits = {
        "maxConnections": 2,
        "maxPendingRequests": 8,
        "maxRequests": 3,
        "maxRetries": 4,
        "maxConnectionPools": 5,
    }
    p = outbound_policies(matched(one(CB, {"connectionLimits": limits})), "backend")
    got = (p.max_connections, p.max_pending_requests, p.max_requests, p.max_retries)
    assert (*got, p.max_connection_pools) == (2, 8, 3, 4, 5)
    d = OutboundPolicies()
    assert (d.max_pending_requests, d.max_requests, d.max_retries) == (1024, 1024, 3)
    assert d.outlier is None


def test_outlier_detection_fields_and_defaults() -> None:
    conf = {
        "outlierDetection": {
            "interval": "5s",
            "baseEjectionTime": "1m",
            "maxEjectionPercent": 20,
            "splitExternalAndLocalErrors": True,
            "detectors": {
                "totalFailures": {"consecutive": 7},
                "gatewayFailures": {},
                "successRate": {"minimumHosts": 3, "standardDeviationFactor": "1.5"},
                "failurePercentage": {"threshold": 60},
            },
        }
    }
    p = outbound_policies(matched(one(CB, conf)), "backend")
    assert p.outlier == Outlier(
        interval=5.0,
        base_ejection_time=60.0,
        max_ejection_percent=20,
        split_external_and_local_errors=True,
        total_failures=7,
        gateway_failures=5,  # Envoy's default streak
        success_rate=SuccessRate(minimum_hosts=3, standard_deviation_factor=1.5),
        failure_percentage=FailurePercentage(threshold=60),
    )
    disabled = {"outlierDetection": {"disabled": True, "detectors": {"totalFailures": {}}}}
    assert outbound_policies(matched(one(CB, disabled)), "backend").outlier is None
