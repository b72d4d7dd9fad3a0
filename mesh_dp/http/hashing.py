"""Hash-based endpoint choice: MeshLoadBalancingStrategy `RingHash` and `Maglev` with their
`hashPolicies` (https://kuma.io/docs/latest/policies/meshloadbalancingstrategy/), as Envoy
computes them. Pure: no sockets, no clock.

- `request_hash` walks the hash policies in order (Envoy's rule): each that finds its input
  (a header, a cookie, a query parameter, the caller's address for `Connection.sourceIP`)
  folds its hash into the key (rotate left by one, xor); a `terminal` policy that found its
  input ends the walk. No input at all: no key, and the balancer picks at random (Envoy).
- `Ring` (Karger's consistent hashing, Envoy's ring_hash): each endpoint owns points on a
  64-bit ring in proportion to its weight, at least `minRingSize` points in all and at most
  `maxRingSize`; a key goes to the first point at or after it.
- `Maglev` (Eisenbud et al., NSDI 2016, weighted as Envoy does): a lookup table of
  `tableSize` (a prime) entries filled from each endpoint's permutation; a key goes to
  `table[key % size]`. Fewer keys move than with a ring when endpoints change.

The hash function is BLAKE2b cut to 64 bits (hashlib, stable across processes and runs),
not xxHash: the standard library has no xxHash, and what matters here is a stable, well
spread 64-bit hash, since no other proxy shares these rings. `hashFunction: XXHash` (Kuma's
default) is accepted as "the default stable hash"; `MurmurHash2` is refused by the API.

When the chosen endpoint was already tried for this request (a retry), the walk moves on to
the next point (ring) or entry (table) owned by another endpoint.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import hashlib
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlsplit

from mesh_dp.http.parse import RequestHead
from meshfed.dpconfig.model import HashConf, HashPolicy

MASK64 = 2**64 - 1

# The caller's address for the connection the current task serves (an outbound serves each
# HTTP connection in its own task), what `Connection: {sourceIP: true}` hashes.
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


def peer_host(transport: asyncio.BaseTransport | None) -> str | None:
    """The caller's IP address of an accepted connection."""
    peer = None if transport is None else transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def stable_hash(data: bytes) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _cookie(head: RequestHead, name: str) -> bytes | None:
    wanted = name.encode()
    for key, value in head.headers:
        if key.lower() != b"cookie":
            continue
        for part in value.split(b";"):
            k, sep, v = part.strip().partition(b"=")
            if sep and k == wanted:
                return v.strip(b'"')
    return None


def _query(head: RequestHead, name: str) -> bytes | None:
    query = urlsplit(head.target.decode("latin-1")).query
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == name:
            return v.encode()
    return None


def _input(policy: HashPolicy, head: RequestHead | None, source: str | None) -> bytes | None:
    if policy.type == "Connection":
        return source.encode() if policy.source_ip and source else None
    if head is None:
        return None  # TCP: only the connection's properties exist
    if policy.type == "Header":
        values = [v for k, v in head.headers if k.lower() == policy.name.lower().encode()]
        return b",".join(values) if values else None
    if policy.type == "Cookie":
        return _cookie(head, policy.name)
    return _query(head, policy.name)


def request_hash(
    policies: Sequence[HashPolicy], head: RequestHead | None, source: str | None
) -> int | None:
    """The request's key under `policies`; None when no policy found its input."""
    key: int | None = None
    for policy in policies:
        data = _input(policy, head, source)
        if data is None:
            continue
        h = stable_hash(data)
        key = h if key is None else (((key << 1) | (key >> 63)) & MASK64) ^ h
        if policy.terminal:
            break
    return key


Eligible = Callable[[int], bool]


class Ring:
    """Endpoints (by index into `names`) on a hash ring."""

    def __init__(self, names: Sequence[str], weights: Sequence[int], conf: HashConf) -> None:
        total = sum(max(1, w) for w in weights)
        size = max(conf.min_ring_size, len(names))
        size = min(size, max(conf.max_ring_size, len(names)))
        points: list[tuple[int, int]] = []
        for i, (name, weight) in enumerate(zip(names, weights, strict=True)):
            count = max(1, round(size * max(1, weight) / total))
            points += [(stable_hash(f"{name}_{n}".encode()), i) for n in range(count)]
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]

    def __len__(self) -> int:
        return len(self._hashes)

    def lookup(self, key: int, eligible: Eligible) -> int | None:
        if not self._hashes:
            return None
        start = bisect.bisect_left(self._hashes, key)
        n = len(self._owners)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if eligible(owner):
                return owner
        return None


class Maglev:
    """Endpoints (by index into `names`) in a Maglev lookup table."""

    def __init__(self, names: Sequence[str], weights: Sequence[int], conf: HashConf) -> None:
        size = conf.table_size
        table = [-1] * size
        n = len(names)
        if n:
            offsets = [stable_hash(b"o" + name.encode()) % size for name in names]
            skips = [stable_hash(b"s" + name.encode()) % max(1, size - 1) + 1 for name in names]
            top = max(max(1, w) for w in weights)
            norm = [max(1, w) / top for w in weights]
            target = list(norm)
            nxt = [0] * n
            filled = 0
            iteration = 1
            while filled < size:
                for i in range(n):
                    if filled >= size:
                        break
                    if iteration * norm[i] < target[i]:
                        continue  # a lighter endpoint skips some rounds
                    target[i] += 1.0
                    slot = _next_free(table, offsets[i], skips[i], nxt, i)
                    table[slot] = i
                    filled += 1
                iteration += 1
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, key: int, eligible: Eligible) -> int | None:
        size = len(self._table)
        start = key % size
        for step in range(size):
            owner = self._table[(start + step) % size]
            if owner >= 0 and eligible(owner):
                return owner
        return None


def _next_free(table: list[int], offset: int, skip: int, nxt: list[int], i: int) -> int:
    """The endpoint's next free slot in its permutation (every slot once when the size is
    prime; a linear scan otherwise, so a non-prime size from a static config still ends)."""
    size = len(table)
    while nxt[i] < size:
        slot = (offset + nxt[i] * skip) % size
        nxt[i] += 1
        if table[slot] < 0:
            return slot
    return table.index(-1)


HashTable = Ring | Maglev
