"""Every option of `zone-ingress`, declared once in `IngressSettings` (flags, MESHFED_*
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
    int_parser,
    parse_duration,
    parse_str,
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

DEFAULT_PORT = 10001


@dataclass(frozen=True)
class IngressSettings:
    cp: Annotated[Address | None, cp_option(parse_grpc_target)]
    name: Annotated[str, name_option("zone-ingress", "ZoneIngress")]
    address: Annotated[str, listen_address_option()]
    port: Annotated[int, listen_port_option(DEFAULT_PORT)]
    advertised_address: Annotated[
        str,
        Option(
            parse_str,
            "",
            "Address other zones dial (behind NAT or a load balancer); empty: --address",
            metavar="IP",
        ),
    ]
    advertised_port: Annotated[
        int, Option(int_parser(0, 65535), 0, "Port other zones dial; 0: --port", metavar="PORT")
    ]
    zone_token_file: Annotated[Path | None, zone_token_file_option("ingress")]
    config_file: Annotated[Path | None, config_file_option("IngressConfig")]
    admin_address: Annotated[Address, admin_address_option("127.0.0.1:9902")]
    hello_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "5s",
            "Longest wait for a complete TLS ClientHello; slower peers are closed (slowloris)",
            metavar="DURATION",
        ),
    ]
    connect_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "5s",
            "Longest connect to one local instance before trying the next",
            metavar="DURATION",
        ),
    ]
    drain_timeout: Annotated[float, drain_timeout_option()]
    report_interval: Annotated[float, report_interval_option()]
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "zone-ingress",
    "The meshfed zone ingress: routes other zones' mTLS connections to local instances by the "
    "SNI of their ClientHello, without terminating TLS.",
    IngressSettings,
)
