"""From matched policies to the `OutboundPolicies` a sidecar enforces for one outbound.

What each enforced field means (the set itself is in meshfed/policy/enforced.py):

- MeshTimeout `connectionTimeout`: how long a connect to one endpoint (TCP and the TLS
  handshake) may take; `idleTimeout`: close a proxied connection after this long with no
  bytes in either direction (`0s`: never).
- MeshRetry `tcp.maxConnectAttempt`: how many endpoints to try for one accepted connection
  before giving up (a refused or timed-out connect moves on to the next choice).
- MeshHealthCheck: TCP connect checks of each endpoint every `interval` (each may take
  `timeout`); `unhealthyThreshold` failures in a row take an endpoint out of the choices,
  `healthyThreshold` successes bring it back; `tcp.disabled: true` turns checks off.
  Kuma's defaults fill what the merged conf leaves out (1m, 15s, 5, 1).
- MeshCircuitBreaker `connectionLimits.maxConnections`: connections open at once through
  this outbound; more are refused at accept.
- MeshLoadBalancingStrategy `loadBalancer.type`: RoundRobin, Random, or LeastRequest
  (sample `leastRequest.choiceCount` endpoints, take the one with fewest active
  connections); `localityAwareness.disabled: true`: all zones are equal, by weight.

Fields outside that set are ignored here; the API refuses them once enforcement is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meshfed.dpconfig.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LEAST_REQUEST_CHOICES,
    DEFAULT_MAX_CONNECT_ATTEMPTS,
    DEFAULT_MAX_CONNECTIONS,
    HealthCheck,
    LbAlgorithm,
    OutboundPolicies,
)
from meshfed.policy.rules import Matched, outbound_conf
from meshfed.resources.schema import parse_duration
from meshfed.resources.types.common import dig

MESH_TIMEOUT = "MeshTimeout"
MESH_RETRY = "MeshRetry"
MESH_HEALTH_CHECK = "MeshHealthCheck"
MESH_CIRCUIT_BREAKER = "MeshCircuitBreaker"
MESH_LOAD_BALANCING_STRATEGY = "MeshLoadBalancingStrategy"
OUTBOUND_TYPES = (
    MESH_TIMEOUT,
    MESH_RETRY,
    MESH_HEALTH_CHECK,
    MESH_CIRCUIT_BREAKER,
    MESH_LOAD_BALANCING_STRATEGY,
)

# Kuma's MeshHealthCheck defaults.
HC_INTERVAL = 60.0
HC_TIMEOUT = 15.0
HC_UNHEALTHY_THRESHOLD = 5
HC_HEALTHY_THRESHOLD = 1


def _seconds(value: Any, default: float) -> float:
    ns = parse_duration(value) if isinstance(value, str) else None
    return default if ns is None or ns < 0 else ns / 1e9


def _count(value: Any, default: int, lo: int = 1) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= lo else default
    )


def _health_check(conf: dict[str, Any]) -> HealthCheck | None:
    if not conf or dig(conf, "tcp", "disabled") is True:
        return None
    return HealthCheck(
        interval=_seconds(conf.get("interval"), HC_INTERVAL) or HC_INTERVAL,
        timeout=_seconds(conf.get("timeout"), HC_TIMEOUT) or HC_TIMEOUT,
        unhealthy_threshold=_count(conf.get("unhealthyThreshold"), HC_UNHEALTHY_THRESHOLD),
        healthy_threshold=_count(conf.get("healthyThreshold"), HC_HEALTHY_THRESHOLD),
    )


def _load_balancer(value: Any) -> LbAlgorithm:
    try:
        return LbAlgorithm(value)
    except ValueError:
        return LbAlgorithm.ROUND_ROBIN  # unenforced algorithms (RingHash, Maglev) fall back


def outbound_policies(matched: Mapping[str, Sequence[Matched]], service: str) -> OutboundPolicies:
    """The enforced settings for the outbound to `service`, from the policies of each type
    already matched to the dataplane (rules.match), keyed by type name."""
    merged = {t: outbound_conf(matched.get(t, ()), service) for t in OUTBOUND_TYPES}
    timeout = merged[MESH_TIMEOUT].conf
    lb = merged[MESH_LOAD_BALANCING_STRATEGY].conf
    sources: list[str] = []
    for t in OUTBOUND_TYPES:
        sources += [s for s in merged[t].sources if s not in sources]
    return OutboundPolicies(
        connect_timeout=_seconds(timeout.get("connectionTimeout"), DEFAULT_CONNECT_TIMEOUT)
        or DEFAULT_CONNECT_TIMEOUT,
        idle_timeout=_seconds(timeout.get("idleTimeout"), DEFAULT_IDLE_TIMEOUT),
        max_connect_attempts=_count(
            dig(merged[MESH_RETRY].conf, "tcp", "maxConnectAttempt"), DEFAULT_MAX_CONNECT_ATTEMPTS
        ),
        health_check=_health_check(merged[MESH_HEALTH_CHECK].conf),
        max_connections=_count(
            dig(merged[MESH_CIRCUIT_BREAKER].conf, "connectionLimits", "maxConnections"),
            DEFAULT_MAX_CONNECTIONS,
        ),
        load_balancer=_load_balancer(dig(lb, "loadBalancer", "type")),
        least_request_choices=_count(
            dig(lb, "loadBalancer", "leastRequest", "choiceCount"),
            DEFAULT_LEAST_REQUEST_CHOICES,
            lo=2,
        ),
        locality_aware=dig(lb, "localityAwareness", "disabled") is not True,
        sources=tuple(sources),
    )
