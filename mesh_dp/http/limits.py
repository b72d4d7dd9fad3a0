"""MeshCircuitBreaker `connectionLimits` of HTTP requests, with Envoy's meaning, per outbound.

- `maxRequests`: requests in flight to the service at once (`try_acquire_request`).
- `maxPendingRequests`: requests waiting for an upstream connection because
  `maxConnections` are open (`wait_pending`); a pending request waits at most the outbound's
  connectionTimeout, then fails as a connect timeout would.
- `maxRetries`: MeshRetry retries in flight at once. The request pipeline (proxy.py) calls
  `try_acquire_retry()` when it decides to retry (False: do not retry, answer with what the
  last attempt got) and `release_retry()` when that attempt ends.
- `maxConnectionPools`: endpoints with open connections at once (`pools_full`).
- `maxConnections` itself is counted by the pool (mesh_dp/http/pool.py).

Over another limit the sidecar answers 503 with `x-meshfed-error: circuit-open` (mesh_dp/http/
errors.py) and counts it in `overflows`. Counters only: the caller pairs each acquire with
its release (try/finally).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from meshfed.aio import wait_for
from meshfed.dpconfig.model import UINT32


@dataclass(frozen=True, slots=True)
class Caps:
    max_pending_requests: int = UINT32
    max_requests: int = UINT32
    max_retries: int = UINT32
    max_connection_pools: int = UINT32


class Limits:
    def __init__(self, caps: Caps | None = None) -> None:
        self.caps = caps or Caps()
        self.requests = 0
        self.pending = 0
        self.retries = 0
        self.overflows = 0  # requests refused by a limit
        self._freed: asyncio.Event | None = None

    def try_acquire_request(self) -> bool:
        if self.requests >= self.caps.max_requests:
            self.overflows += 1
            return False
        self.requests += 1
        return True

    def release_request(self) -> None:
        self.requests -= 1

    def try_acquire_retry(self) -> bool:
        if self.retries >= self.caps.max_retries:
            self.overflows += 1
            return False
        self.retries += 1
        return True

    def release_retry(self) -> None:
        self.retries -= 1

    def pools_full(self, open_pools: int, has_pool: bool) -> bool:
        """A connection to a new endpoint would exceed `maxConnectionPools`."""
        full = not has_pool and open_pools >= self.caps.max_connection_pools
        if full:
            self.overflows += 1
        return full

    def freed(self) -> None:
        """A connection went back to the pool or closed: wake the pending requests."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    async def wait_pending(self, timeout: float) -> bool:
        """Waits (as a pending request) until a connection is freed. False at once when
        `maxPendingRequests` are already waiting; raises TimeoutError after `timeout`."""
        if self.pending >= self.caps.max_pending_requests:
            self.overflows += 1
            return False
        if self._freed is None:
            self._freed = asyncio.Event()
        event = self._freed
        self.pending += 1
        try:
            await wait_for(event.wait(), timeout)
        finally:
            self.pending -= 1
        return True
