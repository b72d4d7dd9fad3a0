"""Counters of the sidecar's listeners, and their two views: JSON (`/stats` on the admin port,
read by tests and `meshctl inspect`) and Prometheus (`/metrics`).

Counters live as long as the process: a listener that a new config keeps (same address and
port) keeps counting into the same object, so totals never go back.
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mesh_dp.balancer import EndpointState
from mesh_dp.http.accesslog import Record
from mesh_dp.relay import ByteCounter
from mesh_dp.tlsconf import TlsContexts
from meshfed.proxy.promtext import Family, counter, gauge, histogram

# Request latency buckets, seconds (Prometheus' defaults plus 1 ms and 2.5 ms).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass
class HttpStats:
    """Per-request counters of an HTTP listener (outbound: per upstream service)."""

    statuses: Counter[str] = field(default_factory=Counter)  # "2xx"...; "none": no response
    errors: Counter[str] = field(default_factory=Counter)  # x-meshfed-error kind -> count
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    retries: int = 0  # another endpoint or a fresh connection after a failed attempt
    timeouts: int = 0  # no upstream byte within the timeout (504 or a cut response)
    ejections: int = 0  # endpoints ejected: a failed connect, or outlier detection

    def observe(self, record: Record) -> None:
        status = record.status
        if 0 <= status < 600:
            self.statuses[_CLASSES[status // 100] if status else "none"] += 1
        else:
            self.statuses[f"{status // 100}xx"] += 1
        if record.error:
            self.errors[record.error] += 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, record.duration)] += 1
        self.latency_sum += record.duration

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": sum(self.statuses.values()),
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
            "retries": self.retries,
            "timeouts": self.timeouts,
            "ejections": self.ejections,
        }


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
    http: HttpStats = field(default_factory=HttpStats)  # counts only on an `http` inbound

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
            "http": self.http.to_json(),
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
    http: HttpStats = field(default_factory=HttpStats)  # counts only on an `http` outbound

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
            "http": self.http.to_json(),
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
                    "outlierEjectedFor": round(max(0.0, s.outlier_until - now), 3),
                    "active": s.active,
                    "attempts": s.attempts,
                    "failures": s.failures,
                    "connections": s.connections,
                    "requests": s.requests,
                    "serverErrors": s.server_errors,
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
        yield from self._http_metrics()
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

    def _http_metrics(self) -> Iterator[Family]:
        """Per-request families, one series per HTTP listener that served a request."""
        labels = ["direction", "service", "address", "port"]
        requests = counter(
            "meshfed_dp_http_requests",
            "HTTP requests by response status class (none: no response was sent)",
            [*labels, "status_class"],
        )
        latency = histogram(
            "meshfed_dp_http_request_duration_seconds",
            "HTTP request duration, from its head to the end of its response",
            labels,
        )
        errors = counter(
            "meshfed_dp_http_sidecar_responses",
            "Responses the sidecar wrote itself, by x-meshfed-error kind",
            [*labels, "kind"],
        )
        retries = counter(
            "meshfed_dp_http_retries", "Requests sent again after a failed attempt", labels
        )
        timeouts = counter(
            "meshfed_dp_http_timeouts", "Requests the upstream did not answer in time", labels
        )
        ejections = counter(
            "meshfed_dp_http_ejections",
            "Endpoints ejected (failed connect, outlier)",
            labels,
        )
        series: list[tuple[list[str], HttpStats]] = [
            (["inbound", s.service, s.address, str(s.port)], s.http) for s in self._inbounds()
        ]
        series += [
            (["outbound", s.service, s.address, str(s.port)], s.http) for s in self._outbounds()
        ]
        for key, h in series:
            if not h.statuses:
                continue  # not an HTTP listener, or no request yet
            for status_class, n in sorted(h.statuses.items()):
                requests.add([*key, status_class], n)
            latency.observed(key, LATENCY_BUCKETS, h.buckets, h.latency_sum)
            for kind, n in sorted(h.errors.items()):
                errors.add([*key, kind], n)
            retries.add(key, h.retries)
            timeouts.add(key, h.timeouts)
            ejections.add(key, h.ejections)
        yield from (requests, latency, errors, retries, timeouts, ejections)


class CertificateCollector:
    """When the sidecar's leaf certificate expires, as Prometheus has it: seconds since the
    epoch (alert on `... - time() < 3600`). No series before a certificate is loaded."""

    def __init__(self, contexts: Callable[[], TlsContexts | None]) -> None:
        self._contexts = contexts

    def collect(self) -> Iterator[Family]:
        expiry = gauge(
            "meshfed_dp_certificate_expiry_timestamp_seconds",
            "notAfter of the leaf certificate in use, seconds since the epoch",
            ["identity"],
        )
        contexts = self._contexts()
        if contexts is not None:
            try:
                not_after = dt.datetime.fromisoformat(contexts.not_after)
            except ValueError:  # the config's expiresAt is not RFC 3339: nothing to report
                pass
            else:
                if not_after.tzinfo is None:
                    not_after = not_after.replace(tzinfo=dt.UTC)  # RFC 3339 without offset
                expiry.add([contexts.identity], not_after.timestamp())
        yield expiry
