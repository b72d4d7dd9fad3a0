"""Idle keep-alive upstream connections, per endpoint.

A connection goes back to the pool only when its last exchange ended cleanly on both
sides (see proxy.py); it leaves when taken, when the upstream closes it, after
`IDLE_TIMEOUT` unused, or when the pool is closed. The most recently used one is taken
first, so a quiet period lets the others time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from mesh_dp.http.conn import Conn

IDLE_TIMEOUT = 30.0  # below the usual server keep-alive timeouts (nginx: 75s, Envoy: 1h)
MAX_IDLE_PER_ENDPOINT = 64


class Pool:
    def __init__(self, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._idle: dict[Hashable, list[Conn]] = {}
        self._timers: dict[Conn, asyncio.TimerHandle] = {}
        self.open = 0  # connections opened through this pool and not closed yet

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def take(self, key: Hashable) -> Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            timer = self._timers.pop(conn, None)
            if timer is not None:
                timer.cancel()
            if conn.reusable():
                return conn
            conn.close()
        return None

    def track(self, conn: Conn) -> None:
        """Counts a newly opened connection until it is lost."""
        self.open += 1
        conn.on_lost.append(self._lost)

    def _lost(self, conn: Conn) -> None:
        self.open -= 1
        self._drop(conn)

    def give(self, key: Hashable, conn: Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if not conn.reusable() or len(conns) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
            return
        conn.expect_nothing()
        conns.append(conn)
        loop = asyncio.get_running_loop()
        self._timers[conn] = loop.call_later(self.idle_timeout, self._expire, key, conn)

    def _expire(self, key: Hashable, conn: Conn) -> None:
        self._timers.pop(conn, None)
        conns = self._idle.get(key, [])
        if conn in conns:
            conns.remove(conn)
        conn.close()

    def _drop(self, conn: Conn) -> None:
        timer = self._timers.pop(conn, None)
        if timer is not None:
            timer.cancel()
        for conns in self._idle.values():
            if conn in conns:
                conns.remove(conn)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        for timer in self._timers.values():
            timer.cancel()
        self._idle.clear()
        self._timers.clear()
