"""Counters of the sidecar's listeners, and their two views: JSON (`/stats` on the admin port,
read by tests and `meshctl inspect`) and Prometheus (`/metrics`).

Counters live as long as the process: a listener that a new config keeps (same address and
port) keeps counting into the same object, so totals never go back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mesh_dp.balancer import EndpointState
from mesh_dp.relay import ByteCounter
from meshfed.proxy.promtext import Family, counter, gauge


@dataclass
class InboundStats:
    service: str
    address: str
    port: int
    connections_total: int = 0  # accepted (TCP)
    active: int = 0  # relayed to the app right now
    bytes: ByteCounter = field(default_factory=ByteCounter)
    authorized: Counter[str] = field(default_factory=Counter)  # caller SPIFFE ID -> count
    denied: Counter[str] = field(default_factory=Counter)  # by MeshTrafficPermission
    shadow_denied: Counter[str] = field(default_factory=Counter)  # allowed, would be denied
    handshake_failures: int = 0  # no/untrusted client certificate, not TLS, timeout
    closed_early: int = 0  # the peer left before the handshake ended (TCP health checks)
    app_failures: int = 0  # the application did not accept the connection
    ready: bool = False  # the application answers a TCP connect (service probe)

    @property
    def rejected(self) -> int:
        return sum(self.denied.values()) + self.handshake_failures + self.app_failures

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "address": self.address,
            "port": self.port,
            "ready": self.ready,
            "connectionsTotal": self.connections_total,
            "active": self.active,
            "bytesReceived": self.bytes.received,
            "bytesSent": self.bytes.sent,
            "rejected": self.rejected,
            "authorized": dict(self.authorized),
            "denied": dict(self.denied),
            "shadowDenied": dict(self.shadow_denied),
            "handshakeFailures": self.handshake_failures,
            "closedEarly": self.closed_early,
            "appFailures": self.app_failures,
        }


@dataclass
class OutboundStats:
    service: str
    zone: str | None
    address: str
    port: int
    connections_total: int = 0  # accepted from the application
    active: int = 0  # open right now (connecting or relaying)
    bytes: ByteCounter = field(default_factory=ByteCounter)
    overflow: int = 0  # refused: maxConnections reached (MeshCircuitBreaker)
    no_endpoint: int = 0  # closed: every connect attempt failed, or no endpoint at all
    idle_closed: int = 0  # closed by idleTimeout (MeshTimeout)
    endpoints: Callable[[], Iterable[EndpointState]] = lambda: ()

    @property
    def rejected(self) -> int:
        return self.overflow + self.no_endpoint

    def to_json(self) -> dict[str, Any]:
        now = time.monotonic()  # the clock the balancer's ejections use
        return {
            "service": self.service,
            "zone": self.zone,
            "address": self.address,
            "port": self.port,
            "connectionsTotal": self.connections_total,
            "active": self.active,
            "bytesReceived": self.bytes.received,
            "bytesSent": self.bytes.sent,
            "overflow": self.overflow,
            "noEndpoint": self.no_endpoint,
            "idleClosed": self.idle_closed,
            "endpoints": [
                {
                    "address": s.endpoint.address,
                    "port": s.endpoint.port,
                    "zone": s.endpoint.zone,
                    "viaIngress": s.endpoint.via_ingress,
                    "weight": s.endpoint.weight,
                    "healthy": s.healthy,
                    "checks": s.checks,
                    "changedAfter": s.changed_after,
                    "ejectedFor": round(max(0.0, s.ejected_until - now), 3),
                    "active": s.active,
                    "attempts": s.attempts,
                    "failures": s.failures,
                    "connections": s.connections,
                }
                for s in self.endpoints()
            ],
        }


class SidecarCollector:
    """Prometheus view of the current listeners' stats (read at scrape time)."""

    def __init__(
        self,
        inbounds: Callable[[], Iterable[InboundStats]],
        outbounds: Callable[[], Iterable[OutboundStats]],
        config_version: Callable[[], str],
    ) -> None:
        self._inbounds = inbounds
        self._outbounds = outbounds
        self._version = config_version

    def collect(self) -> Iterator[Family]:
        yield from self._inbound_metrics()
        yield from self._outbound_metrics()
        info = gauge("meshfed_dp_config_info", "The config the sidecar runs (value 1)", ["version"])
        info.add([self._version()], 1)
        yield info

    def _inbound_metrics(self) -> Iterator[Family]:
        labels = ["service", "port"]
        conns = counter(
            "meshfed_dp_inbound_connections", "Connections accepted by an inbound", labels
        )
        active = gauge("meshfed_dp_inbound_active_connections", "Inbound connections open", labels)
        rx = counter("meshfed_dp_inbound_received_bytes", "Bytes from callers", labels)
        tx = counter("meshfed_dp_inbound_sent_bytes", "Bytes to callers", labels)
        ready = gauge(
            "meshfed_dp_inbound_ready", "1 when the application accepts connections", labels
        )
        rejected = counter(
            "meshfed_dp_inbound_rejected",
            "Inbound connections closed without reaching the application",
            labels=[*labels, "reason"],
        )
        callers = counter(
            "meshfed_dp_inbound_callers",
            "Connections by verified caller identity and MeshTrafficPermission verdict",
            labels=[*labels, "caller", "verdict"],
        )
        for s in self._inbounds():
            key = [s.service, str(s.port)]
            conns.add(key, s.connections_total)
            active.add(key, s.active)
            rx.add(key, s.bytes.received)
            tx.add(key, s.bytes.sent)
            ready.add(key, 1 if s.ready else 0)
            rejected.add([*key, "denied"], sum(s.denied.values()))
            rejected.add([*key, "handshake"], s.handshake_failures)
            rejected.add([*key, "app_unreachable"], s.app_failures)
            rejected.add([*key, "closed_early"], s.closed_early)
            for verdict, table in (
                ("allowed", s.authorized),
                ("denied", s.denied),
                ("shadow_denied", s.shadow_denied),
            ):
                for caller, n in table.items():
                    callers.add([*key, caller, verdict], n)
        yield from (conns, active, rx, tx, ready, rejected, callers)

    def _outbound_metrics(self) -> Iterator[Family]:
        labels = ["service", "address", "port"]
        conns = counter(
            "meshfed_dp_outbound_connections", "Connections accepted by an outbound", labels
        )
        active = gauge(
            "meshfed_dp_outbound_active_connections", "Outbound connections open", labels
        )
        rx = counter("meshfed_dp_outbound_received_bytes", "Bytes from the application", labels)
        tx = counter("meshfed_dp_outbound_sent_bytes", "Bytes to the application", labels)
        rejected = counter(
            "meshfed_dp_outbound_rejected",
            "Outbound connections closed without an upstream",
            labels=[*labels, "reason"],
        )
        ep_labels = [*labels, "endpoint"]
        attempts = counter(
            "meshfed_dp_upstream_connect_attempts",
            "Connect attempts per endpoint",
            labels=ep_labels,
        )
        failures = counter(
            "meshfed_dp_upstream_connect_failures", "Failed connects per endpoint", ep_labels
        )
        healthy = gauge("meshfed_dp_upstream_healthy", "1 unless health checks failed", ep_labels)
        for s in self._outbounds():
            key = [s.service, s.address, str(s.port)]
            conns.add(key, s.connections_total)
            active.add(key, s.active)
            rx.add(key, s.bytes.received)
            tx.add(key, s.bytes.sent)
            rejected.add([*key, "overflow"], s.overflow)
            rejected.add([*key, "no_endpoint"], s.no_endpoint)
            for e in s.endpoints():
                ep = [*key, e.label]
                attempts.add(ep, e.attempts)
                failures.add(ep, e.failures)
                healthy.add(ep, 1 if e.healthy else 0)
        yield from (conns, active, rx, tx, rejected, attempts, failures, healthy)
