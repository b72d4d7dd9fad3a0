"""Counts and overviews over the whole federation, computed from the store when asked (issue 15).

- `GET /global-insight` (global): Kuma's GlobalInsight, the numbers an overview page shows:
  zones (control planes and ingresses online/total), meshes, services, dataplanes
  online/offline, resources per type and policies in total, plus `meshes.byMesh` with each
  mesh's dataplanes, services and policies per type (Kuma keeps those in MeshInsights;
  `meshctl inspect meshes` reads them here). Kuma's gateway, egress and external-service
  counts are left out: meshfed has none of those.
- `GET /meshes/{mesh}/dataplanes+insights` (global and zone): Kuma's DataplaneOverview list,
  each Dataplane with its DataplaneInsight (`dataplaneInsight` is `{}` for a Dataplane no
  proxy ever connected for) and, beyond Kuma's fields, its `state` as counted below, so
  clients (`meshctl inspect dataplanes`) do not each derive it again.

The states follow the insights the proxies' control plane writes: a proxy is online while
its newest subscription is open; online with an inbound not ready is partially degraded;
anything else (closed, or no proxy ever connected) is offline, as in Kuma. A service is
online when every instance (inbound) is ready, offline when none is, partially degraded in
between. Nothing is cached: each call lists the store (an overview, not a hot path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.paging import next_url, page_params
from meshfed.api.policy_views import policy_types
from meshfed.api.resources import LIST_QUERY
from meshfed.api.routes import RESOURCE_PATH, Operation, RouteTable, ref
from meshfed.resources.descriptors import Scope
from meshfed.resources.model import Key, Resource, now_rfc3339
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.insights import DATAPLANE_INSIGHT, ZONE_INGRESS_INSIGHT
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.zone import ZONE
from meshfed.resources.types.zone_ingress import ZONE_INGRESS

SERVICE_TAG = "kuma.io/service"
ONLINE, OFFLINE, DEGRADED = "online", "offline", "partiallyDegraded"

# ---- pure ----------------------------------------------------------------------------------


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def proxy_online(insight: Resource | None) -> bool:
    """The newest subscription of a DataplaneInsight / ZoneIngressInsight is open."""
    if insight is None:
        return False
    subs = [s for s in _list(insight.spec.get("subscriptions")) if isinstance(s, Mapping)]
    return bool(subs) and not subs[-1].get("disconnectTime")


def inbounds(dataplane: Resource) -> list[tuple[str, bool]]:
    """(service, ready) of each inbound; an inbound without health is ready (decision 28)."""
    out: list[tuple[str, bool]] = []
    for inbound in _list(_dict(dataplane.spec.get("networking")).get("inbound")):
        service = _dict(_dict(inbound).get("tags")).get(SERVICE_TAG)
        if isinstance(service, str):
            out.append((service, _dict(_dict(inbound).get("health")).get("ready") is not False))
    return out


def dataplane_state(dataplane: Resource, insight: Resource | None) -> str:
    if not proxy_online(insight):
        return OFFLINE
    return ONLINE if all(ready for _, ready in inbounds(dataplane)) else DEGRADED


@dataclass
class Tally:
    """online / offline / partiallyDegraded / total, Kuma's FullStatus."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((ONLINE, OFFLINE, DEGRADED), 0)
    )

    def add(self, state: str) -> None:
        self.counts[state] += 1

    def to_json(self) -> dict[str, int]:
        return {**self.counts, "total": sum(self.counts.values())}


def service_states(dataplanes: Iterable[Resource]) -> dict[tuple[str, str], str]:
    """(mesh, service) -> its state, from the readiness of every inbound that serves it."""
    ready: dict[tuple[str, str], list[bool]] = {}
    for dp in dataplanes:
        for service, ok in inbounds(dp):
            ready.setdefault((dp.meta.mesh, service), []).append(ok)
    return {
        key: ONLINE if all(oks) else OFFLINE if not any(oks) else DEGRADED
        for key, oks in ready.items()
    }


@dataclass
class Inventory:
    """What the store holds, read once for an insight."""

    zone_states: list[str]  # "online" / "offline" per Zone
    meshes: list[Resource]
    dataplanes: list[Resource]
    dataplane_insights: dict[Key, Resource]
    ingresses: list[Resource]
    ingress_insights: dict[Key, Resource]
    totals: dict[str, int]  # resource type -> stored count
    policies: dict[str, dict[str, int]]  # mesh -> policy type -> count


