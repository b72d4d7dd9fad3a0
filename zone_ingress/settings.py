"""Every option of `zone-ingress`, declared once in `IngressSettings` (flags, MESHFED_*
variables, YAML file keys and --help are derived from its fields: meshfed.config)."""

from __future__ import annotations

import socket
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
    parse_optional_path,
    parse_str,
)
from meshfed.kds.options import parse_grpc_target
from meshfed.proxy.options import admin_address_option, config_file_option

DEFAULT_PORT = 10001


@dataclass(frozen=True)
class IngressSettings:
    cp: Annotated[
        Address | None,
        Option(
            parse_grpc_target,
            "",
            "Dataplane config server of the zone control plane, grpc://HOST:PORT; not needed with "
            "--config-file",
            metavar="URL",
        ),
    ]
    name: Annotated[
        str,
        Option(
            parse_str,
            f"zone-ingress-{socket.gethostname().split('.')[0].lower()}",
            "Name of this ZoneIngress",
            metavar="NAME",
        ),
    ]
    address: Annotated[str, Option(parse_str, "127.0.0.1", "Address to listen on", metavar="IP")]
    port: Annotated[
        int, Option(int_parser(0, 65535), DEFAULT_PORT, "Port to listen on", metavar="PORT")
    ]
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
    zone_token_file: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "File holding a zone token of scope ingress for this zone (issued at the global), "
            "sent to the control plane at every connection (re-read then, so a rotated token is "
            "picked up)",
            metavar="FILE",
        ),
    ]
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
    drain_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "30s",
            "On SIGTERM: stop accepting, and let open connections finish for up to this long",
            metavar="DURATION",
        ),
    ]
    report_interval: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "How often counters are reported to the control plane",
            metavar="DURATION",
        ),
    ]
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "zone-ingress",
    "The meshfed zone ingress: routes other zones' mTLS connections to local instances by the "
    "SNI of their ClientHello, without terminating TLS.",
    IngressSettings,
)
