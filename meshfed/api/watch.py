"""`GET /_watch`: the store's change stream as newline-delimited JSON (beyond Kuma).

For debugging and for tests and benchmarks that must see every change a control plane makes
(e.g. "nothing was deleted in zone-2 while zone-1 reconnected"), not just poll the current
state. The store watch is opened before the response headers are sent, so once a client has
the headers, no later change can be missed. One line per event; the stream stays open until
the client goes away or the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from meshfed.api.context import CONTEXT
from meshfed.api.errors import bad_request
from meshfed.api.routes import Access, Operation, QueryParam, RouteTable
from meshfed.resources.errors import FieldError
from meshfed.store.base import StoreError, WatchEvent

# How often an idle watch checks that its client is still there.
_IDLE_CHECK = 1.0
FIRST = asyncio.FIRST_COMPLETED


def event_json(event: WatchEvent) -> dict[str, Any]:
    res = event.resource
    return {
        "kind": str(event.kind),
        "type": res.type,
        "mesh": res.meta.mesh,
        "name": res.meta.name,
        "version": res.meta.version,
        "revision": event.revision,
        "labels": dict(res.meta.labels),
    }


def add_watch_route(routes: RouteTable) -> None:
    routes.add(
        Operation(
            "GET",
            "/_watch",
            "watchStore",
            "Every store change from now on, one JSON object per line, until disconnected",
            "System",
            (QueryParam("types", "Only these types (comma-separated type names)."),),
            responses={
                200: ("application/x-ndjson stream of {kind,type,mesh,name,version,...}", None),
                400: ("Unknown type", {"$ref": "#/components/schemas/Error"}),
            },
            access=Access.ADMIN,  # the events carry every type, secrets included
        ),
        _watch,
    )


def _types_filter(request: web.Request) -> frozenset[str] | None:
    raw = request.query.get("types")
    if not raw:
        return None
    registry = request.app[CONTEXT].registry
    wanted: set[str] = set()
    for alias in (part.strip() for part in raw.split(",")):
        if not alias:
            continue
        desc = registry.lookup(alias)
        if desc is None:
            raise bad_request(
                "unknown type in 'types'", [FieldError("types", f"unknown type {alias!r}")]
            )
        wanted.add(desc.name)
    if not wanted:
        raise bad_request("'types' names no type", [FieldError("types", "names no type")])
    return frozenset(wanted)


async def _watch(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    types = _types_filter(request)
    # Subscribes now, before the client sees the headers. Events are only read: no copies.
    events = ctx.store.watch(types=types, copy=False)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    closed: asyncio.Future[Any] = asyncio.ensure_future(ctx.closing.wait())
    nxt: asyncio.Future[Any] | None = None
    try:
        await resp.prepare(request)
        while True:
            if nxt is None:
                nxt = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({nxt, closed}, timeout=_IDLE_CHECK, return_when=FIRST)
            if closed in done or _client_gone(request):
                break
            if nxt not in done:
                continue
            event: WatchEvent = nxt.result()
            nxt = None
            line = json.dumps(event_json(event), separators=(",", ":")) + "\n"
            await resp.write(line.encode())
    except (ConnectionResetError, StopAsyncIteration, StoreError):
        pass  # the client went away, or the store ended the watch: the stream ends
    finally:
        closed.cancel()
        if nxt is not None:
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    return resp


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
