"""Read-only views of policies the web GUI (and any client) needs, computed from the store.

- `GET /policies`: the policy types this control plane serves (Kuma's `/policies` list);
- `GET /meshes/{mesh}/policies/_sync` (global): every policy of a mesh with the version each zone
  holds, the zone x version matrix in one call instead of one `_sync` per policy;
- `GET /meshes/{mesh}/dataplanes/{name}/_policies`: the policies that select a Dataplane,
  least priority first, as `meshfed.policy.match` orders them for its config.

Nothing is stored or estimated here: the answers come from what the store and the KDS
engines already hold (a zone's held version is `null` when the global does not know it).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.routes import Operation, RouteTable, ref
from meshfed.policy.rules import match
from meshfed.policy.targetref import view_of
from meshfed.resources.descriptors import Registry, TypeDescriptor
from meshfed.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshfed.resources.types.dataplane import DATAPLANE
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.policies import POLICIES

_ERROR = ref("Error")
_OBJECT: dict[str, Any] = {"type": "object"}
_POLICY_NAMES = frozenset(d.name for d in POLICIES)


def policy_types(registry: Registry) -> list[TypeDescriptor]:
    """The registered policy types, in registry order."""
    return [d for d in registry if d.name in _POLICY_NAMES]


_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
POLICY_TYPES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["policies"],
    "properties": {
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "path", "readOnly", "isTargetRefBased"],
                "properties": {
                    "name": _STR,
                    "path": _STR,
                    "readOnly": {"type": "boolean"},
                    "isTargetRefBased": {"type": "boolean"},
                    "shortNames": {"type": "array", "items": _STR},
                    "description": _STR,
                },
            },
        }
    },
}
MESH_SYNC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mesh", "total", "items"],
    "properties": {
        "mesh": _STR,
        "total": {"type": "integer"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "mesh", "name", "version", "zones"],
                "properties": {
                    "type": _STR,
                    "mesh": _STR,
                    "name": _STR,
                    "version": _STR,
                    "zones": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["zone", "state", "version", "inSync", "lastError"],
                            "properties": {
                                "zone": _STR,
                                "state": {"enum": ["online", "offline"]},
                                "version": _NULLABLE_STR,
                                "inSync": {"type": "boolean"},
                                "lastError": _NULLABLE_STR,
                            },
                        },
                    },
                },
            },
        },
    },
}
DATAPLANE_POLICIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mesh", "dataplane", "zone", "items"],
    "properties": {
        "mesh": _STR,
        "dataplane": _STR,
        "zone": _NULLABLE_STR,
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "name", "displayName", "targetRef", "inbounds"],
                "properties": {
                    "type": _STR,
                    "name": _STR,
                    "displayName": _STR,
                    "targetRef": _OBJECT,
                    "inbounds": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
    },
}


def add_policy_view_routes(routes: RouteTable, ctx: ApiContext) -> None:
    routes.add(
        Operation(
            "GET",
            "/policies",
            "listPolicyTypes",
            "The policy types this control plane serves (Kuma's /policies)",
            "Policies",
            responses={200: ("Policy types", routes.schema("PolicyTypes", POLICY_TYPES_SCHEMA))},
        ),
        _policy_types,
    )
    matched = routes.schema("DataplanePolicies", DATAPLANE_POLICIES_SCHEMA)
    routes.add(
        Operation(
            "GET",
            "/meshes/{mesh}/dataplanes/{name}/_policies",
            "getDataplanePolicies",
            "The policies that select this Dataplane, least priority first",
            "Policies",
            responses={200: ("Matched policies", matched), 404: ("No such dataplane", _ERROR)},
        ),
        _dataplane_policies,
    )
    if ctx.federation is not None:
        matrix = routes.schema("MeshPolicySync", MESH_SYNC_SCHEMA)
        routes.add(
            Operation(
                "GET",
                "/meshes/{mesh}/policies/_sync",
                "getMeshPolicySync",
                "Every policy of the mesh with the version each zone holds",
                "KDS",
                responses={200: ("Zone x version matrix", matrix), 404: ("No such mesh", _ERROR)},
            ),
            _mesh_sync,
        )


async def _policy_types(request: web.Request) -> web.StreamResponse:
    registry = request.app[CONTEXT].registry
    return web.json_response(
        {
            "policies": [
                {
                    "name": d.name,
                    "path": d.plural,
                    "readOnly": d.system_only,
                    "isTargetRefBased": True,
                    "shortNames": list(d.short_names),
                    "description": d.description,
                }
                for d in policy_types(registry)
            ]
        }
    )


def matched_policies(dataplane: Resource, zone: str, policies: list[Resource]) -> list[Any]:
    """What `_policies` answers for one Dataplane (pure): each policy selecting at least one
    of its inbounds, with the inbounds' indexes, least priority first per type."""
    view = view_of(dataplane, zone)
    by_type: dict[str, list[Resource]] = {}
    for policy in policies:
        by_type.setdefault(policy.type, []).append(policy)
    out: list[Any] = []
    for type_name in sorted(by_type):
        for m in match(by_type[type_name], view):
            labels = m.policy.meta.labels
            out.append(
                {
                    "type": m.policy.type,
                    "name": m.policy.meta.name,
                    "displayName": labels.get(LABEL_DISPLAY_NAME, m.policy.meta.name),
                    "targetRef": m.policy.spec.get("targetRef") or {"kind": "Mesh"},
                    "inbounds": sorted(m.inbounds),
                }
            )
    return out


async def _dataplane_policies(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    mesh, name = request.match_info["mesh"], request.match_info["name"]
    dataplane = await ctx.store.get(DATAPLANE.name, mesh, name)  # NotFoundError: 404
    zone = dataplane.meta.labels.get(LABEL_ZONE) or ctx.zone or ""
    policies: list[Resource] = []
    for desc in policy_types(ctx.registry):
        policies += (await ctx.store.list(desc.name, mesh)).items
    return web.json_response(
        {
            "mesh": mesh,
            "dataplane": name,
            "zone": zone or None,
            "items": matched_policies(dataplane, zone, policies),
        }
    )


async def _mesh_sync(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    assert ctx.federation is not None  # the route exists only then
    mesh = request.match_info["mesh"]
    await ctx.store.get(MESH.name, "", mesh)  # NotFoundError: 404 naming the mesh
    items: list[dict[str, Any]] = []
    for desc in policy_types(ctx.registry):
        for res in (await ctx.store.list(desc.name, mesh)).items:
            items.append(await ctx.federation.sync_status(desc, res))
    return web.json_response({"mesh": mesh, "total": len(items), "items": items})
