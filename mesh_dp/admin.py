"""The admin HTTP endpoint of a proxy (mesh-dp and zone-ingress): JSON views and metrics.

It listens on loopback by default: it shows counters and the running config (without the
private key), and needs no authentication there.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from meshfed.config import Address

JsonView = Callable[[], Any]


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of the given collectors plus process metrics (RSS, CPU, open fds)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def _json_handler(view: JsonView) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body = view()
        status = 200
        if isinstance(body, tuple):
            status, body = body
        return web.Response(
            status=status,
            text=json.dumps(body, indent=2, sort_keys=True) + "\n",
            content_type="application/json",
        )

    return handle


class AdminServer:
    """GET routes: each JSON view at its path, and /metrics from `registry`. A view may
    return `(status, body)` to answer with another status (e.g. 503 from /ready)."""

    def __init__(
        self, address: Address, views: Mapping[str, JsonView], registry: CollectorRegistry
    ) -> None:
        self.address = address
        self._registry = registry
        self._app = web.Application()
        for path, view in views.items():
            self._app.router.add_get(path, _json_handler(view))
        self._app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None
        self.port = address.port

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        await site.start()
        addresses = self._runner.addresses  # the real port when asked for port 0
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
