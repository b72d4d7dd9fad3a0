"""VIP allocation for one zone: a stable IPv4 address per service key, from a CIDR.

Stability is the point (Kuma's issue #13592 was VIPs reshuffled on every reconnect, which
changed DNS answers under running clients): a key keeps its address for as long as it exists,
and the allocator's whole state round-trips through a JSON-able dict so zone-cp can persist it.
A freed address is not handed out again until the cursor has gone round the whole range, so a
client holding a stale answer for a removed service does not reach a new one by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Final

from meshfed.vip_ranges import DEFAULT_VIP_CIDR

STATE_VERSION: Final = 1


class VipExhaustedError(Exception):
    """Every address of the range is in use: the caller must free some or widen the CIDR."""


def service_key(mesh: str, service: str, zone: str | None = None) -> str:
    """Allocation key: one VIP per mesh and service, and one more per zone-pinned name."""
    return f"{mesh}/{service}" if zone is None else f"{mesh}/{service}/{zone}"


def _network(cidr: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError as exc:
        raise ValueError(f"VIP CIDR {str(cidr)!r} is not an IPv4 network: {exc}") from None
    if network.prefixlen > 30:
        raise ValueError(f"VIP CIDR {network} is too small: use /30 or larger")
    return network


class VipAllocator:
    """Stable key → VIP assignments within one CIDR (network and broadcast excluded).

    Allocation walks a cursor forward from the last address given out, wrapping at the end of
    the range and skipping addresses in use; only a full circle without a free address is
    exhaustion. Never returns an address that another key holds.
    """

    def __init__(self, cidr: str | ipaddress.IPv4Network = DEFAULT_VIP_CIDR) -> None:
        self.network = _network(cidr)
        self._first = int(self.network.network_address) + 1
        self._size = self.network.num_addresses - 2
        self._by_key: dict[str, int] = {}  # key → offset from _first
        self._in_use: set[int] = set()
        self._cursor = 0  # offset tried first by the next allocation

    @property
    def capacity(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def get(self, key: str) -> str | None:
        offset = self._by_key.get(key)
        return None if offset is None else self._ip(offset)

    def assignments(self) -> dict[str, str]:
        return {key: self._ip(offset) for key, offset in self._by_key.items()}

    def _ip(self, offset: int) -> str:
        return str(ipaddress.IPv4Address(self._first + offset))

    def allocate(self, key: str) -> str:
        """The VIP of `key`, assigning the next free address if it has none."""
        offset = self._by_key.get(key)
        if offset is not None:
            return self._ip(offset)
        if len(self._in_use) >= self._size:
            raise VipExhaustedError(
                f"no free VIP in {self.network} for {key!r}: all {self._size} addresses in use"
            )
        offset = self._cursor
        while offset in self._in_use:  # terminates: at least one offset is free
            offset = (offset + 1) % self._size
        self._by_key[key] = offset
        self._in_use.add(offset)
        self._cursor = (offset + 1) % self._size
        return self._ip(offset)

    def release(self, key: str) -> str | None:
        """Frees the VIP of `key` (returned), or None if it had none."""
        offset = self._by_key.pop(key, None)
        if offset is None:
            return None
        self._in_use.discard(offset)
        return self._ip(offset)

    def sync(self, keys: Iterable[str]) -> dict[str, str]:
        """Makes the assignments exactly `keys`: frees the others, allocates new ones in sorted
        order (so the result does not depend on iteration order). Returns key → VIP.

        Raises VipExhaustedError only after freeing: the keys allocated before the error keep
        their addresses.
        """
        wanted = set(keys)
        for key in [k for k in self._by_key if k not in wanted]:
            self.release(key)
        for key in sorted(wanted - self._by_key.keys()):
            self.allocate(key)
        return self.assignments()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; `from_dict` restores it exactly."""
        return {
            "version": STATE_VERSION,
            "cidr": str(self.network),
            "cursor": self._ip(self._cursor),
            "assignments": dict(sorted(self.assignments().items())),
        }

    @classmethod
    def from_dict(
        cls, state: Mapping[str, Any], cidr: str | ipaddress.IPv4Network | None = None
    ) -> VipAllocator:
        """Restores persisted state; ValueError on anything inconsistent.

        With `cidr` different from the stored one (the operator changed `--vip-cidr`), keys
        whose VIP lies in the new range keep it and the others are dropped, to be allocated
        again from the new range.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"VIP state version {state.get('version')!r} is not supported")
        stored = _network(str(state.get("cidr")))
        allocator = cls(stored if cidr is None else cidr)
        changed = allocator.network != stored
        assignments = state.get("assignments")
        if not isinstance(assignments, Mapping):
            raise ValueError("VIP state: 'assignments' must be an object of key -> IPv4")
        for key, ip in assignments.items():
            if not isinstance(key, str) or not isinstance(ip, str):
                raise ValueError(f"VIP state: bad assignment {key!r} -> {ip!r}")
            offset = allocator._offset(ip)
            if offset is None:
                if changed:
                    continue
                raise ValueError(f"VIP state: {ip} of {key!r} is not a host of {stored}")
            if offset in allocator._in_use:
                raise ValueError(f"VIP state: {ip} is assigned twice")
            allocator._by_key[key] = offset
            allocator._in_use.add(offset)
        cursor = allocator._offset(str(state.get("cursor")))
        if cursor is None:
            if not changed:
                raise ValueError(f"VIP state: cursor {state.get('cursor')!r} is outside {stored}")
            cursor = (max(allocator._in_use) + 1) % allocator._size if allocator._in_use else 0
        allocator._cursor = cursor
        return allocator

    def _offset(self, ip: str) -> int | None:
        """Offset of a host address of our range, or None for anything else."""
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return None
        offset = value - self._first
        return offset if 0 <= offset < self._size else None
