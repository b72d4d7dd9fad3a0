"""Options both proxies (mesh-dp, zone-ingress) declare, with what differs between them as
arguments, so they spell and document them alike."""

from __future__ import annotations

from meshfed.config import Option, parse_address, parse_optional_path


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
