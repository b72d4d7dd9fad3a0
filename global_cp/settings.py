"""Every option of `global-cp`, declared once in `GlobalSettings` (flags, MESHFED_* variables,
YAML file keys and --help are derived from its fields: meshfed.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from meshfed.api.options import ApiAddress, MaxBodyBytes
from meshfed.auth.options import ApiSecurity, check_api_tls
from meshfed.config import (
    Address,
    Config,
    LogFormat,
    LogLevel,
    Option,
    parse_address,
    parse_bool,
    parse_duration,
)
from meshfed.ha.options import lease_ttl_option
from meshfed.kds.options import (
    KdsCaOut,
    KdsInsecure,
    KdsMaxMessageBytes,
    KdsTlsCert,
    KdsTlsKey,
    KdsTlsSan,
)
from meshfed.store.factory import EtcdSettings, StoreKind, data_dir_option


@dataclass(frozen=True)
class GlobalSettings:
    api_address: ApiAddress
    kds_address: Annotated[
        Address,
        Option(
            parse_address,
            "127.0.0.1:5685",
            "Where the KDS gRPC server listens for zones (HOST:PORT; port 0 picks a free one)",
            metavar="HOST:PORT",
        ),
    ]
    kds_tls_cert: KdsTlsCert
    kds_tls_key: KdsTlsKey
    kds_tls_san: KdsTlsSan
    kds_ca_out: KdsCaOut
    kds_insecure: KdsInsecure
    store: StoreKind
    data_dir: Annotated[Path, data_dir_option(".meshfed/global-cp")]
    etcd: EtcdSettings
    etcd_lease_ttl: Annotated[
        int,
        lease_ttl_option(
            "With --store etcd: TTL of this replica's leases (leader election, replica "
            "presence). When a replica dies, leadership and its zones' offline marking move "
            "within this time",
        ),
    ]
    default_mesh: Annotated[
        bool,
        Option(
            parse_bool,
            True,
            "Create Mesh 'default' on the first start (an empty store); never re-created later",
        ),
    ]
    max_body_bytes: MaxBodyBytes
    kds_max_message_bytes: KdsMaxMessageBytes
    zone_health_interval: Annotated[
        float,
        Option(
            parse_duration,
            "1s",
            "How often zones are told to send a heartbeat",
            metavar="DURATION",
        ),
    ]
    zone_offline_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "5s",
            "A zone silent (no heartbeat, no message) for this long is marked offline and its "
            "streams are closed; its inventory stays",
            metavar="DURATION",
        ),
    ]
    zone_insight_flush: Annotated[
        float,
        Option(
            parse_duration,
            "1s",
            "How often changed ZoneInsight resources are written to the store",
            metavar="DURATION",
        ),
    ]
    api_security: ApiSecurity
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "global-cp",
    "The meshfed global control plane: the REST API for meshes and policies, and the KDS "
    "server that syncs them with the zones.",
    GlobalSettings,
)


def check_settings(s: GlobalSettings) -> None:
    """Refuses combinations no start could honour (ConfigError)."""
    check_api_tls(s.api_security.api_tls_cert, s.api_security.api_tls_key)
