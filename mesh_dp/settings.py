"""Every option of `mesh-dp`, declared once in `SidecarSettings` (flags, MESHFED_* variables, YAML
file keys and --help are derived from its fields: meshfed.config)."""

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
    parse_address,
    parse_bool,
    parse_duration,
    parse_optional_path,
    parse_str,
)
from meshfed.kds.options import parse_grpc_target
from meshfed.proxy.options import admin_address_option, config_file_option


@dataclass(frozen=True)
class SidecarSettings:
    cp: Annotated[
        Address | None,
        Option(
            parse_grpc_target,
            "",
            "Dataplane config server of the zone control plane, grpc://HOST:PORT (zone-cp listens "
            "on 5678 by default); not needed with --config-file",
            metavar="URL",
        ),
    ]
    dataplane_file: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "This sidecar's Dataplane (Kuma Universal YAML or JSON), announced to the control "
            "plane",
            metavar="FILE",
        ),
    ]
    dataplane: Annotated[
        str,
        Option(
            parse_str,
            "",
            "The Dataplane inline (YAML or JSON text), instead of --dataplane-file",
            metavar="TEXT",
        ),
    ]
    name: Annotated[
        str, Option(parse_str, "", "Dataplane name (overrides the document's)", metavar="NAME")
    ]
    mesh: Annotated[str, Option(parse_str, "", "Mesh (overrides the document's; default: default)")]
    address: Annotated[
        str,
        Option(
            parse_str,
            "",
            "networking.address: where this sidecar's inbounds listen (with --inbound, or to "
            "override the document's)",
            metavar="IP",
        ),
    ]
    inbound: Annotated[
        str,
        Option(
            parse_str,
            "",
            "Inbounds without a Dataplane document: PORT:SERVICE_PORT:SERVICE[,...]",
            metavar="SPEC",
        ),
    ]
    reachable_services: Annotated[
        str,
        Option(
            parse_str,
            "",
            "Bind only these services' VIPs (comma-separated; empty: all), so several sidecars "
            "can share one network namespace",
            metavar="A,B",
        ),
    ]
    dataplane_token_file: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "File holding this sidecar's dataplane token (`meshctl generate dataplane-token`), "
            "sent to the control plane at every connection (re-read then, so a rotated token is "
            "picked up)",
            metavar="FILE",
        ),
    ]
    config_file: Annotated[Path | None, config_file_option("SidecarConfig")]
    admin_address: Annotated[Address, admin_address_option("127.0.0.1:9901")]
    report_interval: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "How often counters and readiness are reported to the control plane",
            metavar="DURATION",
        ),
    ]
    handshake_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "Longest inbound TLS handshake; slower callers are dropped",
            metavar="DURATION",
        ),
    ]
    probe_interval: Annotated[
        float,
        Option(
            parse_duration,
            "1s",
            "How often each inbound's application is probed (TCP connect) for readiness",
            metavar="DURATION",
        ),
    ]
    passthrough_address: Annotated[
        Address | None,
        Option(
            parse_optional_address,
            "",
            "Serve a passthrough proxy (HTTP CONNECT) here: applications that use it as their "
            "proxy reach destinations outside the mesh that MeshPassthrough allows; empty: none",
            metavar="HOST:PORT",
        ),
    ]
    access_log: Annotated[
        bool,
        Option(
            parse_bool,
            False,
            "Write one line per HTTP request (method, path, status, bytes, duration, upstream) "
            "to stdout",
        ),
    ]
    metrics_cert_path: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "Certificate (PEM) a MeshMetric Prometheus backend with tls mode ProvidedTLS serves "
            "with (Kuma's KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH)",
            metavar="FILE",
        ),
    ]
    metrics_key_path: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "The key (PEM) of --metrics-cert-path",
            metavar="FILE",
        ),
    ]
    log_level: LogLevel
    log_format: LogFormat


def parse_optional_address(value: object) -> Address | None:
    """HOST:PORT, or empty for none."""
    text = str(value).strip() if value is not None else ""
    return parse_address(text) if text else None


CONFIG = Config(
    "mesh-dp",
    "The meshfed sidecar: mTLS inbounds authorized by MeshTrafficPermission, outbounds on "
    "service VIPs with load balancing across zones, configured by the zone control plane.",
    SidecarSettings,
)
