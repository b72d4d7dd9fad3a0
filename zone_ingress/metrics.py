"""Prometheus view of the ingress: per-service connections and bytes, refusals by reason."""

from __future__ import annotations

from collections.abc import Iterator

from meshfed.proxy.promtext import Family, counter, gauge
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


class IngressCollector:
    def __init__(self, server: IngressServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Family]:
        labels = ["mesh", "service"]
        conns = counter("meshfed_ingress_connections", "Connections routed to a service", labels)
        active = gauge("meshfed_ingress_active_connections", "Routed connections open", labels)
        to_service = counter(
            "meshfed_ingress_sent_bytes", "Bytes from callers to the service", labels
        )
        from_service = counter(
            "meshfed_ingress_received_bytes", "Bytes from the service to callers", labels
        )
        failures = counter(
            "meshfed_ingress_upstream_connect_failures",
            "Failed connects to the service's instances",
            labels=labels,
        )
        for s in self._server.services.values():
            key = [s.mesh, s.service]
            conns.add(key, s.connections_total)
            active.add(key, s.active)
            to_service.add(key, s.bytes_in())
            from_service.add(key, s.bytes_out())
            failures.add(key, s.connect_failures)
        rejected = counter(
            "meshfed_ingress_rejected",
            "Connections closed without being routed, by reason",
            labels=["reason"],
        )
        seen = dict.fromkeys(REASONS, 0) | self._server.rejected
        for reason, n in sorted(seen.items()):
            rejected.add([reason], n)
        accepted = counter("meshfed_ingress_accepted", "Connections accepted")
        accepted.add([], self._server.accepted)
        info = gauge(
            "meshfed_ingress_config_info",
            "The config the ingress runs (value 1)",
            labels=["version"],
        )
        info.add([self._server.version], 1)
        yield from (conns, active, to_service, from_service, failures, rejected, accepted, info)
