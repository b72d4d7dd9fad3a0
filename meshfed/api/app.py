"""The API application: resource routes from the registry plus the service endpoints
(`/`, `/_resources`, `/openapi.json`, `/metrics`, `/ready`, `/_watch`). Not specific to the
global side: a zone control plane builds the same app with `Mode.ZONE`. The KDS routes
(`/zones+insights`, `_overview`, `_sync`, `/_kds`) appear when the context carries their view."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed import PRODUCT, __version__
from meshfed.api.auth import ApiAuth
from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.dataplane_tokens import add_dataplane_token_routes
from meshfed.api.errors import ApiError, error_middleware
from meshfed.api.explain import add_explain_routes
from meshfed.api.federation import add_federation_routes
from meshfed.api.gui import add_gui_routes
from meshfed.api.insights import add_insight_routes
from meshfed.api.metrics import METRICS, ApiMetrics
from meshfed.api.openapi import openapi_document
from meshfed.api.policy_views import add_policy_view_routes
from meshfed.api.resources import add_resource_routes
from meshfed.api.routes import ROUTES, Operation, RouteTable, ref
from meshfed.api.rules import add_rules_route
from meshfed.api.services import add_services_routes
from meshfed.api.unsupported import add_unsupported_routes
from meshfed.api.user_tokens import add_user_token_routes
from meshfed.api.watch import add_watch_route
from meshfed.api.zone_tokens import add_zone_token_route
from meshfed.auth.credentials import Verifier
from meshfed.auth.tokens import TokenKind
from meshfed.resources.descriptors import KdsFlag, Mode, Scope

_STRING: dict[str, Any] = {"type": "string"}
INDEX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["product", "version", "instanceId", "mode", "hostname"],
    "properties": {
        "product": _STRING,
        "version": _STRING,
        "instanceId": _STRING,
        "mode": {"enum": [str(m) for m in Mode]},
        "hostname": _STRING,
        "zone": _STRING,
    },
}
RESOURCE_TYPES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resources"],
    "properties": {
        "resources": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "path", "scope", "readOnly", "owner", "kds", "shortNames"],
                "properties": {
                    "name": _STRING,
                    "path": _STRING,
                    "scope": {"enum": [str(s) for s in Scope]},
                    "readOnly": {"type": "boolean"},
                    "owner": {"enum": [str(m) for m in Mode]},
                    "kds": {"type": "array", "items": {"enum": [str(f) for f in KdsFlag]}},
                    "shortNames": {"type": "array", "items": _STRING},
                    "description": _STRING,
                },
            },
        }
    },
}
READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ready"}},
}


def build_app(ctx: ApiContext) -> web.Application:
    metrics = ApiMetrics()
    auth = ApiAuth(Verifier(ctx.store, TokenKind.USER), localhost_is_admin=ctx.localhost_is_admin)
    # Metrics outermost, so they see the status the error middleware produced; authentication
    # inside the error middleware, so its refusals are rendered as Kuma's errors.
    app = web.Application(
        middlewares=[metrics.middleware(), error_middleware, auth.middleware],
        client_max_size=ctx.max_body_bytes,
    )
    app[CONTEXT] = ctx
    app[METRICS] = metrics
    routes = RouteTable(app)
    app[ROUTES] = routes

    routes.add(
        Operation(
            "GET",
            "/",
            "getIndex",
            "Product, version, instance and mode of this control plane",
            "System",
            responses={200: ("Server information", INDEX_SCHEMA)},
        ),
        _index,
    )
    routes.add(
        Operation(
            "GET",
            "/_resources",
            "getResourceTypes",
            "The resource types this API serves",
            "System",
            responses={200: ("Type descriptors", RESOURCE_TYPES_SCHEMA)},
        ),
        _resources,
    )
    routes.add(
        Operation(
            "GET",
            "/ready",
            "getReady",
            "Readiness: the store is open and default resources exist",
            "System",
            responses={200: ("Ready", READY_SCHEMA), 503: ("Not ready", ref("Error"))},
        ),
        _ready,
    )
    routes.add(
        Operation(
            "GET",
            "/metrics",
            "getMetrics",
            "Prometheus metrics",
            "System",
            responses={200: ("Prometheus text format", None)},
        ),
        metrics.handle,
    )
    routes.add(
        Operation(
            "GET",
            "/openapi.json",
            "getOpenApi",
            "This document",
            "System",
            responses={200: ("OpenAPI 3.1 document", {"type": "object"})},
        ),
        _openapi,
    )
    if ctx.leader_status is not None:
        routes.add(
            Operation(
                "GET",
                "/_leader",
                "getLeader",
                "Whether this replica leads (runs the singleton jobs), who does, the live "
                "replicas and this replica's job counters",
                "System",
                responses={200: ("Leadership", {"type": "object"})},
            ),
            _leader,
        )
    add_resource_routes(routes, ctx)
    add_watch_route(routes)
    add_federation_routes(routes, ctx)
    add_insight_routes(routes, ctx)  # /global-insight, /meshes/{mesh}/dataplanes+insights
    add_services_routes(routes, ctx)
    add_explain_routes(routes, ctx)  # GET /meshes/{mesh}/_explain: why a call passes or not
    add_unsupported_routes(routes)
    add_policy_view_routes(routes, ctx)  # GUI views: policy types, zone x version, per dataplane
    add_rules_route(routes)  # GET /meshes/{mesh}/dataplanes/{name}/_rules: merged confs
    add_gui_routes(routes)  # /gui: the web GUI's static files
    if ctx.mode is Mode.GLOBAL:
        add_zone_token_route(routes)  # the zone-token signing keys live on the global only
    add_dataplane_token_routes(routes)
    add_user_token_routes(routes, ctx)
    for collector in ctx.collectors:
        metrics.registry.register(collector)

    async def on_shutdown(_: web.Application) -> None:
        ctx.closing.set()  # long-lived responses end now, not at the shutdown timeout

    app.on_shutdown.append(on_shutdown)
    return app


async def _index(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    return web.json_response(
        {
            "product": PRODUCT,
            "version": __version__,
            "instanceId": ctx.instance_id,
            "mode": str(ctx.mode),
            "hostname": ctx.hostname,
            **({"zone": ctx.zone} if ctx.zone else {}),
            **ctx.info,
        }
    )


async def _leader(request: web.Request) -> web.StreamResponse:
    status = request.app[CONTEXT].leader_status
    assert status is not None  # the route exists only then
    return web.json_response(await status())


async def _resources(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    return web.json_response({"resources": [d.to_json() for d in ctx.registry]})


async def _ready(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    if not ctx.ready:
        raise ApiError(503, "Service Unavailable", "starting: default resources not created yet")
    try:
        await ctx.store.revision()
    except Exception as exc:  # any store failure means "not ready", never a 500
        raise ApiError(503, "Service Unavailable", f"the store is not available: {exc}") from exc
    return web.json_response({"status": "ready"})


async def _openapi(request: web.Request) -> web.StreamResponse:
    doc = openapi_document(request.app[ROUTES], f"{PRODUCT} API", __version__)
    return web.json_response(doc)
