"""Prometheus view of the ingress: per-service connections and bytes, refusals by reason."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zone_ingress.server import IngressServer

# Every refusal reason is always exported (at 0 until it happens), so alerts need no
# "absent()" special case.
REASONS = (
    "timeout",
    "closed",
    "not_tls",
    "not_client_hello",
    "malformed",
    "too_large",
    "no_sni",
    "unknown_sni",
    "no_endpoint",
    "no_config",
)


class IngressCollector(Collector):
    def __init__(self, server: IngressServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        labels = ["mesh", "service"]
        conns = CounterMetricFamily(
            "meshfed_ingress_connections", "Connections routed to a service", labels=labels
        )
        active = GaugeMetricFamily(
            "meshfed_ingress_active_connections", "Routed connections open", labels=labels
        )
        to_service = CounterMetricFamily(
            "meshfed_ingress_sent_bytes", "Bytes from callers to the service", labels=labels
        )
        from_service = CounterMetricFamily(
            "meshfed_ingress_received_bytes", "Bytes from the service to callers", labels=labels
        )
        failures = CounterMetricFamily(
            "meshfed_ingress_upstream_connect_failures",
            "Failed connects to the service's instances",
            labels=labels,
        )
        for s in self._server.services.values():
            key = [s.mesh, s.service]
            conns.add_metric(key, s.connections_total)
            active.add_metric(key, s.active)
            to_service.add_metric(key, s.bytes_in())
            from_service.add_metric(key, s.bytes_out())
            failures.add_metric(key, s.connect_failures)
        rejected = CounterMetricFamily(
            "meshfed_ingress_rejected",
            "Connections closed without being routed, by reason",
            labels=["reason"],
        )
        seen = dict.fromkeys(REASONS, 0) | self._server.rejected
        for reason, n in sorted(seen.items()):
            rejected.add_metric([reason], n)
        accepted = CounterMetricFamily("meshfed_ingress_accepted", "Connections accepted")
        accepted.add_metric([], self._server.accepted)
        info = GaugeMetricFamily(
            "meshfed_ingress_config_info",
            "The config the ingress runs (value 1)",
            labels=["version"],
        )
        info.add_metric([self._server.version], 1)
        yield from (conns, active, to_service, from_service, failures, rejected, accepted, info)
