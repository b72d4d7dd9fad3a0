"""zone-ingress's composition root: the server, its admin endpoint, and where its routing
table comes from (the zone control plane's config stream, or a static file)."""

from __future__ import annotations

from typing import Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.model import IngressConfig
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_ingress_config
from meshfed.process import install_signals
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.static_config import StaticConfig
from meshfed.proxy.zone_proxy import ZoneProxy, announced, check_source
from zone_ingress.metrics import IngressCollector
from zone_ingress.server import IngressServer
from zone_ingress.settings import IngressSettings

PROXY_VERSION = "meshfed-zone-ingress/0.1.0"


def parse_static(data: bytes) -> IngressConfig:
    config = IngressConfig.from_json(data)
    return config if config.version else config.stamped()


def ingress_resource(settings: IngressSettings, port: int) -> dict[str, Any]:
    """The ZoneIngress announced in the Hello (zone-cp sets `zone` and availableServices)."""
    networking: dict[str, Any] = {"address": settings.address, "port": port}
    if settings.advertised_address or settings.advertised_port:
        networking["advertisedAddress"] = settings.advertised_address or settings.address
        networking["advertisedPort"] = settings.advertised_port or port
    return announced({"type": "ZoneIngress", "name": settings.name, "networking": networking})


class App(ZoneProxy[IngressConfig]):
    settings: IngressSettings
    server: IngressServer

    def __init__(self, settings: IngressSettings) -> None:
        check_source(settings, "ingress")
        ingress_resource(settings, settings.port or 1)  # fail early on a bad name or address
        server = IngressServer(
            settings.address,
            settings.port,
            hello_timeout=settings.hello_timeout,
            connect_timeout=settings.connect_timeout,
        )
        super().__init__("zone-ingress", settings, server, self._start_server, install_signals)
        if settings.config_file is not None:
            self.static = StaticConfig(settings.config_file, parse_static, self.server.apply, ())
        else:
            assert settings.cp is not None
            from meshfed.proxy.cpclient import ConfigClient

            self.client = ConfigClient(
                str(settings.cp),
                hello=lambda: hello_message(
                    ProxyType.INGRESS,
                    ingress_resource(settings, self.server.port),
                    proxy_version=PROXY_VERSION,
                ),
                parse=parse_ingress_config,
                apply=self.server.apply,
                apply_errors=(),
                report=self._report,
                running_version=lambda: self.server.version,
                report_interval=settings.report_interval,
                token_file=settings.zone_token_file,
            )
        self.admin = AdminServer(
            settings.admin_address,
            {"/ready": self._ready, "/stats": self.stats, "/config": self._config},
            metrics_registry(IngressCollector(self.server)),
        )

    async def _start_server(self) -> None:
        self.server.start()

    def _report(self) -> pb.Report:
        report = pb.Report(config_version=self.server.version)
        for s in self.server.services.values():
            report.services.append(
                pb.ServiceStatus(
                    mesh=s.mesh,
                    service=s.service,
                    counters=pb.Counters(
                        connections_total=s.connections_total,
                        connections_active=s.active,
                        bytes_received=s.bytes_in(),
                        bytes_sent=s.bytes_out(),
                        connections_rejected=s.no_endpoint,
                    ),
                )
            )
        return report

    def _ready(self) -> tuple[int, dict[str, Any]]:
        return self.ready(self.server.router is not None)

    def _config(self) -> tuple[int, dict[str, Any] | None]:
        router = self.server.router
        return (404, None) if router is None else (200, router.config.to_json())
