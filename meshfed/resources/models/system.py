"""Zone, Secret, GlobalSecret, VirtualIPs and the insights: the system's own types."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from meshfed.resources.models.base import Keyed, Model, OpenObject, Text
from meshfed.resources.values import is_base64


class ZoneSpec(Model):
    # `enabled` defaults to true: a disabled zone is refused by the global's KDS server.
    enabled: bool = True


class SecretSpec(Model):
    data: Annotated[
        str, Text(predicate=is_base64, message="must be base64-encoded (standard alphabet)")
    ]


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_ipv4_network(text: str) -> bool:
    try:
        ipaddress.IPv4Network(text)
    except ValueError:
        return False
    return True


Vip = Annotated[str, Text(predicate=_is_ipv4, message="must be an IPv4 address")]
Label = Annotated[str, Text(non_empty=True, max_len=253)]


class VipSlot(Model):
    vip: Vip | None = None
    zones: Annotated[dict[Label, Vip], Keyed()] | None = None


class ReservedVip(Model):
    service: Label
    zone: Label | None = None
    vip: Vip
    since: str | None = None


class VirtualIpsSpec(Model):
    cidr: Annotated[
        str,
        Text(predicate=_is_ipv4_network, message="must be an IPv4 network, e.g. 127.1.0.0/16"),
    ]
    cursor: Vip | None = None
    services: Annotated[dict[Label, VipSlot], Keyed()] | None = None
    reserved: list[ReservedVip] | None = None


class InsightSpec(OpenObject):
    """Status written by the system: its fields belong to the components that write them."""
