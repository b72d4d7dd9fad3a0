"""Default VIP ranges: one loopback /16 per zone started on one machine, never overlapping."""

from __future__ import annotations

import ipaddress

import pytest

from meshfed.vip_ranges import DEFAULT_VIP_CIDR, zone_vip_cidr


def test_default_ranges_are_per_zone_slices_of_loopback() -> None:
    assert str(DEFAULT_VIP_CIDR) == "127.1.0.0/16"
    assert str(zone_vip_cidr(0)) == "127.1.0.0/16"
    assert str(zone_vip_cidr(1)) == "127.2.0.0/16"
    assert str(zone_vip_cidr(253)) == "127.254.0.0/16"
    cidrs = [zone_vip_cidr(i) for i in range(254)]
    assert all(c.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) for c in cidrs)
    assert not any(a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :])
    for bad in (-1, 254):
        with pytest.raises(ValueError, match="zone index"):
            zone_vip_cidr(bad)
