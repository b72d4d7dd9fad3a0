"""Resource CRUD routes, generated from the type registry (Kuma's paths).

Global-scoped types live at `/{plural}[/{name}]`; mesh-scoped ones at
`/meshes/{mesh}/{plural}[/{name}]`, plus a read-only `/{plural}` across meshes. The same
handlers serve the global and the zone control planes: `ApiContext.mode` decides which types
this side accepts writes for, and the 405 says where to apply the others.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from meshfed.api.body import read_document
from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.errors import ApiError, bad_request
from meshfed.api.paging import next_url as page_next_url
from meshfed.api.paging import page_params
from meshfed.api.routes import (
    RESOURCE_PATH,
    Access,
    Handler,
    Operation,
    QueryParam,
    RouteTable,
    ref,
)
from meshfed.api.secret_hooks import after_secret_change, check_secret_write
from meshfed.api.zone_origin import (
    check_not_zone_copy,
    origin_label_errors,
    stamp_zone_origin,
)
from meshfed.resources.codec import check_name, resource_from_dict, resource_to_dict
from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor
from meshfed.resources.errors import DeleteRefusedError, FieldError, ValidationError
from meshfed.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Resource,
    now_rfc3339,
)
from meshfed.resources.models.jsonschema import spec_schemas
from meshfed.resources.types.mesh import MESH
from meshfed.store.base import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Requirement,
    ResourceStore,
    StoreKey,
)

log = logging.getLogger("meshfed.api.resources")
_ETAG_CHARS = re.compile(r"[\x21\x23-\x7e]+")
PUT_ATTEMPTS = 5  # read-check-write rounds of one PUT that keeps losing races


# ---- request pieces ------------------------------------------------------------------------


def etag(version: str) -> dict[str, str]:
    return {"ETag": f'"{version}"'} if version else {}


def parse_if_match(request: web.Request) -> str | None:
    """The version in `If-Match: "<version>"` ("*" = any existing version), or None."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    if value == "*":
        return value
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    # One entity tag of printable ASCII (RFC 9110's etagc, less obs-text): anything else is
    # not a version this API sent, and must not be echoed back in an error's detail.
    if _ETAG_CHARS.fullmatch(value) is None or "," in value:
        raise bad_request(
            "invalid If-Match header",
            [FieldError("If-Match", 'must be one version as returned in ETag, e.g. "42"')],
        )
    return value


def parse_dry_run(query: Mapping[str, str]) -> bool:
    raw = query.get("dryRun")
    if raw is None:
        return False
    if raw.lower() in ("true", "1", ""):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise bad_request("invalid dryRun", [FieldError("dryRun", "must be true or false")])


def check_writable(desc: TypeDescriptor, mode: Mode) -> None:
    """405 for a write this side does not own, saying where the write belongs."""
    if desc.writable_on(mode):
        return
    if desc.system_only:
        detail = f"{desc.name} is read-only: the control planes write it themselves"
    elif desc.owner is Mode.GLOBAL:
        detail = f"{desc.name} cannot be changed in a zone; apply it at the global control plane"
    else:
        detail = f"{desc.name} is owned by zone control planes; register it in its zone"
    raise ApiError(405, "Method Not Allowed", detail, headers={"Allow": "GET"})


def check_not_synced_copy(ctx: ApiContext, desc: TypeDescriptor, res: Resource | None) -> None:
    """405 for a zone's copy of something the global sent (e.g. another zone's ingress): the
    next sync would undo the change, so the zone API keeps such copies read-only (and the
    global's API a zone's: `check_not_zone_copy`)."""
    check_not_zone_copy(ctx.mode, desc, res)
    if ctx.mode is not Mode.ZONE or res is None:
        return
    if res.meta.labels.get(LABEL_ORIGIN) == ORIGIN_GLOBAL:
        detail = (
            f"{desc.name} {res.meta.name!r} is a copy synced from the global control plane "
            "and is read-only in a zone; change it where it comes from"
        )
        raise ApiError(405, "Method Not Allowed", detail, headers={"Allow": "GET"})


