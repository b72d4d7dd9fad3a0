"""`GET /meshes/{mesh}/_explain?from=web&to=backend[&zone=zone-1]`: why a call passes or not.

A thin adapter: it reads what this control plane's store holds of the mesh and hands it to
`meshfed.dpconfig.explain`. The global holds every zone's Dataplanes, insights, ingresses and
VIPs, so it explains a call from any zone; a zone-cp explains calls from its own zone, with
what it knows of the others (the ingresses the global relays). No proxy is asked.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.errors import bad_request
from meshfed.api.policy_views import policy_types
from meshfed.api.routes import RESOURCE_PATH, Operation, QueryParam, RouteTable, ref
from meshfed.dpconfig.explain import HOPS, Inventory, explain
from meshfed.resources.model import Resource
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.vips import VIRTUAL_IPS
from meshfed.resources.types.zone_ingress import ZONE_INGRESS

_STR = {"type": "string"}
EXPLAIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mesh", "from", "to", "zone", "ok", "brokenHop", "hops"],
    "properties": {
        "mesh": _STR,
        "from": _STR,
        "to": _STR,
        "zone": {"type": ["string", "null"]},
        "ok": {"type": "boolean"},
        "brokenHop": {"type": ["string", "null"], "enum": [*HOPS, None]},
        "hops": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["hop", "verdict", "detail"],
                "properties": {
                    "hop": {"enum": list(HOPS)},
                    "verdict": {"enum": ["ok", "warn", "fail", "skip"]},
                    "detail": _STR,
                },
            },
        },
    },
}


def add_explain_routes(routes: RouteTable, ctx: ApiContext) -> None:
    where = "this zone" if ctx.zone else "any zone"
    routes.add(
        Operation(
            "GET",
            "/meshes/{mesh}/_explain",
            "explainCall",
            "Why a call from one service to another passes or not, hop by hop",
            "Services",
            query=(
                QueryParam("from", "The calling service (kuma.io/service), required."),
                QueryParam("to", "The called service, as in `<to>.mesh`, required."),
                QueryParam(
                    "zone",
                    f"The caller's zone, {where} (default: "
                    + ("this zone)." if ctx.zone else "the first zone where it runs)."),
                ),
            ),
            responses={
                200: ("Each hop with its verdict", routes.schema("Explanation", EXPLAIN_SCHEMA)),
                400: ("A missing service or a zone this control plane cannot see", ref("Error")),
                404: ("No such mesh", ref("Error")),
            },
            path_schemas={"mesh": RESOURCE_PATH["mesh"]},
        ),
        _explain,
    )


async def _list(ctx: ApiContext, type_name: str, mesh: str | None) -> list[Resource]:
    return list((await ctx.store.list(type_name, mesh)).items)


async def _explain(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    mesh_name = request.match_info["mesh"]
    source, destination = request.query.get("from", ""), request.query.get("to", "")
    if not source or not destination:
        raise bad_request("give both services: ?from=<caller>&to=<service>")
    zone = request.query.get("zone") or None
    if ctx.zone and zone not in (None, ctx.zone):
        raise bad_request(
            f"this is zone {ctx.zone!r}'s control plane: it explains calls from its own zone; "
            f"ask the global for zone {zone!r}"
        )
    mesh = await ctx.store.get(MESH.name, "", mesh_name)  # NotFoundError: 404 naming the mesh
    inventory = Inventory(
        mesh=mesh,
        dataplanes=await _list(ctx, DATAPLANE.name, mesh_name),
        dataplane_insights=await _list(ctx, DATAPLANE_INSIGHT.name, mesh_name),
        ingresses=await _list(ctx, ZONE_INGRESS.name, None),
        ingress_insights=await _list(ctx, ZONE_INGRESS_INSIGHT.name, None),
        virtual_ips=await _list(ctx, VIRTUAL_IPS.name, mesh_name),
        policies={d.name: await _list(ctx, d.name, mesh_name) for d in policy_types(ctx.registry)},
        here=ctx.zone,
    )
    return web.json_response(explain(inventory, source, destination, zone).to_json())
