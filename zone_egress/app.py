"""zone-egress's composition root: the server, its admin endpoint, and where its routing
table comes from (the zone control plane's config stream, or a static file)."""

from __future__ import annotations

from typing import Any

from meshfed._gen import dataplane_pb2 as pb
from meshfed.dpconfig.egress import EgressConfig
from meshfed.dpconfig.model import ConfigFormatError
from meshfed.dpconfig.protocol import ProxyType, hello_message, parse_egress_config
from meshfed.process import install_signals
from meshfed.proxy.admin import AdminServer, metrics_registry
from meshfed.proxy.static_config import StaticConfig
from meshfed.proxy.zone_proxy import ZoneProxy, announced, check_source
from zone_egress.server import EgressServer
from zone_egress.settings import EgressSettings

PROXY_VERSION = "meshfed-zone-egress/0.1.0"


def parse_static(data: bytes) -> EgressConfig:
    config = EgressConfig.from_json(data)
    return config if config.version else config.stamped()


def egress_resource(settings: EgressSettings, port: int) -> dict[str, Any]:
    """The ZoneEgress announced in the Hello (zone-cp validates it and sets `zone`)."""
    networking = {"address": settings.address, "port": port}
    return announced({"type": "ZoneEgress", "name": settings.name, "networking": networking})


class App(ZoneProxy[EgressConfig]):
    settings: EgressSettings
    server: EgressServer

    def __init__(self, settings: EgressSettings) -> None:
        check_source(settings, "egress")
        egress_resource(settings, settings.port or 1)  # fail early on a bad name or address
        server = EgressServer(
            settings.address, settings.port, handshake_timeout=settings.handshake_timeout
        )
        super().__init__("zone-egress", settings, server, server.start, install_signals)
        if settings.config_file is not None:
            self.static = StaticConfig(settings.config_file, parse_static, self.server.apply, ())
        else:
            assert settings.cp is not None
            from meshfed.proxy.cpclient import ConfigClient

            self.client = ConfigClient(
                str(settings.cp),
                hello=lambda: hello_message(
                    ProxyType.EGRESS,
                    egress_resource(settings, self.server.port),
                    proxy_version=PROXY_VERSION,
                ),
                parse=parse_egress_config,
                apply=self.server.apply,
                apply_errors=(ConfigFormatError,),
                report=lambda: pb.Report(config_version=self.server.version),
                running_version=lambda: self.server.version,
                report_interval=settings.report_interval,
                token_file=settings.zone_token_file,
            )
        self.admin = AdminServer(
            settings.admin_address,
            {"/ready": self._ready, "/stats": self.stats, "/config": self._config},
            metrics_registry(),
        )

    def _ready(self) -> tuple[int, dict[str, Any]]:
        return self.ready(self.server.config is not None)

    def _config(self) -> tuple[int, dict[str, Any] | None]:
        config = self.server.config
        if config is None:
            return 404, None
        # the keys stay out of the admin view
        body = config.to_json()
        for s in body.get("services", ()):
            s.get("tls", {}).pop("keyPem", None)
            (s.get("originTls") or {}).pop("clientKeyPem", None)
        return 200, body