async def _get_or_none(store: ResourceStore, type_: str, mesh: str, name: str) -> Resource | None:
    try:
        return await store.get(type_, mesh, name)
    except NotFoundError:
        return None


def _conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", detail)


def _no_mesh(mesh: str) -> str:
    return f"mesh {mesh!r} does not exist; create it first"


# ---- parsing a PUT body --------------------------------------------------------------------


async def parse_put_body(
    ctx: ApiContext, desc: TypeDescriptor, doc: Any, mesh: str, name: str
) -> Resource:
    """The resource to store, or one 400 listing every problem (body and URL together)."""
    errors: list[FieldError] = []
    if isinstance(doc, dict):
        if isinstance(doc.get("name"), str) and doc["name"] != name:
            errors.append(FieldError("name", f"must equal the name in the URL ({name!r})"))
        if desc.scope is Scope.MESH and isinstance(doc.get("mesh"), str) and doc["mesh"] != mesh:
            errors.append(FieldError("mesh", f"must equal the mesh in the URL ({mesh!r})"))
    resource: Resource | None = None
    try:
        resource = resource_from_dict(doc, ctx.registry, expected_type=desc.name)
    except ValidationError as exc:
        errors += exc.errors
    if resource is not None:
        errors += system_label_errors(ctx, resource)
        missing_origin = origin_label_errors(ctx.mode, ctx.federated, desc, resource)
        if missing_origin:  # a global copy's 405 says more than a missing label
            check_not_synced_copy(ctx, desc, await _get_or_none(ctx.store, desc.name, mesh, name))
            errors += missing_origin
    if desc.scope is Scope.MESH and not check_name(mesh, "mesh"):
        mesh_res = await _get_or_none(ctx.store, MESH.name, "", mesh)
        if mesh_res is None:
            errors.append(FieldError("mesh", _no_mesh(mesh)))
    if errors or resource is None:
        raise ValidationError(errors)
    return resource


def system_label_errors(ctx: ApiContext, resource: Resource) -> list[FieldError]:
    """System labels a client may repeat (as `meshctl export` writes them) but not set to a
    value the system would not set: zone deletion and KDS trust them to say where a resource
    comes from (a global policy labelled with a zone would be deleted with that zone)."""
    if ctx.mode is Mode.GLOBAL:
        allowed = {LABEL_ORIGIN: ORIGIN_GLOBAL}
    else:
        allowed = {LABEL_ORIGIN: ORIGIN_ZONE, LABEL_DISPLAY_NAME: resource.meta.name}
        if ctx.zone:
            allowed[LABEL_ZONE] = ctx.zone
    may = ", ".join(f"{k}: {v}" for k, v in allowed.items())
    errors: list[FieldError] = []
    for key in (LABEL_ORIGIN, LABEL_ZONE, LABEL_DISPLAY_NAME):
        value = resource.meta.labels.get(key)
        if value is not None and allowed.get(key) != value:
            reason = f"is set by the control plane; {value!r} is not allowed here (only {may})"
            errors.append(FieldError(f"labels[{key!r}]", reason))
    return errors


def _stamp(ctx: ApiContext, resource: Resource) -> None:
    """System-owned meta: times come from the server, origin (and zone) from this side."""
    resource.meta.creation_time = ""
    resource.meta.modification_time = ""
    resource.meta.version = ""
    if ctx.mode is Mode.GLOBAL:
        resource.meta.labels[LABEL_ORIGIN] = ORIGIN_GLOBAL
    else:
        resource.meta.labels[LABEL_ORIGIN] = ORIGIN_ZONE
        if ctx.zone:
            resource.meta.labels[LABEL_ZONE] = ctx.zone


# ---- handlers ------------------------------------------------------------------------------


