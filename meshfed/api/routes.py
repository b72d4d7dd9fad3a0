"""Routes registered together with their description, so /openapi.json cannot miss one.

Every route goes through `RouteTable.add`, which puts it in aiohttp's router and records the
operation for the OpenAPI document; a test checks the router against the document.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshfed.resources.codec import MAX_NAME, NAME_RE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATH_PARAM = re.compile(r"\{(\w+)\}")


class Access(enum.StrEnum):
    """Who may call an operation (enforced by meshfed.api.auth before the handler runs)."""

    PUBLIC = "public"  # anyone, anonymous included
    ADMIN = "admin"  # a user token of group mesh-system:admin


@dataclass(frozen=True)
class QueryParam:
    """A query parameter (or, with location "header", a request header) of an operation."""

    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: str = "query"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # aiohttp's template, which is also OpenAPI's: /meshes/{mesh}/...
    operation_id: str  # unique; what generated clients name the call
    summary: str
    tag: str
    query: tuple[QueryParam, ...] = ()
    request_schema: dict[str, Any] | None = None  # a JSON schema, usually a $ref
    # status -> (description, JSON schema of the body or None)
    responses: dict[int, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    # status -> header name -> its OpenAPI header object (e.g. the ETag of a 200)
    response_headers: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # path parameter -> its JSON schema (default: any string)
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    # None: reads (GET) are public, everything else is admin. Secret data says ADMIN for reads.
    access: Access | None = None

    @property
    def required_access(self) -> Access:
        if self.access is not None:
            return self.access
        return Access.PUBLIC if self.method in ("GET", "HEAD") else Access.ADMIN

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


class RouteTable:
    """Adds routes to an app and keeps the list of documented operations."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.operations: list[Operation] = []
        self._by_route: dict[tuple[str, str], Operation] = {}
        self.schemas: dict[str, dict[str, Any]] = {}

    def add(self, op: Operation, handler: Handler) -> None:
        if any(o.operation_id == op.operation_id for o in self.operations):
            raise ValueError(f"duplicate operation id {op.operation_id}")
        # add_route (not add_get) so no undocumented HEAD route appears.
        self.app.router.add_route(op.method, op.path, handler)
        self.operations.append(op)
        self._by_route[(op.method, op.path)] = op

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation of a matched route (aiohttp's canonical path template)."""
        return self._by_route.get((method, path))

    def schema(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Registers a component schema; returns a $ref to it."""
        self.schemas[name] = schema
        return ref(name)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# A resource name in a path (Kuma's rule, meshfed.resources.codec): what a PUT accepts and
# every stored name follows; a GET or DELETE of another name answers 404.
NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME,
    "pattern": f"^{NAME_RE.pattern}$",
}
RESOURCE_PATH: dict[str, dict[str, Any]] = {"mesh": NAME_SCHEMA, "name": NAME_SCHEMA}

ROUTES: web.AppKey[RouteTable] = web.AppKey("meshfed_api_routes", RouteTable)
