"""KDS status routes: zone overviews and `_sync` on the global, `/_kds` on a zone.

The data comes from the composition root (ApiContext.federation / kds_status); these
handlers only page, look up and render, so the API stays free of KDS internals.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.paging import next_url, page_params
from meshfed.api.resources import LIST_QUERY
from meshfed.api.routes import RESOURCE_PATH, Handler, Operation, RouteTable, ref
from meshfed.resources.descriptors import KdsFlag, Scope, TypeDescriptor
from meshfed.resources.types.zone import ZONE

_ERROR = ref("Error")
_OBJECT: dict[str, Any] = {"type": "object"}
_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["total", "items", "next"],
    "properties": {
        "total": {"type": "integer"},
        "items": {"type": "array", "items": _OBJECT},
        "next": {"type": ["string", "null"], "format": "uri"},
    },
}


def add_federation_routes(routes: RouteTable, ctx: ApiContext) -> None:
    if ctx.federation is not None:
        _add_global_routes(routes, ctx)
    if ctx.kds_status is not None:
        routes.add(
            Operation(
                "GET",
                "/_kds",
                "getKdsStatus",
                "This zone's KDS connection to the global and per-type sync counters",
                "KDS",
                responses={200: ("KDS status", _OBJECT)},
            ),
            _kds_status,
        )


def _add_global_routes(routes: RouteTable, ctx: ApiContext) -> None:
    routes.add(
        Operation(
            "GET",
            "/zones+insights",
            "listZoneOverviews",
            "Every zone with its KDS connection and sync state (ZoneOverview)",
            "KDS",
            LIST_QUERY,
            responses={200: ("A page of ZoneOverview", _PAGE), 400: ("Bad query", _ERROR)},
        ),
        _zone_overviews,
    )
    routes.add(
        Operation(
            "GET",
            "/zones/{name}/_overview",
            "getZoneOverview",
            "One zone with its KDS connection and sync state",
            "KDS",
            responses={200: ("ZoneOverview", _OBJECT), 404: ("No such zone", _ERROR)},
            path_schemas=RESOURCE_PATH,
        ),
        _zone_overview,
    )
    for desc in ctx.registry:
        if not desc.kds & {KdsFlag.GLOBAL_TO_ZONE, KdsFlag.SYNCED_ACROSS_ZONES}:
            continue
        if desc.scope is Scope.MESH:
            path = f"/meshes/{{mesh}}/{desc.plural}/{{name}}/_sync"
        else:
            path = f"/{desc.plural}/{{name}}/_sync"
        routes.add(
            Operation(
                "GET",
                path,
                f"get{desc.name}Sync",
                f"Which zones hold which version of this {desc.name}",
                "KDS",
                responses={200: ("Sync status", _OBJECT), 404: ("Not found", _ERROR)},
                path_schemas=RESOURCE_PATH,
            ),
            _sync_handler(desc),
        )


async def _zone_overviews(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.federation is not None
    params = page_params(request.query)
    page = await ctx.store.list(
        ZONE.name, None, name_contains=params.name, size=params.size, offset=params.offset
    )
    items = [await ctx.federation.zone_overview(zone) for zone in page.items]
    return web.json_response(
        {"total": page.total, "items": items, "next": next_url(request, page.next_offset)}
    )


async def _zone_overview(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.federation is not None
    zone = await ctx.store.get(ZONE.name, "", request.match_info["name"])
    return web.json_response(await ctx.federation.zone_overview(zone))


def _sync_handler(desc: TypeDescriptor) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        assert ctx.federation is not None
        res = await ctx.store.get(
            desc.name, request.match_info.get("mesh", ""), request.match_info["name"]
        )
        return web.json_response(await ctx.federation.sync_status(desc, res))

    return handle


async def _kds_status(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.kds_status is not None
    return web.json_response(ctx.kds_status())
