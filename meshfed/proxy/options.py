"""Options the proxies (mesh-dp, zone-ingress, zone-egress) declare, with what differs
between them as arguments, so they spell and document them alike."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from meshfed.config import (
    Option,
    int_parser,
    parse_address,
    parse_duration,
    parse_optional_path,
    parse_str,
)


def config_file_option(config_type: str) -> Option:
    """`--config-file`: the proxy's static-config mode (meshfed.proxy.static_config)."""
    return Option(
        parse_optional_path,
        "",
        f"Run from a static {config_type} JSON file instead of a control plane (debugging and "
        "tests); SIGHUP reloads it",
        metavar="FILE",
    )


def admin_address_option(default: str) -> Option:
    """`--admin-address`: the proxy's admin endpoint (meshfed.proxy.admin)."""
    return Option(
        parse_address,
        default,
        "Admin endpoint: /ready, /stats, /config, /metrics (port 0 picks a free one)",
        metavar="HOST:PORT",
    )


# What zone-ingress and zone-egress declare alike (meshfed/proxy/zone_proxy.py runs both).


def cp_option(parse: Callable[[str], Any]) -> Option:
    """`--cp`: the zone control plane's dataplane config server (`parse`:
    meshfed.kds.options.parse_grpc_target, which this layer may not import)."""
    return Option(
        parse,
        "",
        "Dataplane config server of the zone control plane, grpc://HOST:PORT; not needed with "
        "--config-file",
        metavar="URL",
    )


def name_option(program: str, kind: str) -> Option:
    """`--name`: the resource the proxy announces; the host's short name by default."""
    return Option(
        parse_str,
        f"{program}-{socket.gethostname().split('.')[0].lower()}",
        f"Name of this {kind}",
        metavar="NAME",
    )


def listen_address_option() -> Option:
    return Option(parse_str, "127.0.0.1", "Address to listen on", metavar="IP")


def listen_port_option(default: int) -> Option:
    return Option(int_parser(0, 65535), default, "Port to listen on", metavar="PORT")


def zone_token_file_option(scope: str) -> Option:
    """`--zone-token-file`: the zone token (of `scope`) the control plane requires."""
    return Option(
        parse_optional_path,
        "",
        f"File holding a zone token of scope {scope} for this zone (issued at the global), "
        "sent to the control plane at every connection (re-read then, so a rotated token is "
        "picked up)",
        metavar="FILE",
    )


def report_interval_option() -> Option:
    return Option(
        parse_duration,
        "10s",
        "How often counters are reported to the control plane",
        metavar="DURATION",
    )


def drain_timeout_option() -> Option:
    return Option(
        parse_duration,
        "30s",
        "On SIGTERM: stop accepting, and let open connections finish for up to this long",
        metavar="DURATION",
    )
