"""The admin HTTP endpoint of a proxy (mesh-dp and zone-ingress): JSON views and metrics.

It listens on loopback by default: it shows counters and the running config (without the
private key), and needs no authentication there.

Hand-written on asyncio rather than aiohttp: it only answers a few GETs, one per connection,
and aiohttp's import alone costs a proxy about 11 MiB of its memory budget (see
docs/benchmarks.md, mesh-dp RSS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from meshfed.aio import wait_for
from meshfed.config import Address
from meshfed.proxy.promtext import CONTENT_TYPE, Collector, Registry

log = logging.getLogger("meshfed.proxy.admin")

JsonView = Callable[[], Any]
MAX_REQUEST = 8192
READ_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def metrics_registry(*collectors: Collector) -> Registry:
    """A registry of the given collectors plus process metrics (RSS, CPU, open fds)."""
    return Registry(*collectors)


class AdminServer:
    """GET routes: each JSON view at its path, and /metrics from `registry`. A view may
    return `(status, body)` to answer with another status (e.g. 503 from /ready)."""

    def __init__(self, address: Address, views: Mapping[str, JsonView], registry: Registry) -> None:
        self.address = address
        self._views = dict(views)
        self._registry = registry
        self._server: asyncio.Server | None = None
        self.port = address.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.address.host, self.address.port, limit=MAX_REQUEST
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; pure, so it is tested directly."""
        if method != "GET":
            return 405, "text/plain", b"only GET is served here\n"
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE, self._registry.render()
        view = self._views.get(path)
        if view is None:
            known = ", ".join(sorted([*self._views, "/metrics"]))
            return 404, "text/plain", f"unknown path {path}; try {known}\n".encode()
        body = view()
        status = 200
        if isinstance(body, tuple):
            status, body = body
        text = json.dumps(body, indent=2, sort_keys=True) + "\n"
        return status, "application/json", text.encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) == 3 and parts[2].startswith("HTTP/1."):
                status, kind, body = self.answer(parts[0], parts[1])
            else:
                status, kind, body = 400, "text/plain", b"not an HTTP/1.x request\n"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass  # a client that left or sent nonsense: nothing to answer
        except Exception:  # a failing view must not take the endpoint down
            log.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
