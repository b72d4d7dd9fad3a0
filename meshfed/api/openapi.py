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
        {
            "name": p,
            "in": "path",
            "required": True,
            "schema": op.path_schemas.get(p, {"type": "string"}),
        }
        for p in op.path_params
    ]
    params += [
        {"name": q.name, "in": q.location, "description": q.description, "schema": q.schema}
        for q in op.query
    ]
    responses = dict(op.responses)
    # What every operation may answer besides its own: a token that is sent but invalid is
    # refused on every route (meshfed.api.auth), an admin route refuses other users, and a
    # body is read by meshfed.api.body (its 400/413/415).
    responses.setdefault(401, ("No valid user token", _ERROR))
    if op.required_access is not Access.PUBLIC:
        responses.setdefault(403, ("The user is not an admin", _ERROR))
    if op.request_schema is not None:
        responses.setdefault(400, ("The body is not one valid document", _ERROR))
        responses.setdefault(413, ("Body too large", _ERROR))
        responses.setdefault(415, ("Body is not JSON or YAML", _ERROR))
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(status): _response(
                desc, schema, {**_HEADERS.get(status, {}), **op.response_headers.get(status, {})}
            )
            for status, (desc, schema) in sorted(responses.items())
        },
    }
    # Public: anonymous allowed (`{}`), a token optional; admin: the bearer token required.
    out["x-meshfed-access"] = str(op.required_access)
    if op.required_access is Access.PUBLIC:
        out["security"] = [{}, {BEARER: []}]
    else:
        out["security"] = [{BEARER: []}]
    if params:
        out["parameters"] = params
    if op.request_schema is not None:
        media = {"schema": op.request_schema}
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": media, "application/yaml": media},
        }
    return out


_ERROR: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
# Headers some statuses always carry (meshfed.api.auth, meshfed.api.resources).
_HEADERS: dict[int, dict[str, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with (Bearer)",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    405: {
        "Allow": {
            "description": "The methods this side serves here",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}


def _response(
    desc: str, schema: dict[str, Any] | None, headers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    if headers:
        out["headers"] = headers
    return out
