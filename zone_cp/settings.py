"""Every option of `zone-cp`, declared once in `ZoneSettings` (flags, MESHFED_* variables, YAML
file keys and --help are derived from its fields: meshfed.config).

The DNS options (`--dns-address`, `--dns-upstream`, `--vip-cidr`) feed zone_cp.dns_wiring
and zone_cp.services.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Annotated, Any

from meshfed.api.options import ApiAddress, MaxBodyBytes
from meshfed.auth.options import ApiSecurity, check_api_tls
from meshfed.config import (
    Address,
    Config,
    ConfigError,
    LogFormat,
    LogLevel,
    Option,
    parse_address,
    parse_duration,
    parse_size,
)
from meshfed.ha.options import lease_ttl_option
from meshfed.kds.options import (
    KdsCaFile,
    KdsInsecure,
    KdsMaxMessageBytes,
    KdsTlsSkipVerify,
    ZoneTokenFile,
    parse_grpc_target,
    parse_zone_name,
)
from meshfed.store.factory import EtcdSettings, StoreKind, data_dir_option
from meshfed.vip_ranges import DEFAULT_VIP_CIDR
from zone_cp.dns import DEFAULT_PORT as DNS_DEFAULT_PORT
from zone_cp.dns_wiring import parse_upstream, parse_vip_cidr


def parse_mads_address(value: Any) -> Address | None:
    """`--mads-address`: empty is off (MADS is served only where asked for)."""
    return None if value in (None, "") else parse_address(value)


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


@dataclass(frozen=True)
class ZoneSettings:
    zone: Annotated[
        str,
        Option(
            parse_zone_name,
            "",
            "Name of this zone (required): how the global knows it and labels its inventory",
            metavar="NAME",
        ),
    ]
    global_kds: Annotated[
        tuple[Address, ...],  # empty: standalone
        Option(
            parse_grpc_targets,
            "",
            "KDS address of the global control plane, grpcs://HOST:PORT (grpc:// is accepted "
            "too: either way TLS unless --kds-insecure); several replicas "
            "comma-separated (the zone moves to the next one when a connection fails); empty "
            "runs standalone",
            metavar="URLS",
        ),
    ]
    zone_token_file: ZoneTokenFile
    kds_ca_file: KdsCaFile
    kds_tls_skip_verify: KdsTlsSkipVerify
    kds_insecure: KdsInsecure
    api_address: ApiAddress
    store: StoreKind
    data_dir: Annotated[Path, data_dir_option(".meshfed/zone-cp")]
    etcd: EtcdSettings
    etcd_lease_ttl: Annotated[
        int,
        lease_ttl_option(
            "With --store etcd: TTL of the lease of the zone's leader election (only the leader "
            "replica talks KDS to the global); a dead leader is replaced within this time",
        ),
    ]
    max_body_bytes: MaxBodyBytes
    kds_max_message_bytes: KdsMaxMessageBytes
    kds_reconnect_max: Annotated[
        float,
        Option(
            parse_duration,
            "3s",
            "Longest wait between KDS reconnect attempts (jittered exponential backoff up to this)",
            metavar="DURATION",
        ),
    ]
    kds_stale_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "Reconnect when the global has not answered a heartbeat for this long",
            metavar="DURATION",
        ),
    ]
    dns_address: Annotated[
        Address,
        Option(
            parse_address,
            f"127.0.0.1:{DNS_DEFAULT_PORT}",
            "Where the zone DNS server answers <service>.mesh, over UDP and TCP (HOST:PORT; "
            "port 0 picks a free one, shown in GET /)",
            metavar="HOST:PORT",
        ),
    ]
    dns_upstream: Annotated[
        tuple[str, int] | None,
        Option(
            parse_upstream,
            "",
            "Resolver for names outside .mesh, HOST[:PORT]; empty: such queries are REFUSED",
            metavar="HOST:PORT",
        ),
    ]
    dns_tcp_idle_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "DNS over TCP: close a connection that sends no complete query for this long (idle "
            "connections are also closed, oldest first, when 1024 are open or 256 from one "
            "address)",
            metavar="DURATION",
        ),
    ]
    vip_cidr: Annotated[
        IPv4Network,
        Option(
            parse_vip_cidr,
            str(DEFAULT_VIP_CIDR),
            "IPv4 range the zone's service VIPs come from (inside 127.0.0.0/8 listeners bind "
            "them without network setup; zones sharing a host need different ranges)",
            metavar="CIDR",
        ),
    ]
    dp_server_address: Annotated[
        Address,
        Option(
            parse_address,
            "127.0.0.1:5678",
            "Where the dataplane config server listens for mesh-dp sidecars and zone ingresses "
            "(gRPC; HOST:PORT, port 0 picks a free one, shown in GET /)",
            metavar="HOST:PORT",
        ),
    ]
    mads_address: Annotated[
        Address | None,
        Option(
            parse_mads_address,
            "",
            "Where the zone serves Monitoring Assignment Discovery to Prometheus's "
            "kuma_sd_configs (HTTP, public: the sidecars' metrics endpoints per MeshMetric "
            "clientId; HOST:PORT, Kuma's port is 5676; empty: off)",
            metavar="HOST:PORT",
        ),
    ]
    dp_max_message_bytes: Annotated[
        int,
        Option(
            parse_size,
            "4MiB",
            "Largest message a proxy may send on the dataplane port (Hello, ACK/NACK, "
            "reports); a larger one ends its stream with RESOURCE_EXHAUSTED. Configs sent to "
            "proxies are bounded by the proxies' own 16 MiB limit",
            metavar="SIZE",
        ),
    ]
    dp_cert_validity: Annotated[
        float,
        Option(
            parse_duration,
            "24h",
            "Validity of the certificates issued to sidecars (a new one is pushed after 80% of "
            "it); a Mesh backend's dpCert.rotation.expiration overrides it",
            metavar="DURATION",
        ),
    ]
    dp_insight_flush: Annotated[
        float,
        Option(
            parse_duration,
            "5s",
            "How often DataplaneInsight counters from proxy reports are written (connections "
            "and disconnections are written at once)",
            metavar="DURATION",
        ),
    ]
    dp_keepalive_interval: Annotated[
        float,
        Option(
            parse_duration,
            "15s",
            "How often the dataplane config server pings each connected proxy (HTTP/2 PING); "
            "with --dp-keepalive-timeout, how soon a proxy that hangs (frozen, its connection "
            "still open) is taken for gone and marked offline",
            metavar="DURATION",
        ),
    ]
    dp_keepalive_timeout: Annotated[
        float,
        Option(
            parse_duration,
            "10s",
            "How long a proxy has to answer a keepalive ping before its stream is ended and "
            "its dataplane marked not ready (DNS and other zones stop routing to it)",
            metavar="DURATION",
        ),
    ]
    api_security: ApiSecurity
    log_level: LogLevel
    log_format: LogFormat


CONFIG = Config(
    "zone-cp",
    "The meshfed zone control plane: keeps a copy of what the global sends, owns its zone's "
    "dataplanes and ingresses, and serves them over its REST API.",
    ZoneSettings,
)


def check_settings(s: ZoneSettings) -> None:
    """Refuses combinations no start could honour (ConfigError)."""
    check_api_tls(s.api_security.api_tls_cert, s.api_security.api_tls_key)
    if s.global_kds and s.api_security.admin_token_file is not None:
        raise ConfigError(
            "--admin-token-file is for a standalone zone (no --global-kds): a federated zone "
            "has no admin token of its own; use the global's, which this zone accepts"
        )
