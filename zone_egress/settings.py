"""Every option of `zone-egress`, declared once in `EgressSettings` (flags, MESHFED_*
variables, YAML file keys and --help are derived from its fields: meshfed.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from meshfed.config import (
    Address,
    Config,
    LogFormat,
    LogLevel,
    Option,
    parse_duration,
)
from meshfed.kds.options import parse_grpc_target
from meshfed.proxy.options import (
    admin_address_option,
    config_file_option,
    cp_option,
    drain_timeout_option,
    listen_address_option,
    listen_port_option,
    name_option,
    report_interval_option,
    zone_token_file_option,
)

DEFAULT_PORT = 10002


@dataclass(frozen=True)
class EgressSettings:
    cp: Annotated[Address | None, cp_option(parse_grpc_target)]
    name: Annotated[str, name_option("zone-egress", "ZoneEgress")]
    address: Annotated[str, listen_address_option()]
    port: Annotated[int, listen_port_option(DEFAULT_PORT)]
    zone_token_file: Annotated[Path | None, zone_token_file_option("egress")]
    config_file: Annotated[Path | None, config_file_option("EgressConfig")]
    admin_address: Annotated[Address, admin_address_option("127.0.0.1:9903")]
    handshake_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "5s",
            "Longest TLS handshake with a sidecar; slower peers are closed (slowloris)",
            metavar="DURATION",
        ),
    ]
    report_interval: Annotated[float, report_interval_option()]
    drain_timeout: Annotated[float, drain_timeout_option()]
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "zone-egress",
    "The meshfed zone egress: terminates the mesh's mTLS for MeshExternalServices (routed by "
    "SNI), checks MeshTrafficPermission, and opens the connection to the external service, "
    "with TLS origination when the service asks for it.",
    EgressSettings,
)
