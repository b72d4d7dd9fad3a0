"""Every option of `mesh-dp`, declared once (flags, MESHFED_* variables, YAML file keys)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshfed.config import (
    LOG_LEVEL,
    Address,
    Config,
    Option,
    parse_address,
    parse_bool,
    parse_duration,
    parse_optional_path,
    parse_str,
)
from meshfed.kds.options import parse_grpc_target

OPTIONS = (
    Option(
        "cp",
        parse_grpc_target,
        "",
        "Dataplane config server of the zone control plane, grpc://HOST:PORT (zone-cp listens "
        "on 5678 by default); not needed with --config-file",
        metavar="URL",
    ),
    Option(
        "dataplane-file",
        parse_optional_path,
        "",
        "This sidecar's Dataplane (Kuma Universal YAML or JSON), announced to the control plane",
        metavar="FILE",
    ),
    Option(
        "dataplane",
        parse_str,
        "",
        "The Dataplane inline (YAML or JSON text), instead of --dataplane-file",
        metavar="TEXT",
    ),
    Option("name", parse_str, "", "Dataplane name (overrides the document's)", metavar="NAME"),
    Option("mesh", parse_str, "", "Mesh (overrides the document's; default: default)"),
    Option(
        "address",
        parse_str,
        "",
        "networking.address: where this sidecar's inbounds listen (with --inbound, or to "
        "override the document's)",
        metavar="IP",
    ),
    Option(
        "inbound",
        parse_str,
        "",
        "Inbounds without a Dataplane document: PORT:SERVICE_PORT:SERVICE[,...]",
        metavar="SPEC",
    ),
    Option(
        "reachable-services",
        parse_str,
        "",
        "Bind only these services' VIPs (comma-separated; empty: all), so several sidecars "
        "can share one network namespace",
        metavar="A,B",
    ),
    Option(
        "dataplane-token-file",
        parse_optional_path,
        "",
        "File holding this sidecar's dataplane token (`meshctl generate dataplane-token`), sent to "
        "the control plane at every connection (re-read then, so a rotated token is picked up)",
        metavar="FILE",
    ),
    Option(
        "config-file",
        parse_optional_path,
        "",
        "Run from a static SidecarConfig JSON file instead of a control plane (debugging and "
        "tests); SIGHUP reloads it",
        metavar="FILE",
    ),
    Option(
        "admin-address",
        parse_address,
        "127.0.0.1:9901",
        "Admin endpoint: /ready, /stats, /config, /metrics (port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
    Option(
        "report-interval",
        parse_duration,
        "10s",
        "How often counters and readiness are reported to the control plane",
        metavar="DURATION",
    ),
    Option(
        "handshake-timeout",
        parse_duration,
        "10s",
        "Longest inbound TLS handshake; slower callers are dropped",
        metavar="DURATION",
    ),
    Option(
        "probe-interval",
        parse_duration,
        "1s",
        "How often each inbound's application is probed (TCP connect) for readiness",
        metavar="DURATION",
    ),
    Option(
        "access-log",
        parse_bool,
        False,
        "Write one line per HTTP request (method, path, status, bytes, duration, upstream) "
        "to stdout",
    ),
    LOG_LEVEL,
)

CONFIG = Config(
    "mesh-dp",
    "The meshfed sidecar: mTLS inbounds authorized by MeshTrafficPermission, outbounds on "
    "service VIPs with load balancing across zones, configured by the zone control plane.",
    OPTIONS,
)


@dataclass(frozen=True)
class SidecarSettings:
    cp: Address | None
    dataplane_file: Path | None
    dataplane: str
    name: str
    mesh: str
    address: str
    inbound: str
    reachable_services: str
    dataplane_token_file: Path | None
    config_file: Path | None
    admin_address: Address
    report_interval: float
    handshake_timeout: float
    probe_interval: float
    access_log: bool
    log_level: str
