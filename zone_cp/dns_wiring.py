"""Zone DNS inside zone-cp: the names a zone answers for every mesh, and the server's lifecycle.

One DNS server per zone answers for all meshes, so names must say which mesh they mean
(Kuma runs one resolver per dataplane and needs no mesh in the name). The mapping:

- mesh `default`: `<service>.mesh` and `<service>.<zone>.mesh` (Kuma's names);
- any other mesh M: `<service>.M.meshes.mesh` and `<service>.<zone>.M.meshes.mesh`.

The primary names of the four forms have 1, 2, 3 and 4 labels before `.mesh`, so no zone,
mesh or service name can make two of them collide. Only the `_` → `.` variants of service
names can land on another name; primary names always win, then mesh `default`, then the rest
in a fixed order (`zone_cp.dns.names` settles ties inside a mesh), so every restart builds the
same table. Meshes whose names are not one DNS label (they may contain dots) are skipped and
logged.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Final

from meshfed.config import Address
from meshfed.dpconfig.catalog import VipKey
from zone_cp.dns import (
    DnsServer,
    DnsStatsCollector,
    DnsTable,
    NameSet,
    ServiceVip,
    Upstream,
    parse_address,
)
from zone_cp.dns.answers import DEFAULT_DOMAIN
from zone_cp.dns.names import mesh_names
from zone_cp.dns.server import DEFAULT_TCP_IDLE_TIMEOUT
from zone_cp.dns.upstream import DEFAULT_TIMEOUT

log = logging.getLogger("zone_cp.dns")

DEFAULT_MESH: Final = "default"
MESHES_LABEL: Final = "meshes"
_MESH_LABEL: Final = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")


def mesh_domain(mesh: str) -> str | None:
    """The DNS domain of a mesh's services, or None when the mesh name is not a label."""
    if mesh == DEFAULT_MESH:
        return DEFAULT_DOMAIN
    if not _MESH_LABEL.match(mesh):
        return None
    return f"{mesh}.{MESHES_LABEL}.{DEFAULT_DOMAIN}"


def service_name(key: VipKey) -> str | None:
    """The primary DNS name of a VIP key (`backend.zone-2.mesh`), None if it has none."""
    domain = mesh_domain(key.mesh)
    if domain is None:
        return None
    where = domain if key.zone is None else f"{key.zone.lower()}.{domain}"
    return f"{key.service.lower()}.{where}"


def zone_names(vips: Mapping[VipKey, str]) -> NameSet:
    """Every name the zone answers, from the active VIPs of all meshes."""
    per_mesh: dict[str, list[tuple[VipKey, str]]] = {}
    for key, vip in vips.items():
        per_mesh.setdefault(key.mesh, []).append((key, vip))
    result = NameSet()
    claims: list[tuple[int, bool, str, str, str]] = []
    for mesh, items in sorted(per_mesh.items()):
        domain = mesh_domain(mesh)
        if domain is None:
            result.skipped.append(f"mesh {mesh!r} (its name is not a DNS label)")
            continue
        names = mesh_names((ServiceVip(k.service, k.zone, vip) for k, vip in items), domain)
        result.skipped += names.skipped
        result.conflicts += names.conflicts
        primary = {service_name(k) for k, _ in items}
        for name, vip in names.records.items():
            claims.append((0 if name in primary else 1, mesh != DEFAULT_MESH, mesh, name, vip))
    for _rank, _other, _mesh, name, vip in sorted(claims):
        held = result.records.get(name)
        if held is None:
            result.records[name] = vip
        elif held != vip and name not in result.conflicts:
            result.conflicts.append(name)
    return result


# MeshService hostnames (issue 17, Kuma's `*.svc.mesh.local`, zone_cp.hostnames) live in a
# second domain beside `mesh`, answered by the same server.
LOCAL_DOMAIN: Final = "mesh.local"


def _under_local(name: str) -> bool:
    return name == LOCAL_DOMAIN or name.endswith("." + LOCAL_DOMAIN)


def names_by_vip(names: NameSet) -> dict[str, list[str]]:
    """VIP -> the names answering with it, sorted (for the services API)."""
    out: dict[str, list[str]] = {}
    for name, vip in sorted(names.records.items()):
        out.setdefault(vip, []).append(name)
    return out


class ZoneDns:
    """The zone's DnsServer: started on `address`, its table replaced on every catalog change."""

    def __init__(
        self,
        address: Address,
        upstream: tuple[str, int] | None = None,
        *,
        upstream_timeout: float = DEFAULT_TIMEOUT,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
    ) -> None:
        self._address = address
        self._forwarding = upstream is not None
        self.server = DnsServer(
            DnsTable([], forwarding=self._forwarding),
            upstream=None if upstream is None else Upstream(*upstream, timeout=upstream_timeout),
            tcp_idle_timeout=tcp_idle_timeout,
        )
        self._reported: tuple[list[str], list[str]] = ([], [])
        self._names: NameSet | None = None  # of the last update

    @property
    def address(self) -> Address:
        host, port = self.server.address
        return Address(host, port)

    async def start(self, names: NameSet) -> Address:
        self.update(names)
        try:
            await self.server.start(self._address.host, self._address.port)
        except OSError as exc:
            raise OSError(
                f"cannot serve DNS on {self._address} (UDP and TCP): {exc.strerror or exc}; "
                "choose another --dns-address"
            ) from exc
        return self.address

    def update(self, names: NameSet) -> None:
        """Swaps in a table for `names` (one assignment: queries see the old or the new); the
        very NameSet of the last update (a catalog change that moved no VIP) costs nothing."""
        if names is self._names:
            return
        self._names = names
        local = [(n, v) for n, v in names.pairs() if _under_local(n)]
        pairs = [(n, v) for n, v in names.pairs() if not _under_local(n)]
        try:
            also = DnsTable(local, domain=LOCAL_DOMAIN, forwarding=self._forwarding)
            table = DnsTable(pairs, forwarding=self._forwarding, also=also)
        except ValueError as exc:  # a name DNS cannot carry: keep answering the old table
            log.error("DNS table not updated: %s", exc)
            return
        self.server.table = table
        reported = (sorted(names.skipped), sorted(names.conflicts))
        if reported != self._reported:
            self._reported = reported
            if names.skipped:
                log.warning("no DNS name for: %s", ", ".join(reported[0]))
            if names.conflicts:
                log.warning("DNS names claimed twice (kept one): %s", ", ".join(reported[1]))

    def collector(self) -> DnsStatsCollector:
        return DnsStatsCollector(self.server)

    async def close(self) -> None:
        await self.server.close()


# -- option parsers (zone_cp.settings) -----------------------------------------------------------


def parse_upstream(value: object) -> tuple[str, int] | None:
    """`--dns-upstream`: HOST[:PORT] (port 53 by default); empty means none (non-`.mesh`
    names are REFUSED)."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    return parse_address(text, 53)


def parse_vip_cidr(value: object) -> ipaddress.IPv4Network:
    """`--vip-cidr`: an IPv4 network of at least 4 addresses (host bits must be zero)."""
    text = str(value).strip() if value is not None else ""
    try:
        network = ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise ValueError(f"expected an IPv4 network such as 127.1.0.0/16: {exc}") from None
    if network.prefixlen > 30:
        raise ValueError("the range is too small: use /30 or larger")
    return network
