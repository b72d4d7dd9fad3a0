"""Every option of `global-cp`, declared once (flags, MESHFED_* variables, YAML file keys)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshfed.api.body import DEFAULT_MAX_BODY_BYTES
from meshfed.auth.options import API_OPTIONS, check_api_tls
from meshfed.config import (
    LOG_LEVEL,
    Address,
    Config,
    Option,
    parse_address,
    parse_bool,
    parse_duration,
    parse_path,
    parse_size,
)
from meshfed.ha.options import parse_lease_ttl
from meshfed.kds.options import (
    KDS_CA_OUT,
    KDS_INSECURE,
    KDS_TLS_CERT,
    KDS_TLS_KEY,
    KDS_TLS_SAN,
    MAX_MESSAGE_BYTES,
)
from meshfed.store.factory import ETCD_OPTIONS, EtcdSettings, store_option

OPTIONS = (
    Option(
        "api-address",
        parse_address,
        "127.0.0.1:5681",
        "Where the REST API listens (HOST:PORT; port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
    Option(
        "kds-address",
        parse_address,
        "127.0.0.1:5685",
        "Where the KDS gRPC server listens for zones (HOST:PORT; port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
    KDS_TLS_CERT,
    KDS_TLS_KEY,
    KDS_TLS_SAN,
    KDS_CA_OUT,
    KDS_INSECURE,
    store_option(),
    Option(
        "data-dir",
        parse_path,
        ".meshfed/global-cp",
        "Directory of the SQLite store (created if missing)",
        metavar="DIR",
    ),
    *ETCD_OPTIONS,
    Option(
        "etcd-lease-ttl",
        parse_lease_ttl,
        "10s",
        "With --store etcd: TTL of this replica's leases (leader election, replica presence). "
        "When a replica dies, leadership and its zones' offline marking move within this time",
        metavar="DURATION",
    ),
    Option(
        "default-mesh",
        parse_bool,
        True,
        "Create Mesh 'default' on the first start (an empty store); never re-created later",
    ),
    Option(
        "max-body-bytes",
        parse_size,
        DEFAULT_MAX_BODY_BYTES,
        "Largest accepted request body, in bytes (suffixes KiB, MiB allowed); larger gets 413",
        metavar="SIZE",
    ),
    MAX_MESSAGE_BYTES,
    Option(
        "zone-health-interval",
        parse_duration,
        "1s",
        "How often zones are told to send a heartbeat",
        metavar="DURATION",
    ),
    Option(
        "zone-offline-timeout",
        parse_duration,
        "5s",
        "A zone silent (no heartbeat, no message) for this long is marked offline and its "
        "streams are closed; its inventory stays",
        metavar="DURATION",
    ),
    Option(
        "zone-insight-flush",
        parse_duration,
        "1s",
        "How often changed ZoneInsight resources are written to the store",
        metavar="DURATION",
    ),
    *API_OPTIONS,
    LOG_LEVEL,
)

CONFIG = Config(
    "global-cp",
    "The meshfed global control plane: the REST API for meshes and policies, and the KDS "
    "server that syncs them with the zones.",
    OPTIONS,
)


@dataclass(frozen=True)
class GlobalSettings(EtcdSettings):
    api_address: Address
    kds_address: Address
    kds_tls_cert: Path | None
    kds_tls_key: Path | None
    kds_tls_san: tuple[str, ...]
    kds_ca_out: Path | None
    kds_insecure: bool
    store: str
    data_dir: Path
    etcd_lease_ttl: int
    default_mesh: bool
    max_body_bytes: int
    kds_max_message_bytes: int
    zone_health_interval: float
    zone_offline_timeout: float
    zone_insight_flush: float
    api_localhost_is_admin: bool
    admin_token_file: Path | None
    api_tls_cert: Path | None
    api_tls_key: Path | None
    log_level: str


def check_settings(s: GlobalSettings) -> None:
    """Refuses combinations no start could honour (ConfigError)."""
    check_api_tls(s.api_tls_cert, s.api_tls_key)
