"""Prometheus metrics for the API: requests by route, method and status; latency; resources.

Each app gets its own CollectorRegistry, so several apps (tests, a zone and a global in one
process) never clash on metric names.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from meshfed.api.ca_expiry import CaExpiry
from meshfed.api.context import CONTEXT

# Methods outside this set share one label value: clients cannot grow the series count.
_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meshfed_api_requests",
            "API requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meshfed_api_request_duration_seconds",
            "API request latency by route template and method.",
            ["route", "method"],
            registry=self.registry,
        )
        self.resources = Gauge(
            "meshfed_resources",
            "Stored resources by type (counted when scraped).",
            ["type"],
            registry=self.registry,
        )
        self.ca_expiry = CaExpiry(self.registry)

    def middleware(self) -> Any:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            start = time.perf_counter()
            status = 500
            try:
                response: web.StreamResponse = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                # The template, not the path: one series per route, not one per resource name.
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                method = request.method if request.method in _METHODS else "other"
                self.requests.labels(route, method, str(status)).inc()
                self.latency.labels(route, method).observe(time.perf_counter() - start)

        return record

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        for desc in ctx.registry:
            page = await ctx.store.list(desc.name, None, size=1)
            self.resources.labels(desc.name).set(page.total)
        await self.ca_expiry.refresh(ctx.store, ctx.pinned_cas)
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


METRICS: web.AppKey[ApiMetrics] = web.AppKey("meshfed_api_metrics", ApiMetrics)