def global_insight(inv: Inventory, created_at: str) -> dict[str, Any]:
    services = service_states(inv.dataplanes)
    by_mesh: dict[str, dict[str, Any]] = {}
    for mesh in inv.meshes:
        mtls = _dict(mesh.spec.get("mtls")).get("enabledBackend")
        by_mesh[mesh.meta.name] = {
            "mtls": mtls if isinstance(mtls, str) and mtls else None,
            "dataplanes": Tally(),
            "services": Tally(),
            "policies": dict(inv.policies.get(mesh.meta.name, {})),
        }
    everywhere = Tally()
    for dp in inv.dataplanes:
        state = dataplane_state(dp, inv.dataplane_insights.get(Key(dp.meta.mesh, dp.meta.name)))
        everywhere.add(state)
        if dp.meta.mesh in by_mesh:
            by_mesh[dp.meta.mesh]["dataplanes"].add(state)
    all_services = Tally()
    for (mesh_name, _), state in services.items():
        all_services.add(state)
        if mesh_name in by_mesh:
            by_mesh[mesh_name]["services"].add(state)
    ingress_online = sum(
        proxy_online(inv.ingress_insights.get(Key("", i.meta.name))) for i in inv.ingresses
    )
    policy_total = sum(n for per_type in inv.policies.values() for n in per_type.values())
    return {
        "type": "GlobalInsight",
        "createdAt": created_at,
        "zones": {
            "controlPlanes": {
                "online": inv.zone_states.count(ONLINE),
                "offline": len(inv.zone_states) - inv.zone_states.count(ONLINE),
                "total": len(inv.zone_states),
            },
            "zoneIngresses": {"online": ingress_online, "total": len(inv.ingresses)},
        },
        "meshes": {
            "total": len(inv.meshes),
            "byMesh": {
                name: {
                    "mtls": m["mtls"],
                    "dataplanes": m["dataplanes"].to_json(),
                    "services": m["services"].to_json(),
                    "policies": {"total": sum(m["policies"].values()), "byType": m["policies"]},
                }
                for name, m in by_mesh.items()
            },
        },
        "services": {"total": len(services), "internal": all_services.to_json()},
        "dataplanes": {"standard": everywhere.to_json()},
        "policies": {"total": policy_total},
        "resources": {name: {"total": n} for name, n in inv.totals.items()},
    }


def dataplane_overview(dataplane: Resource, insight: Resource | None) -> dict[str, Any]:
    """Kuma's DataplaneOverview, plus the `state` the counts use."""
    return {
        "type": "DataplaneOverview",
        "mesh": dataplane.meta.mesh,
        "name": dataplane.meta.name,
        "creationTime": dataplane.meta.creation_time,
        "modificationTime": dataplane.meta.modification_time,
        "labels": dict(dataplane.meta.labels),
        "dataplane": dataplane.spec,
        "dataplaneInsight": insight.spec if insight is not None else {},
        "state": dataplane_state(dataplane, insight),
    }


# ---- routes --------------------------------------------------------------------------------

_COUNT = {"type": "integer", "minimum": 0}
_ONLINE_TOTAL = {
    "type": "object",
    "required": ["online", "total"],
    "properties": {"online": _COUNT, "offline": _COUNT, "total": _COUNT},
}
_FULL_STATUS = {
    "type": "object",
    "required": [ONLINE, OFFLINE, DEGRADED, "total"],
    "properties": {ONLINE: _COUNT, OFFLINE: _COUNT, DEGRADED: _COUNT, "total": _COUNT},
}
_TOTAL = {"type": "object", "required": ["total"], "properties": {"total": _COUNT}}
GLOBAL_INSIGHT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "type",
        "createdAt",
        "zones",
        "meshes",
        "services",
        "dataplanes",
        "policies",
        "resources",
    ],
    "properties": {
        "type": {"const": "GlobalInsight"},
        "createdAt": {"type": "string"},
        "zones": {
            "type": "object",
            "required": ["controlPlanes", "zoneIngresses"],
            "properties": {"controlPlanes": _ONLINE_TOTAL, "zoneIngresses": _ONLINE_TOTAL},
        },
        "meshes": {
            "type": "object",
            "required": ["total", "byMesh"],
            "properties": {
                "total": _COUNT,
                "byMesh": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["mtls", "dataplanes", "services", "policies"],
                        "properties": {
                            "mtls": {"type": ["string", "null"]},
                            "dataplanes": _FULL_STATUS,
                            "services": _FULL_STATUS,
                            "policies": {
                                "type": "object",
                                "required": ["total", "byType"],
                                "properties": {
                                    "total": _COUNT,
                                    "byType": {"type": "object", "additionalProperties": _COUNT},
                                },
                            },
                        },
                    },
                },
            },
        },
        "services": {
            "type": "object",
            "required": ["total", "internal"],
            "properties": {"total": _COUNT, "internal": _FULL_STATUS},
        },
        "dataplanes": {
            "type": "object",
            "required": ["standard"],
            "properties": {"standard": _FULL_STATUS},
        },
        "policies": _TOTAL,
        "resources": {"type": "object", "additionalProperties": _TOTAL},
    },
}
OVERVIEW_PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["total", "items", "next"],
    "properties": {
        "total": _COUNT,
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "mesh", "name", "dataplane", "dataplaneInsight", "state"],
                "properties": {
                    "state": {"enum": [ONLINE, OFFLINE, DEGRADED]},
                    "type": {"const": "DataplaneOverview"},
                    "mesh": {"type": "string"},
                    "name": {"type": "string"},
                    "dataplane": {"type": "object"},
                    "dataplaneInsight": {"type": "object"},
                },
            },
        },
        "next": {"type": ["string", "null"], "format": "uri"},
    },
}
_ERROR = ref("Error")


