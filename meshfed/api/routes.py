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

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PATH_PARAM = re.compile(r"\{(\w+)\}")


class Access(enum.StrEnum):
    """Who may call an operation (enforced by meshfed.api.auth before the handler runs)."""

    PUBLIC = "public"  # anyone, anonymous included
    ADMIN = "admin"  # a user token of group mesh-system:admin


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


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


ROUTES: web.AppKey[RouteTable] = web.AppKey("meshfed_api_routes", RouteTable)
