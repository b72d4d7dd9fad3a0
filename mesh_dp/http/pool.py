"""Idle keep-alive upstream connections, per endpoint.

A connection goes back to the pool only when its last exchange ended cleanly on both
sides (see proxy.py); it leaves when taken, when the upstream closes it, after
`IDLE_TIMEOUT` unused, or when the pool is closed.

`spread`: another zone's ingress passes each TLS connection whole to one instance behind
it, so one pooled connection would pin every request to one instance. For such an endpoint
the pool opens up to `spread` connections (its weight: the instances behind it) before
reusing any, and reuses the idle ones in turn (oldest first), so requests go round the
instances as a new connection per request would have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable

from mesh_dp.http.conn import Conn

IDLE_TIMEOUT = 30.0  # below the usual server keep-alive timeouts (nginx: 75s, Envoy: 1h)
MAX_IDLE_PER_ENDPOINT = 64


class Pool:
    """Idle connections expire by one sweep timer per pool, not a timer per connection (a
    connection goes in and out of the pool once per request)."""

    def __init__(self, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._idle: dict[Hashable, list[Conn]] = {}
        self._since: dict[Conn, float] = {}  # idle connection -> when it went idle
        self._sweep: asyncio.TimerHandle | None = None
        self.open = 0  # connections opened through this pool and not closed yet
        self._open_by_key: dict[Hashable, int] = {}
        self.on_free: Callable[[], None] | None = None  # a connection is idle or closed

    @property
    def pools(self) -> int:
        """Endpoints with open connections (MeshCircuitBreaker maxConnectionPools)."""
        return len(self._open_by_key)

    def has(self, key: Hashable) -> bool:
        return key in self._open_by_key

    def _freed(self) -> None:
        if self.on_free is not None:
            self.on_free()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def take(self, key: Hashable, spread: int = 1) -> Conn | None:
        """An idle connection to `key`, or None: open a new one."""
        if self._open_by_key.get(key, 0) < spread:
            return None
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop(0)
            self._since.pop(conn, None)
            if conn.reusable():
                return conn
            conn.close()
        return None

    def track(self, key: Hashable, conn: Conn) -> None:
        """Counts a newly opened connection until it is lost."""
        self.open += 1
        self._open_by_key[key] = self._open_by_key.get(key, 0) + 1

        def lost(conn: Conn) -> None:
            self.open -= 1
            left = self._open_by_key[key] - 1
            if left:
                self._open_by_key[key] = left
            else:
                del self._open_by_key[key]
            self._drop(conn)
            self._freed()

        conn.on_lost.append(lost)

    def give(self, key: Hashable, conn: Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if not conn.reusable() or len(conns) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
            return
        conn.expect_nothing()
        conns.append(conn)
        self._since[conn] = time.monotonic()
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self.idle_timeout, self._expire)
        self._freed()

    def evict_idle(self) -> bool:
        """Closes one idle connection (to any endpoint), making room under maxConnections
        for a connection to another; False when none is idle."""
        for conns in self._idle.values():
            if conns:
                conn = conns.pop(0)
                self._since.pop(conn, None)
                conn.close()
                return True
        return False

    def _expire(self) -> None:
        """Closes the connections idle for `idle_timeout`; re-arms for the next one."""
        self._sweep = None
        now = time.monotonic()
        for conns in self._idle.values():
            for conn in [c for c in conns if self._since.get(c, now) + self.idle_timeout <= now]:
                conns.remove(conn)
                self._since.pop(conn, None)
                conn.close()
        if self._since:
            first = min(self._since.values())
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(max(0.0, first + self.idle_timeout - now), self._expire)

    def _drop(self, conn: Conn) -> None:
        self._since.pop(conn, None)
        for conns in self._idle.values():
            if conn in conns:
                conns.remove(conn)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        self._since.clear()
