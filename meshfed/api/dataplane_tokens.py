"""`POST /tokens/dataplane`: issue a dataplane token (Kuma's endpoint and body), admin only.

Served by the global and by every zone: each holds every mesh's dataplane-token signing key
(the global makes it, KDS syncs it as a Secret; a standalone zone makes its own). The body is
Kuma's DataplaneTokenRequest:

    {"mesh": "default", "tags": {"kuma.io/service": ["web"]}, "name": "web-1",
     "type": "dataplane", "validFor": "24h"}

`mesh`, `tags` (with `kuma.io/service`) and `validFor` are required; `name` binds the token
to one Dataplane name; `type` may only be `dataplane` (a zone ingress authenticates with a
zone token of scope `ingress`). The answer is the token as text/plain. A mesh that does not
exist answers 404; a mesh whose key has not been made or synced yet answers 400 saying so.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from meshfed.api.body import read_document
from meshfed.api.context import CONTEXT
from meshfed.api.errors import bad_request
from meshfed.api.routes import Access, Operation, RouteTable, ref
from meshfed.auth import keyring
from meshfed.auth.tokens import MAX_VALIDITY, DataplaneClaims, TokenKind, issue
from meshfed.resources.errors import FieldError
from meshfed.resources.types.common import SERVICE_TAG
from meshfed.resources.types.mesh import MESH
from meshfed.resources.values import parse_duration

DATAPLANE_TOKEN_PATH: Final = "/tokens/dataplane"
MAX_TAGS: Final = 64  # per token, and values per tag (meshfed.auth.tokens reads no more)
_NAME = re.compile(r"[0-9a-z._-]{1,253}")
_TAG_KEY = re.compile(r"[a-zA-Z0-9.\-_:/]{1,253}")
_TAG_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]{1,253}")
_FIELDS: Final = ("mesh", "tags", "name", "type", "validFor")

REQUEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["mesh", "tags", "validFor"],
    "additionalProperties": False,
    "properties": {
        "mesh": {"type": "string"},
        "tags": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "name": {"type": "string"},
        "type": {"type": "string", "enum": ["dataplane"]},
        "validFor": {"type": "string", "description": "a duration such as 24h or 30m"},
    },
}


@dataclass(frozen=True)
class DataplaneTokenRequest:
    claims: DataplaneClaims
    valid_for: dt.timedelta


def parse_dataplane_token_request(doc: Any) -> DataplaneTokenRequest:
    """The request, or a 400 ApiError naming every bad field (pure)."""
    if not isinstance(doc, dict):
        raise bad_request("the body must be an object: {mesh, tags, name, type, validFor}")
    errors: list[FieldError] = [
        FieldError(str(k), f"unknown field (known: {', '.join(_FIELDS)})")
        for k in doc
        if k not in _FIELDS
    ]
    mesh = doc.get("mesh")
    if not isinstance(mesh, str) or not _NAME.fullmatch(mesh):
        errors.append(FieldError("mesh", "required: the name of a Mesh"))
    name = doc.get("name", "")
    if not isinstance(name, str) or (name and not _NAME.fullmatch(name)):
        errors.append(FieldError("name", "must be a Dataplane name (or absent: any name)"))
    kind = doc.get("type", "dataplane")
    if kind != "dataplane":
        errors.append(
            FieldError(
                "type",
                "only 'dataplane' is issued here; a zone ingress authenticates with a zone "
                "token of scope 'ingress'",
            )
        )
    tags = _tags(doc.get("tags"), errors)
    valid_for = _valid_for(doc.get("validFor"), errors)
    if errors:
        raise bad_request("invalid dataplane token request", errors)
    assert isinstance(mesh, str) and isinstance(name, str) and valid_for is not None
    return DataplaneTokenRequest(DataplaneClaims(mesh, tags, name), valid_for)


def _tags(raw: Any, errors: list[FieldError]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict) or not raw.get(SERVICE_TAG):
        errors.append(
            FieldError("tags", f"required: an object with {SERVICE_TAG!r}: [allowed services]")
        )
        return {}
    if len(raw) > MAX_TAGS:
        errors.append(FieldError("tags", f"at most {MAX_TAGS} tags"))
        return {}
    tags: dict[str, tuple[str, ...]] = {}
    for key, values in raw.items():
        path = f"tags[{key!r}]"
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            errors.append(FieldError(path, "is not a tag name"))
            continue
        if (
            not isinstance(values, list)
            or not values
            or len(values) > MAX_TAGS
            or not all(isinstance(v, str) and _TAG_VALUE.fullmatch(v) for v in values)
        ):
            errors.append(
                FieldError(
                    path,
                    f"must be a list of 1 to {MAX_TAGS} tag values (alphanumeric characters, "
                    "'.', '-', '_', ':')",
                )
            )
            continue
        tags[key] = tuple(dict.fromkeys(values))
    return tags


def _valid_for(raw: Any, errors: list[FieldError]) -> dt.timedelta | None:
    nanos = parse_duration(raw, long_units=True) if isinstance(raw, str) else None
    if nanos is None or nanos <= 0:
        errors.append(FieldError("validFor", "required: a positive duration such as 24h"))
        return None
    valid_for = dt.timedelta(microseconds=nanos // 1000)
    if valid_for > MAX_VALIDITY or valid_for < dt.timedelta(seconds=1):
        errors.append(FieldError("validFor", f"must be between 1s and {MAX_VALIDITY.days} days"))
        return None
    return valid_for


def add_dataplane_token_routes(routes: RouteTable) -> None:
    routes.add(
        Operation(
            "POST",
            DATAPLANE_TOKEN_PATH,
            "generateDataplaneToken",
            "Issue a dataplane token (admin only): the sidecar of a Dataplane of `mesh` whose "
            "inbounds carry only the listed tag values may connect with it",
            "Tokens",
            request_schema=REQUEST_SCHEMA,
            responses={
                200: ("The token (text/plain)", None),
                400: ("Invalid request, or the mesh has no signing key yet", ref("Error")),
                404: ("No such mesh", ref("Error")),
            },
            access=Access.ADMIN,
        ),
        _issue_dataplane_token,
    )


async def _issue_dataplane_token(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    req = parse_dataplane_token_request(await read_document(request, ctx.max_body_bytes))
    mesh = req.claims.mesh
    await ctx.store.get(MESH.name, "", mesh)  # NotFoundError: 404 naming the mesh
    secrets = (await ctx.store.list(keyring.secret_type(TokenKind.DATAPLANE), mesh=mesh)).items
    key = keyring.newest_signing_key(TokenKind.DATAPLANE, secrets, mesh)
    if key is None:
        raise bad_request(
            f"mesh {mesh!r} has no dataplane-token signing key yet (the global makes one for "
            "every Mesh and syncs it to the zones); try again in a moment"
        )
    token = issue(req.claims, key, req.valid_for)
    return web.Response(text=token, content_type="text/plain")
