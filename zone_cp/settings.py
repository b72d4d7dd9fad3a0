"""Every option of `zone-cp`, declared once (flags, MESHFED_* variables, YAML file keys).

The DNS options (`--dns-address`, `--dns-upstream`, `--vip-cidr`) feed zone_cp.dns_wiring
and zone_cp.services.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from meshfed.api.body import DEFAULT_MAX_BODY_BYTES
from meshfed.auth.options import API_OPTIONS, check_api_tls
from meshfed.config import (
    LOG_LEVEL,
    Address,
    Config,
    ConfigError,
    Option,
    parse_address,
    parse_duration,
    parse_path,
    parse_size,
)
from meshfed.ha.options import parse_lease_ttl
from meshfed.kds.options import (
    KDS_CA_FILE,
    KDS_INSECURE,
    KDS_TLS_SKIP_VERIFY,
    MAX_MESSAGE_BYTES,
    ZONE_TOKEN_FILE,
    parse_grpc_target,
    parse_zone_name,
)
from meshfed.store.factory import ETCD_OPTIONS, EtcdSettings, store_option
from meshfed.vip_ranges import DEFAULT_VIP_CIDR
from zone_cp.dns import DEFAULT_PORT as DNS_DEFAULT_PORT
from zone_cp.dns_wiring import parse_upstream, parse_vip_cidr


def parse_grpc_targets(value: Any) -> tuple[Address, ...]:
    """`grpc://A:5685,grpc://B:5685`: the global's replicas, tried in this order."""
    text = str(value).strip() if value is not None else ""
    targets: list[Address] = []
    for part in text.split(","):
        target = parse_grpc_target(part)
        if target is None:
            if text:
                raise ValueError("an empty address in the list (two commas, or a comma at an end)")
            continue
        if target in targets:
            raise ValueError(f"{target} is listed twice")
        targets.append(target)
    return tuple(targets)


OPTIONS = (
    Option(
        "zone",
        parse_zone_name,
        "",
        "Name of this zone (required): how the global knows it and labels its inventory",
        metavar="NAME",
    ),
    Option(
        "global-kds",
        parse_grpc_targets,
        "",
        "KDS address of the global control plane, grpcs://HOST:PORT (grpc:// is accepted "
        "too: either way TLS unless --kds-insecure); several replicas "
        "comma-separated (the zone moves to the next one when a connection fails); empty "
        "runs standalone",
        metavar="URLS",
    ),
    ZONE_TOKEN_FILE,
    KDS_CA_FILE,
    KDS_TLS_SKIP_VERIFY,
    KDS_INSECURE,
    Option(
        "api-address",
        parse_address,
        "127.0.0.1:5681",
        "Where the REST API listens (HOST:PORT; port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
    store_option(),
    Option(
        "data-dir",
        parse_path,
        ".meshfed/zone-cp",
        "Directory of the SQLite store (created if missing)",
        metavar="DIR",
    ),
    *ETCD_OPTIONS,
    Option(
        "etcd-lease-ttl",
        parse_lease_ttl,
        "10s",
        "With --store etcd: TTL of the lease of the zone's leader election (only the leader "
        "replica talks KDS to the global); a dead leader is replaced within this time",
        metavar="DURATION",
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
        "kds-reconnect-max",
        parse_duration,
        "3s",
        "Longest wait between KDS reconnect attempts (jittered exponential backoff up to this)",
        metavar="DURATION",
    ),
    Option(
        "kds-stale-timeout",
        parse_duration,
        "10s",
        "Reconnect when the global has not answered a heartbeat for this long",
        metavar="DURATION",
    ),
    Option(
        "dns-address",
        parse_address,
        f"127.0.0.1:{DNS_DEFAULT_PORT}",
        "Where the zone DNS server answers <service>.mesh, over UDP and TCP (HOST:PORT; port 0 "
        "picks a free one, shown in GET /)",
        metavar="HOST:PORT",
    ),
    Option(
        "dns-upstream",
        parse_upstream,
        "",
        "Resolver for names outside .mesh, HOST[:PORT]; empty: such queries are REFUSED",
        metavar="HOST:PORT",
    ),
    Option(
        "dns-tcp-idle-timeout",
        parse_duration,
        "10s",
        "DNS over TCP: close a connection that sends no complete query for this long (idle "
        "connections are also closed, oldest first, when 1024 are open or 256 from one address)",
        metavar="DURATION",
    ),
    Option(
        "vip-cidr",
        parse_vip_cidr,
        str(DEFAULT_VIP_CIDR),
        "IPv4 range the zone's service VIPs come from (inside 127.0.0.0/8 listeners bind them "
        "without network setup; zones sharing a host need different ranges)",
        metavar="CIDR",
    ),
    Option(
        "dp-server-address",
        parse_address,
        "127.0.0.1:5678",
        "Where the dataplane config server listens for mesh-dp sidecars and zone ingresses "
        "(gRPC; HOST:PORT, port 0 picks a free one, shown in GET /)",
        metavar="HOST:PORT",
    ),
    Option(
        "dp-max-message-bytes",
        parse_size,
        "4MiB",
        "Largest message a proxy may send on the dataplane port (Hello, ACK/NACK, reports); "
        "a larger one ends its stream with RESOURCE_EXHAUSTED. Configs sent to proxies are "
        "bounded by the proxies' own 16 MiB limit",
        metavar="SIZE",
    ),
    Option(
        "dp-cert-validity",
        parse_duration,
        "24h",
        "Validity of the certificates issued to sidecars (a new one is pushed after 80% of "
        "it); a Mesh backend's dpCert.rotation.expiration overrides it",
        metavar="DURATION",
    ),
    Option(
        "dp-insight-flush",
        parse_duration,
        "5s",
        "How often DataplaneInsight counters from proxy reports are written (connections "
        "and disconnections are written at once)",
        metavar="DURATION",
    ),
    *API_OPTIONS,
    LOG_LEVEL,
)

CONFIG = Config(
    "zone-cp",
    "The meshfed zone control plane: keeps a copy of what the global sends, owns its zone's "
    "dataplanes and ingresses, and serves them over its REST API.",
    OPTIONS,
)


@dataclass(frozen=True)
class ZoneSettings(EtcdSettings):
    zone: str
    global_kds: tuple[Address, ...]  # empty: standalone
    zone_token_file: Path | None
    kds_ca_file: Path | None
    kds_tls_skip_verify: bool
    kds_insecure: bool
    api_address: Address
    store: str
    data_dir: Path
    etcd_lease_ttl: int
    max_body_bytes: int
    kds_max_message_bytes: int
    kds_reconnect_max: float
    kds_stale_timeout: float
    dns_address: Address
    dns_upstream: tuple[str, int] | None
    dns_tcp_idle_timeout: float
    vip_cidr: IPv4Network
    dp_server_address: Address
    dp_max_message_bytes: int
    dp_cert_validity: float
    dp_insight_flush: float
    api_localhost_is_admin: bool
    admin_token_file: Path | None
    api_tls_cert: Path | None
    api_tls_key: Path | None
    log_level: str


def check_settings(s: ZoneSettings) -> None:
    """Refuses combinations no start could honour (ConfigError)."""
    check_api_tls(s.api_tls_cert, s.api_tls_key)
    if s.global_kds and s.admin_token_file is not None:
        raise ConfigError(
            "--admin-token-file is for a standalone zone (no --global-kds): a federated zone "
            "has no admin token of its own; use the global's, which this zone accepts"
        )
