"""The OpenAPI 3.1 document, built from the operations recorded in the RouteTable."""

from __future__ import annotations

from typing import Any

from meshfed.api.routes import Access, Operation, RouteTable

BEARER = "userToken"  # the security scheme: `Authorization: Bearer <user token>`
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user token (POST /tokens/user on the global); admin operations need "
        "one of group mesh-system:admin",
    }
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status", "title", "detail", "invalid_parameters"],
    "properties": {
        "type": {"const": "/std-errors"},
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "invalid_parameters": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}


def openapi_document(routes: RouteTable, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in routes.operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA, **routes.schemas},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in op.path_params
    ]
    params += [
        {"name": q.name, "in": "query", "description": q.description, "schema": q.schema}
        for q in op.query
    ]
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(status): (
                {"description": desc, "content": {"application/json": {"schema": schema}}}
                if schema is not None
                else {"description": desc}
            )
            for status, (desc, schema) in sorted(op.responses.items())
        },
    }
    # Public: anonymous allowed (`{}`), a token optional; admin: the bearer token required.
    out["x-meshfed-access"] = str(op.required_access)
    if op.required_access is Access.PUBLIC:
        out["security"] = [{}, {BEARER: []}]
    else:
        out["security"] = [{BEARER: []}]
        out["responses"].setdefault("401", {"description": "No valid user token"})
        out["responses"].setdefault("403", {"description": "The user is not an admin"})
    if params:
        out["parameters"] = params
    if op.request_schema is not None:
        media = {"schema": op.request_schema}
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": media, "application/yaml": media},
        }
    return out
