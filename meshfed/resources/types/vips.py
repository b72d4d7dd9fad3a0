"""VirtualIPs: the VIPs a zone handed out in one mesh, persisted by zone-cp and synced up.

One resource per zone and mesh, named after the zone and written only by zone-cp: its store is
where VIPs survive restarts, and the global receives a copy (KDS, zone to global) so its
services view can show each zone's VIP. `services` holds the VIPs the zone's DNS answers now:
`vip` for `<service>.mesh`, `zones` for the zone-pinned `<service>.<zone>.mesh`. `reserved`
holds the addresses of services that went away, oldest first: a service that comes back gets
its old VIP again, and a reserved address goes to another service only when the range has no
other free address. `cursor` is where the zone's next new allocation starts looking (one
cursor for the zone, copied into every mesh's resource).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.model import LABEL_ZONE
from meshfed.resources.types.common import (
    AGE_COLUMN,
    MESH_COLUMN,
    NAME_COLUMN,
    as_list,
    column,
    dig,
)


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class VipEntry:
    """One address of a VirtualIPs resource: `service` (pinned to `zone` when set) at `vip`;
    `active` when DNS answers with it, else reserved since `since`."""

    service: str
    zone: str | None
    vip: str
    active: bool
    since: str = ""


def vip_entries(spec: dict[str, Any]) -> list[VipEntry]:
    """Every well-formed entry of a VirtualIPs spec, active ones first; odd ones are skipped
    (the store may hold what an older version wrote)."""
    out: list[VipEntry] = []
    services = spec.get("services")
    if isinstance(services, dict):
        for service, entry in services.items():
            if not isinstance(service, str) or not isinstance(entry, dict):
                continue
            vip = entry.get("vip")
            if isinstance(vip, str) and _is_ipv4(vip):
                out.append(VipEntry(service, None, vip, True))
            zones = entry.get("zones")
            for zone, pinned in (zones if isinstance(zones, dict) else {}).items():
                if isinstance(zone, str) and isinstance(pinned, str) and _is_ipv4(pinned):
                    out.append(VipEntry(service, zone, pinned, True))
    for item in as_list(spec.get("reserved")):
        service, vip = dig(item, "service"), dig(item, "vip")
        zone, since = dig(item, "zone"), dig(item, "since")
        if not (isinstance(service, str) and isinstance(vip, str) and _is_ipv4(vip)):
            continue
        out.append(
            VipEntry(
                service,
                zone if isinstance(zone, str) else None,
                vip,
                False,
                since if isinstance(since, str) else "",
            )
        )
    return out


def vips_spec(cidr: str, cursor: str, entries: list[VipEntry]) -> dict[str, Any]:
    """The spec holding `entries` (reserved ones in the order given: oldest first)."""
    services: dict[str, dict[str, Any]] = {}
    reserved: list[dict[str, str]] = []
    for e in entries:
        if e.active:
            slot = services.setdefault(e.service, {})
            if e.zone is None:
                slot["vip"] = e.vip
            else:
                slot.setdefault("zones", {})[e.zone] = e.vip
        else:
            item = {"service": e.service, "vip": e.vip}
            if e.zone is not None:
                item["zone"] = e.zone
            if e.since:
                item["since"] = e.since
            reserved.append(item)
    for slot in services.values():
        if "zones" in slot:
            slot["zones"] = dict(sorted(slot["zones"].items()))
    return {
        "cidr": cidr,
        "cursor": cursor,
        "services": dict(sorted(services.items())),
        "reserved": reserved,
    }


def _count(spec: dict[str, Any], field: str) -> str:
    value = spec.get(field)
    return str(len(value)) if isinstance(value, dict | list) else "0"


VIRTUAL_IPS = TypeDescriptor(
    name="VirtualIPs",
    plural="virtualips",
    scope=Scope.MESH,
    spec_wrapped=True,
    owner=Mode.ZONE,
    kds=frozenset({KdsFlag.ZONE_TO_GLOBAL}),
    short_names=("vips", "vip"),
    model="meshfed.resources.models.system:VirtualIpsSpec",
    system_only=True,
    columns=(
        NAME_COLUMN,
        MESH_COLUMN,
        column("ZONE", lambda r: r.meta.labels.get(LABEL_ZONE, "-")),
        column("CIDR", lambda r: str(r.spec.get("cidr") or "-")),
        column("SERVICES", lambda r: _count(r.spec, "services")),
        column("RESERVED", lambda r: _count(r.spec, "reserved")),
        AGE_COLUMN,
    ),
    description="The VIPs one zone gave the services of a mesh (written by zone-cp).",
)
