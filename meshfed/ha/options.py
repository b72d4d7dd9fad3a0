"""The HA option both control planes declare (`--etcd-lease-ttl`) and its value parser."""

from __future__ import annotations

import math
from typing import Any

from meshfed.config import Option, parse_duration


def parse_lease_ttl(value: Any) -> int:
    """Whole seconds, as etcd grants leases."""
    return max(1, math.ceil(parse_duration(value)))


def lease_ttl_option(help: str) -> Option:
    """`--etcd-lease-ttl`, with each program's own account of what its leases hold."""
    return Option(parse_lease_ttl, "10s", help, metavar="DURATION")
