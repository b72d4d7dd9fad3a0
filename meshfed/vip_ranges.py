"""Default VIP ranges: which addresses a zone's services get when the operator names none.

Zone-cp takes the first as its `--vip-cidr` default; `meshctl up` gives the n-th zone it starts
on one machine the n-th, so zones side by side never hand out the same VIP.
"""

from __future__ import annotations

import ipaddress
from typing import Final

# 127.1.0.0/16, 127.2.0.0/16, ...: inside loopback so listeners bind VIPs with no network setup.
_LOOPBACK_FIRST_ZONE_OCTET: Final = 1
_LOOPBACK_ZONES: Final = 254


def zone_vip_cidr(index: int) -> ipaddress.IPv4Network:
    """The default VIP range of the `index`-th zone on one machine (0 → 127.1.0.0/16)."""
    if not 0 <= index < _LOOPBACK_ZONES:
        raise ValueError(f"zone index must be 0..{_LOOPBACK_ZONES - 1}, got {index}")
    return ipaddress.IPv4Network(f"127.{_LOOPBACK_FIRST_ZONE_OCTET + index}.0.0/16")


DEFAULT_VIP_CIDR: Final = zone_vip_cidr(0)
