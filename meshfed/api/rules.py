"""`GET /meshes/{mesh}/dataplanes/{name}/_rules` (zone and global, decision 138): Kuma's inspect
"rules" view, per policy type the merged confs and their origin policies for one Dataplane,
computed from what this control plane holds (meshfed/dpconfig/rules_view.py), not asked of
the sidecar. Public to read, as `_policies` is: it shows what the policies already show."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT
from meshfed.api.policy_views import policy_types
from meshfed.api.routes import Operation, RouteTable, ref
from meshfed.dpconfig.rules_view import dataplane_rules, outbound_services
from meshfed.policy.targetref import service_labels
from meshfed.resources.model import LABEL_ZONE, Resource
from meshfed.resources.types.dataplane import DATAPLANE

_STR = {"type": "string"}
_OBJECT: dict[str, Any] = {"type": "object"}
_RULE = {
    "type": "object",
    "required": ["matchers", "conf", "origin"],
    "properties": {
        "matchers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "value", "not"],
                "properties": {"key": _STR, "value": _STR, "not": {"type": "boolean"}},
            },
        },
        "conf": _OBJECT,
        "origin": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["resourceMeta"],
                "properties": {
                    "resourceMeta": {
                        "type": "object",
                        "required": ["type", "mesh", "name", "displayName"],
                        "properties": {
                            "type": _STR,
                            "mesh": _STR,
                            "name": _STR,
                            "displayName": _STR,
                        },
                    }
                },
            },
        },
    },
}
_PER_INBOUND = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["inbound", "rules"],
        "properties": {
            "inbound": {
                "type": "object",
                "required": ["name", "port", "tags"],
                "properties": {
                    "name": _STR,
                    "port": {"type": "integer"},
                    "tags": {"type": "object", "additionalProperties": _STR},
                },
            },
            "rules": {"type": "array", "items": _RULE},
        },
    },
}
_RULES = {"type": "array", "items": _RULE}
DATAPLANE_RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["mesh", "dataplane", "zone", "rules"],
    "properties": {
        "mesh": _STR,
        "dataplane": _STR,
        "zone": {"type": ["string", "null"]},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "type",
                    "toRules",
                    "fromRules",
                    "inboundRules",
                    "singleItemRules",
                    "warnings",
                ],
                "properties": {
                    "type": _STR,
                    "toRules": _RULES,
                    "fromRules": _PER_INBOUND,
                    "inboundRules": _PER_INBOUND,
                    "singleItemRules": _RULES,
                    "warnings": {"type": "array", "items": _STR},
                },
            },
        },
    },
}


def add_rules_route(routes: RouteTable) -> None:
    routes.add(
        Operation(
            "GET",
            "/meshes/{mesh}/dataplanes/{name}/_rules",
            "getDataplaneRules",
            "Per policy type, the merged confs that apply to this Dataplane and the policies "
            "they come from (Kuma's inspect rules)",
            "Policies",
            responses={
                200: ("Rules", routes.schema("DataplaneRules", DATAPLANE_RULES_SCHEMA)),
                404: ("No such dataplane", ref("Error")),
            },
        ),
        _dataplane_rules,
    )


async def _dataplane_rules(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    mesh, name = request.match_info["mesh"], request.match_info["name"]
    dataplane = await ctx.store.get(DATAPLANE.name, mesh, name)  # NotFoundError: 404
    zone = dataplane.meta.labels.get(LABEL_ZONE) or ctx.zone or ""
    policies: dict[str, list[Resource]] = {}
    for desc in policy_types(ctx.registry):
        policies[desc.name] = (await ctx.store.list(desc.name, mesh)).items
    dataplanes = (await ctx.store.list(DATAPLANE.name, mesh)).items
    found = outbound_services(dataplanes, (p for ps in policies.values() for p in ps))
    services = {s: service_labels(mesh, s, zones) for s, zones in found.items()}
    return web.json_response(
        {
            "mesh": mesh,
            "dataplane": name,
            "zone": zone or None,
            "rules": dataplane_rules(dataplane, zone, policies, services),
        }
    )
