"""Every option of `zone-ingress`, declared once (flags, MESHFED_* variables, YAML file keys)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from meshfed.config import (
    LOG_LEVEL,
    Address,
    Config,
    Option,
    int_parser,
    parse_address,
    parse_duration,
    parse_optional_path,
    parse_str,
)
from meshfed.kds.options import parse_grpc_target

DEFAULT_PORT = 10001

OPTIONS = (
    Option(
        "cp",
        parse_grpc_target,
        "",
        "Dataplane config server of the zone control plane, grpc://HOST:PORT; not needed with "
        "--config-file",
        metavar="URL",
    ),
    Option(
        "name",
        parse_str,
        f"zone-ingress-{socket.gethostname().split('.')[0].lower()}",
        "Name of this ZoneIngress",
        metavar="NAME",
    ),
    Option("address", parse_str, "127.0.0.1", "Address to listen on", metavar="IP"),
    Option("port", int_parser(0, 65535), DEFAULT_PORT, "Port to listen on", metavar="PORT"),
    Option(
        "advertised-address",
        parse_str,
        "",
        "Address other zones dial (behind NAT or a load balancer); empty: --address",
        metavar="IP",
    ),
    Option(
        "advertised-port",
        int_parser(0, 65535),
        0,
        "Port other zones dial; 0: --port",
        metavar="PORT",
    ),
    Option(
        "zone-token-file",
        parse_optional_path,
        "",
        "File holding a zone token of scope ingress for this zone (issued at the global), sent to "
        "the control plane at every connection (re-read then, so a rotated token is picked up)",
        metavar="FILE",
    ),
    Option(
        "config-file",
        parse_optional_path,
        "",
        "Run from a static IngressConfig JSON file instead of a control plane (debugging and "
        "tests); SIGHUP reloads it",
        metavar="FILE",
    ),
    Option(
        "admin-address",
        parse_address,
        "127.0.0.1:9902",
        "Admin endpoint: /ready, /stats, /config, /metrics (port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
    Option(
        "hello-timeout",
        parse_duration,
        "5s",
        "Longest wait for a complete TLS ClientHello; slower peers are closed (slowloris)",
        metavar="DURATION",
    ),
    Option(
        "connect-timeout",
        parse_duration,
        "5s",
        "Longest connect to one local instance before trying the next",
        metavar="DURATION",
    ),
    Option(
        "drain-timeout",
        parse_duration,
        "30s",
        "On SIGTERM: stop accepting, and let open connections finish for up to this long",
        metavar="DURATION",
    ),
    Option(
        "report-interval",
        parse_duration,
        "10s",
        "How often counters are reported to the control plane",
        metavar="DURATION",
    ),
    LOG_LEVEL,
)

CONFIG = Config(
    "zone-ingress",
    "The meshfed zone ingress: routes other zones' mTLS connections to local instances by the "
    "SNI of their ClientHello, without terminating TLS.",
    OPTIONS,
)


@dataclass(frozen=True)
class IngressSettings:
    cp: Address | None
    name: str
    address: str
    port: int
    advertised_address: str
    advertised_port: int
    zone_token_file: Path | None
    config_file: Path | None
    admin_address: Address
    hello_timeout: float
    connect_timeout: float
    drain_timeout: float
    report_interval: float
    log_level: str
