"""REST paths of the Kuma types meshfed does not have (meshfed/resources/unsupported.py).

Each answers 400 naming the type and why, on every method Kuma serves there, so a client
written for Kuma learns what is missing instead of getting "no such path". The routes go
through the RouteTable, so /openapi.json lists them (tag "Not supported").
"""

from __future__ import annotations

from aiohttp import web

from meshfed.api.errors import bad_request
from meshfed.api.routes import Handler, Operation, RouteTable, ref
from meshfed.resources.descriptors import Scope
from meshfed.resources.errors import FieldError
from meshfed.resources.unsupported import UNSUPPORTED_TYPES, UnsupportedType

TAG = "Not supported"


def _handler(entry: UnsupportedType) -> Handler:
    message = entry.message()

    async def handle(request: web.Request) -> web.StreamResponse:
        raise bad_request(message, [FieldError("type", message)])

    return handle


def add_unsupported_routes(routes: RouteTable) -> None:
    """List, get, put and delete paths of every unsupported type, each answering 400."""
    for entry in UNSUPPORTED_TYPES:
        handler = _handler(entry)
        responses = {400: (entry.message(), ref("Error"))}
        collection = (
            f"/meshes/{{mesh}}/{entry.plural}" if entry.scope is Scope.MESH else f"/{entry.plural}"
        )
        paths = [("GET", collection, "list"), ("GET", f"{collection}/{{name}}", "get")]
        paths += [("PUT", f"{collection}/{{name}}", "put")]
        paths += [("DELETE", f"{collection}/{{name}}", "delete")]
        if entry.scope is Scope.MESH:
            paths.append(("GET", f"/{entry.plural}", "listAcrossMeshes"))
        for method, path, verb in paths:
            op = Operation(
                method,
                path,
                f"{verb}{entry.name}NotSupported",
                f"{entry.name} is {entry.support} (answers 400)",
                TAG,
                responses=dict(responses),
            )
            routes.add(op, handler)