def add_insight_routes(routes: RouteTable, ctx: ApiContext) -> None:
    """Public reads, as every resource list (decision 39); `/global-insight` on the global."""
    if ctx.federation is not None:
        routes.add(
            Operation(
                "GET",
                "/global-insight",
                "getGlobalInsight",
                "Counts over the federation: zones, meshes, services, dataplanes "
                "online/total, resources and policies (Kuma's GlobalInsight)",
                "Insights",
                responses={200: ("GlobalInsight", GLOBAL_INSIGHT_SCHEMA)},
            ),
            _global_insight,
        )
    routes.add(
        Operation(
            "GET",
            "/meshes/{mesh}/dataplanes+insights",
            "listDataplaneOverviews",
            "The Dataplanes of a mesh, each with its DataplaneInsight (DataplaneOverview)",
            "Insights",
            LIST_QUERY,
            responses={
                200: ("A page of DataplaneOverview", OVERVIEW_PAGE_SCHEMA),
                400: ("Bad query", _ERROR),
                404: ("No such mesh", _ERROR),
            },
            path_schemas={"mesh": RESOURCE_PATH["mesh"]},
        ),
        _dataplane_overviews,
    )


async def _insights_of(
    ctx: ApiContext, type_name: str, items: list[Resource]
) -> dict[Key, Resource]:
    found = await ctx.store.get_many([(type_name, r.meta.mesh, r.meta.name) for r in items])
    return {Key(mesh, name): res for (_, mesh, name), res in found.items()}


async def _global_insight(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.federation is not None  # the route exists only then
    store = ctx.store
    zones = (await store.list(ZONE.name)).items
    states = [
        str(_dict((await ctx.federation.zone_overview(z)).get("zoneInsight")).get("state"))
        for z in zones
    ]
    dataplanes = (await store.list(DATAPLANE.name)).items
    ingresses = (await store.list(ZONE_INGRESS.name)).items
    totals: dict[str, int] = {}
    for desc in ctx.registry:
        totals[desc.name] = (await store.list(desc.name, None, size=1)).total
    policies: dict[str, dict[str, int]] = {}
    for desc in policy_types(ctx.registry):
        if desc.scope is not Scope.MESH:
            continue
        for res in (await store.list(desc.name)).items:
            per_type = policies.setdefault(res.meta.mesh, {})
            per_type[desc.name] = per_type.get(desc.name, 0) + 1
    inventory = Inventory(
        zone_states=states,
        meshes=(await store.list(MESH.name)).items,
        dataplanes=dataplanes,
        dataplane_insights=await _insights_of(ctx, DATAPLANE_INSIGHT.name, dataplanes),
        ingresses=ingresses,
        ingress_insights=await _insights_of(ctx, ZONE_INGRESS_INSIGHT.name, ingresses),
        totals=totals,
        policies=policies,
    )
    return web.json_response(global_insight(inventory, now_rfc3339()))


async def _dataplane_overviews(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    mesh = request.match_info["mesh"]
    params = page_params(request.query)  # 400 before the store is read
    await ctx.store.get(MESH.name, "", mesh)  # NotFoundError: 404 naming the mesh
    page = await ctx.store.list(
        DATAPLANE.name, mesh, name_contains=params.name, size=params.size, offset=params.offset
    )
    found = await _insights_of(ctx, DATAPLANE_INSIGHT.name, page.items)
    items = [dataplane_overview(dp, found.get(Key(mesh, dp.meta.name))) for dp in page.items]
    return web.json_response(
        {"total": page.total, "items": items, "next": next_url(request, page.next_offset)}
    )
