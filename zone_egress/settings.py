"""Every option of `zone-egress`, declared once in `EgressSettings` (flags, MESHFED_*
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

DEFAULT_PORT = 10002


@dataclass(frozen=True)
class EgressSettings:
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
            f"zone-egress-{socket.gethostname().split('.')[0].lower()}",
            "Name of this ZoneEgress",
            metavar="NAME",
        ),
    ]
    address: Annotated[str, Option(parse_str, "127.0.0.1", "Address to listen on", metavar="IP")]
    port: Annotated[
        int, Option(int_parser(0, 65535), DEFAULT_PORT, "Port to listen on", metavar="PORT")
    ]
    zone_token_file: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "File holding a zone token of scope egress for this zone (issued at the global), "
            "sent to the control plane at every connection (re-read then)",
            metavar="FILE",
        ),
    ]
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
    report_interval: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "How often counters are reported to the control plane",
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
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "zone-egress",
    "The meshfed zone egress: terminates the mesh's mTLS for MeshExternalServices (routed by "
    "SNI), checks MeshTrafficPermission, and opens the connection to the external service, "
    "with TLS origination when the service asks for it.",
    EgressSettings,
)
