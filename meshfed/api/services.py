"""`GET /meshes/{mesh}/services`: the services of a mesh, where they run and their VIPs.

Both control planes serve it; what stands behind it differs:

- a zone answers from its live catalog (`zone_cp.services`): each service with the zones that
  have it, instances per zone, the zone's own VIP for `<service>.mesh`, its zone-pinned VIPs
  and the DNS names answering;
- the global answers from its store (`global_services` below): instances per zone counted
  from the Dataplanes the zones reported, and each zone's VIP from the VirtualIPs it synced.

The composition root sets `ApiContext.services`; without it the route does not exist.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.routes import RESOURCE_PATH, Operation, RouteTable, ref
from meshfed.dpconfig.catalog import local_instances
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.vips import VIRTUAL_IPS, vip_entries
from meshfed.store.base import ResourceStore

SERVICES_PATH = "/meshes/{mesh}/services"


def add_services_routes(routes: RouteTable, ctx: ApiContext) -> None:
    if ctx.services is None:
        return
    routes.add(
        Operation(
            "GET",
            SERVICES_PATH,
            "listServices",
            "The services of a mesh: the zones that have them, instances and VIPs",
            "Services",
            responses={
                200: ("Services of the mesh", {"type": "object"}),
                404: ("No such mesh", ref("Error")),
            },
            path_schemas=RESOURCE_PATH,
        ),
        _services,
    )


async def _services(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.services is not None  # the route exists only then
    mesh = request.match_info["mesh"]
    await ctx.store.get(MESH.name, "", mesh)  # NotFoundError: 404 naming the mesh
    return web.json_response(await ctx.services(mesh))


def _zone_of(res: Resource) -> str:
    return res.meta.labels.get(LABEL_ZONE, "")


def services_from(
    mesh: str, dataplanes: list[Resource], virtual_ips: list[Resource]
) -> dict[str, Any]:
    """The global's view from stored resources (pure): instances per zone and each zone's VIP."""
    by_zone: dict[str, list[Resource]] = {}
    for dp in dataplanes:
        if dp.meta.mesh == mesh and _zone_of(dp):
            by_zone.setdefault(_zone_of(dp), []).append(dp)
    counts: dict[str, Counter[str]] = {}  # service -> zone -> instances
    for zone, dps in by_zone.items():
        for (_, service), instances in local_instances(dps, zone).items():
            counts.setdefault(service, Counter())[zone] += len(instances)
    vips: dict[str, dict[str, str]] = {}  # service -> zone -> VIP of <service>.mesh there
    for res in virtual_ips:
        zone = _zone_of(res)
        if res.meta.mesh != mesh or not zone:
            continue
        for entry in vip_entries(res.spec):
            if entry.active and entry.zone is None:
                vips.setdefault(entry.service, {})[zone] = entry.vip
    items = []
    for service in sorted(counts.keys() | vips.keys()):
        per_zone = counts.get(service, Counter())
        items.append(
            {
                "service": service,
                "instances": sum(per_zone.values()),
                "zones": [{"zone": z, "instances": per_zone[z]} for z in sorted(per_zone)],
                "vips": dict(sorted(vips.get(service, {}).items())),
            }
        )
    return {"mesh": mesh, "total": len(items), "items": items, "next": None}


async def global_services(store: ResourceStore, mesh: str) -> dict[str, Any]:
    """`GET /meshes/{mesh}/services` on the global."""
    dataplanes = (await store.list(DATAPLANE.name, mesh)).items
    virtual_ips = (await store.list(VIRTUAL_IPS.name, mesh)).items
    return services_from(mesh, dataplanes, virtual_ips)