def _list_handler(desc: TypeDescriptor, across_meshes: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        params = page_params(request.query)
        mesh = None if across_meshes or desc.scope is Scope.GLOBAL else request.match_info["mesh"]
        page = await ctx.store.list(
            desc.name, mesh, name_contains=params.name, size=params.size, offset=params.offset
        )
        return web.json_response(
            {
                "total": page.total,
                "items": [resource_to_dict(r, desc) for r in page.items],
                "next": page_next_url(request, page.next_offset),
            }
        )

    return handle


def _get_handler(desc: TypeDescriptor) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        res = await ctx.store.get(
            desc.name, request.match_info.get("mesh", ""), request.match_info["name"]
        )
        return web.json_response(resource_to_dict(res, desc), headers=etag(res.meta.version))

    return handle


def _put_handler(desc: TypeDescriptor) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        check_writable(desc, ctx.mode)
        dry_run = parse_dry_run(request.query)
        if_match = parse_if_match(request)
        mesh, name = request.match_info.get("mesh", ""), request.match_info["name"]
        doc = await read_document(request, ctx.max_body_bytes)
        resource = await parse_put_body(ctx, desc, doc, mesh, name)
        _stamp(ctx, resource)
        if ctx.mode is Mode.ZONE:
            stamp_zone_origin(desc, resource)
        # Kuma's PUT is create-or-update: a resource created, changed or deleted by someone
        # else between our read and our write (or its Mesh changed) means read again, not
        # 409. Only a stale If-Match version is the client's conflict.
        for _ in range(PUT_ATTEMPTS):
            try:
                status, stored = await _put_once(ctx, desc, resource, if_match, dry_run)
            except ConflictError as exc:
                mesh_changed = (exc.type, exc.mesh, exc.name) == (MESH.name, "", mesh)
                if not mesh_changed and if_match not in (None, "*"):
                    raise
                continue
            except (AlreadyExistsError, NotFoundError):
                continue  # created or deleted meanwhile (with If-Match the next read says 409)
            headers = {} if dry_run else etag(stored.meta.version)
            return web.json_response(resource_to_dict(stored, desc), status=status, headers=headers)
        raise _conflict(f"{desc.name} {name!r} kept changing while it was written; retry")

    return handle


async def _put_once(
    ctx: ApiContext, desc: TypeDescriptor, resource: Resource, if_match: str | None, dry_run: bool
) -> tuple[int, Resource]:
    """One read-check-write round: (status, stored). The write requires the Mesh (for a
    mesh-scoped type) at the version just read, so a PUT racing a Mesh delete either commits
    before the delete (and the cascade removes it) or fails here; never an orphan."""
    _, mesh, name = resource.key
    require: list[Requirement] = []
    if desc.scope is Scope.MESH:
        mesh_res = await _get_or_none(ctx.store, MESH.name, "", mesh)
        if mesh_res is None:
            raise ValidationError([FieldError("mesh", _no_mesh(mesh))])
        require.append((MESH.name, "", mesh, mesh_res.meta.version))
    existing = await _get_or_none(ctx.store, desc.name, mesh, name)
    check_not_synced_copy(ctx, desc, existing)
    await check_secret_write(ctx.store, resource, require)
    if if_match is not None:
        if existing is None:
            raise _conflict(
                f"{desc.name} {name!r} does not exist, but If-Match expects version {if_match}"
            )
        if if_match not in ("*", existing.meta.version):
            raise _conflict(
                f"{desc.name} {name!r} was modified (If-Match version {if_match}, stored "
                f"version {existing.meta.version}); read it again and retry"
            )
    status = 201 if existing is None else 200
    if dry_run:
        now = now_rfc3339()
        resource.meta.creation_time = existing.meta.creation_time if existing else now
        resource.meta.modification_time = now
        resource.meta.version = existing.meta.version if existing else ""
        return status, resource
    # A create expects absence (someone creating it meanwhile means: read again, answer 200);
    # a client's If-Match version is checked again at the write (a stale one is its 409).
    # Otherwise a PUT is last-write-wins: concurrent updates must not fail each other, so the
    # version just read is not required (the Mesh still is: no orphans).
    expected: dict[StoreKey, str | None] = {}
    if existing is None:
        expected[resource.key] = None
    elif if_match not in (None, "*"):
        expected[resource.key] = existing.meta.version
    [stored] = await ctx.store.write_batch([resource], [], expected=expected, require=require)
    log.info("%s %s %s", "created" if status == 201 else "updated", desc.name, _where(mesh, name))
    await after_secret_change(ctx.store, ctx.mode, desc, name)
    return status, stored


def _delete_handler(desc: TypeDescriptor) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        check_writable(desc, ctx.mode)
        if_match = parse_if_match(request)
        mesh, name = request.match_info.get("mesh", ""), request.match_info["name"]
        expected = None if if_match in (None, "*") else if_match
        existing = await ctx.store.get(desc.name, mesh, name)  # 404 before any other answer
        check_not_synced_copy(ctx, desc, existing)
        if ctx.before_delete is not None:
            try:
                await ctx.before_delete(desc, mesh, name)
            except DeleteRefusedError as exc:
                raise ApiError(409, "Conflict", str(exc)) from None
        await ctx.store.delete(desc.name, mesh, name, expected_version=expected)
        log.info("deleted %s %s", desc.name, _where(mesh, name))
        if desc.name == MESH.name:
            count = await ctx.store.delete_mesh_scoped(name)
            log.info("deleted %d resource(s) scoped to mesh %r", count, name)
        await after_secret_change(ctx.store, ctx.mode, desc, name)
        if ctx.after_delete is not None:
            await ctx.after_delete(desc, existing)
        return web.json_response({})

    return handle


def _where(mesh: str, name: str) -> str:
    return f"{name!r} in mesh {mesh!r}" if mesh else repr(name)


# ---- route generation ----------------------------------------------------------------------

LIST_QUERY = (
    QueryParam(
        "size",
        "Items per page (1-1000, default 100).",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    ),
    QueryParam("offset", "Opaque position returned in `next`."),
    QueryParam("name", "Only items whose name contains this text."),
)
_DRY_RUN = QueryParam(
    "dryRun", "Validate and return the would-be result without storing.", {"type": "boolean"}
)
_IF_MATCH = QueryParam(
    "If-Match",
    'Only if the stored version is this one (its ETag, e.g. "42"; "*": any existing version).',
    location="header",
)
_ERROR = ref("Error")
# The version of the resource returned (not sent by a dry run, which stores nothing).
_ETAG = {"description": "The resource's version, for If-Match", "schema": {"type": "string"}}


def add_resource_routes(routes: RouteTable, ctx: ApiContext) -> None:
    """Adds list/get/put/delete routes (and their schemas) for every registered type."""

    def schemas() -> dict[str, dict[str, Any]]:
        bodies, definitions = spec_schemas(ctx.registry)
        types = {d.name: resource_schema(d, bodies.get(d.name)) for d in ctx.registry}
        return {**definitions, **types}

    routes.schemas_later(schemas)
    for desc in ctx.registry:
        schema = ref(desc.name)
        list_schema = routes.schema(
            desc.name + "List",
            {
                "type": "object",
                "required": ["total", "items", "next"],
                "properties": {
                    "total": {"type": "integer"},
                    "items": {"type": "array", "items": schema},
                    "next": {"type": ["string", "null"], "format": "uri"},
                },
            },
        )
        # Key material is read by admins only; other types by anyone.
        read_access = Access.ADMIN if desc.secret else Access.PUBLIC
        if desc.scope is Scope.GLOBAL:
            collection = f"/{desc.plural}"
        else:
            collection = f"/meshes/{{mesh}}/{desc.plural}"
            routes.add(
                Operation(
                    "GET",
                    f"/{desc.plural}",
                    f"list{desc.name}AcrossMeshes",
                    f"List {desc.name} resources of every mesh",
                    desc.name,
                    LIST_QUERY,
                    responses={
                        200: ("A page of resources", list_schema),
                        400: ("Bad query", _ERROR),
                    },
                    access=read_access,
                ),
                _list_handler(desc, across_meshes=True),
            )
        item = f"{collection}/{{name}}"
        routes.add(
            Operation(
                "GET",
                collection,
                f"list{desc.name}",
                f"List {desc.name} resources",
                desc.name,
                LIST_QUERY,
                responses={200: ("A page of resources", list_schema), 400: ("Bad query", _ERROR)},
                access=read_access,
                path_schemas=RESOURCE_PATH,
            ),
            _list_handler(desc, across_meshes=False),
        )
        routes.add(
            Operation(
                "GET",
                item,
                f"get{desc.name}",
                f"Get one {desc.name} (ETag: its version)",
                desc.name,
                responses={200: ("The resource", schema), 404: ("Not found", _ERROR)},
                response_headers={200: {"ETag": {**_ETAG, "required": True}}},
                access=read_access,
                path_schemas=RESOURCE_PATH,
            ),
            _get_handler(desc),
        )
        write_errors: dict[int, tuple[str, dict[str, Any] | None]] = {
            400: ("Invalid resource, URL mismatch, unknown mesh or bad If-Match", _ERROR),
            405: ("This side does not own the type, or the resource is a synced copy", _ERROR),
            409: ("If-Match version is stale, or the deletion is refused", _ERROR),
        }
        routes.add(
            Operation(
                "PUT",
                item,
                f"put{desc.name}",
                f"Create or replace a {desc.name} (If-Match for optimistic concurrency)",
                desc.name,
                (_DRY_RUN, _IF_MATCH),
                request_schema=schema,
                responses={
                    200: ("Updated", schema),
                    201: ("Created", schema),
                    **write_errors,
                    413: ("Body too large", _ERROR),
                    415: ("Body is not JSON or YAML", _ERROR),
                },
                response_headers={200: {"ETag": _ETAG}, 201: {"ETag": _ETAG}},
                path_schemas=RESOURCE_PATH,
            ),
            _put_handler(desc),
        )
        cascade = " and everything in it" if desc.name == MESH.name else ""
        routes.add(
            Operation(
                "DELETE",
                item,
                f"delete{desc.name}",
                f"Delete a {desc.name}{cascade}",
                desc.name,
                (_IF_MATCH,),
                responses={
                    200: ("Deleted", {"type": "object", "maxProperties": 0}),
                    400: ("Bad If-Match", _ERROR),
                    404: ("Not found", _ERROR),
                    405: write_errors[405],
                    409: write_errors[409],
                },
                path_schemas=RESOURCE_PATH,
            ),
            _delete_handler(desc),
        )


def resource_schema(desc: TypeDescriptor, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resource: its meta fields, and its body's schema generated from the type's model
    (under `spec`, or Kuma's top-level fields)."""
    props: dict[str, Any] = {
        "type": {"const": desc.name},
        "name": {"type": "string"},
        "creationTime": {"type": "string", "format": "date-time", "readOnly": True},
        "modificationTime": {"type": "string", "format": "date-time", "readOnly": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    required = ["type", "name"]
    if desc.scope is Scope.MESH:
        props["mesh"] = {"type": "string"}
        required.append("mesh")
    schema: dict[str, Any] = {
        "type": "object",
        "description": desc.description,
        "properties": props,
        "required": required,
    }
    body = body or {"type": "object"}
    if desc.spec_wrapped:
        props["spec"] = body
        schema["additionalProperties"] = False
    elif "properties" in body:
        props.update(body["properties"])
        required += [f for f in body.get("required", ()) if f not in required]
        if body.get("additionalProperties") is False:
            schema["additionalProperties"] = False
    return schema
