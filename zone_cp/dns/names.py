"""DNS names for catalog services: `<service>.mesh` and `<service>.<zone>.mesh`.

As in Kuma, a service whose name contains `_` also answers under the name with `_` replaced by
`.` (`backend_kuma-demo_svc_8080` → `backend.kuma-demo.svc.8080.mesh`). Services whose names
cannot be a DNS label are skipped and reported, never half-served. When two entries claim one
name, a deterministic precedence decides (exact names before `_` variants, then the smallest
service and zone), so every zone-cp restart builds the same table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from zone_cp.dns.answers import DEFAULT_DOMAIN

# A service or zone name as one label: letters, digits, '-', '_' (Kuma's service names use '_').
_LABEL: Final = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
# A hostname label (RFC 1123), required of each part of the `_` → `.` variant.
_HOST_LABEL: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MAX_NAME_TEXT: Final = 253


@dataclass(frozen=True, slots=True)
class ServiceVip:
    """One catalog entry: `service` reachable at `vip`, pinned to `zone` when not None."""

    service: str
    zone: str | None
    vip: str


@dataclass(slots=True)
class NameSet:
    """The records for a `DnsTable`, and what could not be served (for logs and metrics)."""

    records: dict[str, str] = field(default_factory=dict)  # fqdn → VIP
    skipped: list[str] = field(default_factory=list)  # services or zones that are not labels
    conflicts: list[str] = field(default_factory=list)  # names claimed with different VIPs

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self.records.items())


def _candidates(entry: ServiceVip, domain: str) -> list[tuple[int, str]]:
    """(precedence, fqdn) for one entry; empty when its names are not valid labels."""
    service = entry.service.lower()
    zone = None if entry.zone is None else entry.zone.lower()
    if not _LABEL.match(service) or (zone is not None and not _LABEL.match(zone)):
        return []
    where = domain if zone is None else f"{zone}.{domain}"
    rank = 0 if zone is None else 1
    names = [(rank, f"{service}.{where}")]
    if "_" in service:
        parts = service.split("_")
        if all(_HOST_LABEL.match(part) for part in parts):
            names.append((rank + 2, f"{'.'.join(parts)}.{where}"))
    return [(r, n) for r, n in names if len(n) <= _MAX_NAME_TEXT]


def mesh_names(entries: Iterable[ServiceVip], domain: str = DEFAULT_DOMAIN) -> NameSet:
    """Every DNS name the catalog entries answer to, with conflicts settled deterministically."""
    domain = domain.strip(".").lower()
    claims: list[tuple[int, str, str, str, str]] = []
    result = NameSet()
    for entry in entries:
        candidates = _candidates(entry, domain)
        if not candidates:
            where = "" if entry.zone is None else f" in zone {entry.zone!r}"
            result.skipped.append(f"{entry.service!r}{where}")
            continue
        for rank, name in candidates:
            claims.append((rank, entry.service, entry.zone or "", entry.vip, name))
    claims.sort()
    for _rank, _service, _zone, vip, name in claims:
        held = result.records.get(name)
        if held is None:
            result.records[name] = vip
        elif held != vip and name not in result.conflicts:
            result.conflicts.append(name)
    return result
