"""Value parsers of the HA options both control planes declare (`--etcd-lease-ttl`)."""

from __future__ import annotations

import math
from typing import Any

from meshfed.config import parse_duration


def parse_lease_ttl(value: Any) -> int:
    """Whole seconds, as etcd grants leases."""
    return max(1, math.ceil(parse_duration(value)))
