"""The VIPs of one zone over time: which services hold one now, and which kept theirs after
they went away. Pure (no store, no clock of its own); zone_cp.services persists it.

`VipAllocator` gives each key a stable address and never reuses a freed one before its cursor
has gone round the range. On top of it a VipBook keeps the addresses of services that
disappeared *reserved* for them, so a Dataplane removed and registered again (a redeploy, a
zone-cp restart in between, a global outage) gets its old VIP back and clients holding the old
DNS answer still reach it. Reserved addresses are given up oldest first, and only when a new
service finds the range otherwise full or more than `retain_limit` are kept; giving one up
returns it to the allocator, whose cursor still hands it out last.

Keys are `VipKey(mesh, service, zone)`: one per service (`<service>.mesh`) and one per zone
that has it (`<service>.<zone>.mesh`). One allocator serves every mesh of the zone, so VIPs
are unique across meshes too.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from meshfed.dpconfig.catalog import VipKey
from meshfed.resources.types.vips import VipEntry, vip_entries, vips_spec
from zone_cp.vip_allocator import STATE_VERSION, VipAllocator, VipExhaustedError, service_key

log = logging.getLogger("zone_cp.vipbook")

# Reserved addresses kept at most; beyond, the oldest are returned to the allocator (which
# still hands them out only after the rest of the range). Bounds the persisted state.
RETAIN_LIMIT: Final = 10_000


@dataclass(slots=True)
class SyncResult:
    """What one `VipBook.sync` changed."""

    allocated: list[VipKey] = field(default_factory=list)  # new addresses
    revived: list[VipKey] = field(default_factory=list)  # came back to their reserved VIP
    reserved: list[VipKey] = field(default_factory=list)  # went away, address kept
    released: list[VipKey] = field(default_factory=list)  # address given up
    unallocated: list[VipKey] = field(default_factory=list)  # wanted, no free address

    @property
    def changed(self) -> bool:
        return bool(self.allocated or self.revived or self.reserved or self.released)


def _key(k: VipKey) -> str:
    return service_key(k.mesh, k.service, k.zone)


class VipBook:
    def __init__(
        self, cidr: str | ipaddress.IPv4Network, *, retain_limit: int = RETAIN_LIMIT
    ) -> None:
        self.allocator = VipAllocator(cidr)
        self.retain_limit = retain_limit
        self._keys: dict[str, VipKey] = {}  # every key holding an address
        self._active: set[str] = set()
        self._reserved: dict[str, str] = {}  # key -> since; insertion order = oldest first
        self.unallocated: list[VipKey] = []  # wanted at the last sync but without an address
        self.allocation_failures = 0  # every failed allocation, for a Prometheus counter

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.allocator.network

    def active(self) -> dict[VipKey, str]:
        """key -> VIP of what DNS should answer now."""
        out: dict[VipKey, str] = {}
        for key in self._active:
            vip = self.allocator.get(key)
            if vip is not None:
                out[self._keys[key]] = vip
        return out

    def reserved(self) -> list[tuple[VipKey, str, str]]:
        """(key, VIP, since) of the reserved addresses, oldest first."""
        out = []
        for key, since in self._reserved.items():
            vip = self.allocator.get(key)
            if vip is not None:
                out.append((self._keys[key], vip, since))
        return out

    def vip(self, key: VipKey) -> str | None:
        k = _key(key)
        return self.allocator.get(k) if k in self._active else None

    def sync(
        self, wanted: Iterable[VipKey], meshes: Container[str] | None = None, now: str = ""
    ) -> SyncResult:
        """Makes exactly `wanted` active. Keys that leave are reserved (`since` = `now`), or
        released when their mesh is gone (not in `meshes`). Returning keys get their reserved
        address; new keys get a fresh one, in sorted order so the result does not depend on
        iteration order. Never raises on exhaustion: such keys end in `unallocated`."""
        result = SyncResult()
        want = {_key(k): k for k in wanted}
        for key in sorted(self._active - want.keys()):
            self._active.discard(key)
            if meshes is not None and self._keys[key].mesh not in meshes:
                self._release(key, result)
            else:
                self._reserved[key] = now
                result.reserved.append(self._keys[key])
        if meshes is not None:
            for key in [k for k in self._reserved if self._keys[k].mesh not in meshes]:
                self._release(key, result)
        new = sorted(want.keys() - self._active)
        for key in new:  # returning keys first: a new one must not take their address
            if key in self._reserved:
                del self._reserved[key]
                self._active.add(key)
                result.revived.append(want[key])
        for key in new:
            if key not in self._active and self._allocate(key, want[key], result):
                self._active.add(key)
        while len(self._reserved) > self.retain_limit:
            self._release(next(iter(self._reserved)), result)
        self.unallocated = result.unallocated
        return result

    def _allocate(self, key: str, vip_key: VipKey, result: SyncResult) -> bool:
        while True:
            try:
                self.allocator.allocate(key)
            except VipExhaustedError:
                if not self._reserved:
                    self.allocation_failures += 1
                    result.unallocated.append(vip_key)
                    return False
                # The range is full: give up the longest-reserved address and try again.
                self._release(next(iter(self._reserved)), result)
                continue
            self._keys[key] = vip_key
            result.allocated.append(vip_key)
            return True

    def _release(self, key: str, result: SyncResult) -> None:
        self._reserved.pop(key, None)
        self._active.discard(key)
        self.allocator.release(key)
        result.released.append(self._keys.pop(key))

    # -- persistence -------------------------------------------------------------------------

    def to_specs(self) -> dict[str, dict[str, Any]]:
        """mesh -> VirtualIPs spec, for every mesh holding an address."""
        cursor = str(self.allocator.to_dict()["cursor"])
        per_mesh: dict[str, list[VipEntry]] = {}
        for k, vip in sorted(self.active().items(), key=lambda kv: _order(kv[0])):
            per_mesh.setdefault(k.mesh, []).append(VipEntry(k.service, k.zone, vip, True))
        for k, vip, since in self.reserved():
            per_mesh.setdefault(k.mesh, []).append(VipEntry(k.service, k.zone, vip, False, since))
        return {
            mesh: vips_spec(str(self.network), cursor, entries)
            for mesh, entries in sorted(per_mesh.items())
        }

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[tuple[str, Mapping[str, Any]]],
        cidr: str | ipaddress.IPv4Network,
        *,
        retain_limit: int = RETAIN_LIMIT,
    ) -> tuple[VipBook, list[str]]:
        """Restores a book from (mesh, spec) pairs, the most recently written last (its cursor
        wins). Returns the book and the problems found: entries outside `cidr` (the range
        changed) or claiming an address or key twice are dropped, never fatal."""
        book = cls(cidr, retain_limit=retain_limit)
        problems: list[str] = []
        net = book.network
        held: dict[str, tuple[VipKey, str]] = {}
        by_vip: dict[str, str] = {}
        reserved: list[tuple[str, str, str]] = []  # (since, key, mesh) for ordering
        active: set[str] = set()
        cursor: str | None = None
        for mesh, spec in specs:
            entries = vip_entries(dict(spec))
            text = spec.get("cursor")
            cursor = text if isinstance(text, str) else cursor
            for order, e in enumerate(entries):
                vk = VipKey(mesh, e.service, e.zone)
                key = _key(vk)
                if not _is_host(net, e.vip):
                    problems.append(f"{key}: {e.vip} is outside {net}; it gets a new VIP")
                    continue
                if key in held or e.vip in by_vip:
                    problems.append(f"{key}: {e.vip} is claimed twice; dropped")
                    continue
                held[key] = (vk, e.vip)
                by_vip[e.vip] = key
                if e.active:
                    active.add(key)
                else:
                    reserved.append((e.since, f"{order:09d}", key))
        state = {
            "version": STATE_VERSION,
            "cidr": str(net),
            "cursor": cursor if cursor and _is_host(net, cursor) else _after(net, by_vip),
            "assignments": {key: vip for key, (_, vip) in held.items()},
        }
        try:
            book.allocator = VipAllocator.from_dict(state)
        except ValueError as exc:  # not expected after the checks above; start clean
            problems.append(f"VIP state unusable, starting afresh: {exc}")
            return cls(cidr, retain_limit=retain_limit), problems
        book._keys = {key: vk for key, (vk, _) in held.items()}
        book._active = active
        # Reserved oldest first by their time; persisted order breaks ties within a mesh.
        book._reserved = {key: since for since, _, key in sorted(reserved)}
        return book, problems


def _order(key: VipKey) -> tuple[str, str, str]:
    return (key.mesh, key.service, key.zone or "")


def _is_host(net: ipaddress.IPv4Network, text: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return ip in net and ip not in (net.network_address, net.broadcast_address)


def _after(net: ipaddress.IPv4Network, held: Iterable[str]) -> str:
    """Where to continue without a stored cursor: after the highest held address."""
    first = int(net.network_address) + 1
    size = net.num_addresses - 2
    offsets = [int(ipaddress.IPv4Address(v)) - first for v in held]
    offset = (max(offsets) + 1) % size if offsets else 0
    return str(ipaddress.IPv4Address(first + offset))
