"""MeshTimeout http and MeshRetry http into an outbound's settings, Kuma's defaults filling
what a policy leaves out."""

from __future__ import annotations

from meshfed.dpconfig.model import HttpRetry, OutboundPolicies
from meshfed.dpconfig.policies import outbound_policies
from tests.unit.dpconfig.test_policies import matched, one


def test_no_policy_means_kumas_default_policies() -> None:
    got = outbound_policies({}, "backend")
    assert (got.request_timeout, got.stream_idle_timeout) == (15.0, 1800.0)
    assert (got.max_stream_duration, got.max_connection_duration) == (0.0, 0.0)
    assert got.request_headers_timeout == 0.0
    assert got.http_retry == HttpRetry(
        num_retries=5,
        per_try_timeout=16.0,
        base_interval=0.025,
        max_interval=0.25,
        retry_on=("GatewayError", "ConnectFailure", "RefusedStream"),
    )


def test_http_timeouts_reach_the_outbound() -> None:
    http = {
        "requestTimeout": "2s",
        "streamIdleTimeout": "1m",
        "maxStreamDuration": "10m",
        "maxConnectionDuration": "1h",
        "requestHeadersTimeout": "500ms",
    }
    got = outbound_policies(matched(one("MeshTimeout", {"http": http})), "backend")
    assert (got.request_timeout, got.stream_idle_timeout, got.max_stream_duration) == (
        2.0,
        60.0,
        600.0,
    )
    assert (got.max_connection_duration, got.request_headers_timeout) == (3600.0, 0.5)
    assert got.connect_timeout == OutboundPolicies().connect_timeout
    zero = outbound_policies(
        matched(one("MeshTimeout", {"http": {"requestTimeout": "0s"}})), "backend"
    )
    assert (zero.request_timeout, zero.stream_idle_timeout) == (0.0, 1800.0)


def test_http_retry_fields_and_their_defaults() -> None:
    conf = {
        "http": {
            "numRetries": 3,
            "perTryTimeout": "1s",
            "backOff": {"baseInterval": "100ms"},
            "retryOn": ["5xx", "409"],
        }
    }
    got = outbound_policies(matched(one("MeshRetry", conf)), "backend").http_retry
    assert got == HttpRetry(3, 1.0, 0.1, 1.0, ("5xx", "409"))  # maxInterval: 10 x base
    only_tcp = outbound_policies(
        matched(one("MeshRetry", {"tcp": {"maxConnectAttempt": 2}})), "backend"
    )
    assert only_tcp.http_retry == HttpRetry() and only_tcp.max_connect_attempts == 2
    off = outbound_policies(matched(one("MeshRetry", {"http": {"numRetries": 0}})), "backend")
    assert off.http_retry.num_retries == 0
