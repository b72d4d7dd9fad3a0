"""Issuing user tokens and adding signing keys, on the global (admin only), as Kuma does.

- `POST /tokens/user` with `{"name": "jane", "groups": ["team-a"], "validFor": "24h"}` answers
  the signed token as text/plain (Kuma's `/tokens/user`; `meshctl generate user-token`).
- `POST /tokens/signing-keys/{kind}` (kind `zone` or `user`) adds the next signing key of that
  kind: new tokens are signed with it, older tokens stay valid until their key's GlobalSecret
  is deleted (rotation; the public keys are published again at once).

Kuma: https://kuma.io/docs/latest/production/secure-deployment/api-server-auth/
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from meshfed.api.body import read_document
from meshfed.api.context import CONTEXT, ApiContext
from meshfed.api.errors import ApiError
from meshfed.api.routes import Access, Operation, RouteTable, ref
from meshfed.auth.credentials import add_signing_key, ensure_signing_key, publish_public_keys
from meshfed.auth.tokens import MAX_VALIDITY, TokenKind, UserClaims, issue
from meshfed.config import parse_duration
from meshfed.resources.descriptors import Mode
from meshfed.resources.errors import FieldError, ValidationError

MAX_NAME = 253
MAX_GROUPS = 64
ROTATABLE = {"zone": TokenKind.ZONE, "user": TokenKind.USER}

USER_TOKEN_REQUEST = {
    "type": "object",
    "required": ["name", "validFor"],
    "properties": {
        "name": {"type": "string", "description": "who the token is for"},
        "groups": {"type": "array", "items": {"type": "string"}},
        "validFor": {"type": "string", "description": "a duration: 30m, 24h, 8760h"},
    },
    "additionalProperties": False,
}


def parse_user_token_request(doc: Any) -> tuple[UserClaims, dt.timedelta]:
    """The claims and validity asked for; ValidationError naming every bad field."""
    if not isinstance(doc, dict):
        raise ValidationError([FieldError("", "the body must be an object")], "Bad Request")
    errors: list[FieldError] = []
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        errors.append(FieldError("name", f"must be a non-empty string of at most {MAX_NAME}"))
    groups = doc.get("groups", [])
    if (
        not isinstance(groups, list)
        or len(groups) > MAX_GROUPS
        or not all(isinstance(g, str) and 0 < len(g) <= MAX_NAME for g in groups)
    ):
        errors.append(FieldError("groups", f"must be a list of at most {MAX_GROUPS} names"))
        groups = []
    valid_for = dt.timedelta(0)
    raw = doc.get("validFor")
    try:
        if not isinstance(raw, str):
            raise ValueError("required, a duration such as 30m or 24h")
        valid_for = dt.timedelta(seconds=parse_duration(raw))
        if valid_for > MAX_VALIDITY:
            raise ValueError(f"must be at most {MAX_VALIDITY.days * 24}h")
    except ValueError as exc:
        errors.append(FieldError("validFor", str(exc)))
    for key in sorted(set(doc) - {"name", "groups", "validFor"}):
        errors.append(FieldError(str(key), "unknown field"))
    if errors:
        raise ValidationError(errors, "Bad Request")
    assert isinstance(name, str)
    return UserClaims(name.strip(), tuple(dict.fromkeys(groups))), valid_for


def add_user_token_routes(routes: RouteTable, ctx: ApiContext) -> None:
    """On the global only: it holds the private keys (a zone has the public halves)."""
    if ctx.mode is not Mode.GLOBAL:
        return
    routes.add(
        Operation(
            "POST",
            "/tokens/user",
            "generateUserToken",
            "Issue a user token (text/plain)",
            "Tokens",
            request_schema=routes.schema("UserTokenRequest", USER_TOKEN_REQUEST),
            responses={
                200: ("The token", None),
                400: ("Bad request", ref("Error")),
            },
            access=Access.ADMIN,
        ),
        _user_token,
    )
    routes.add(
        Operation(
            "POST",
            "/tokens/signing-keys/{kind}",
            "addSigningKey",
            "Add the next signing key of zone or user tokens (rotation)",
            "Tokens",
            responses={
                201: (
                    "The new key's name",
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                ),
                404: ("Unknown kind", ref("Error")),
            },
            access=Access.ADMIN,
            path_schemas={"kind": {"type": "string", "enum": sorted(ROTATABLE)}},
        ),
        _signing_key,
    )


async def _user_token(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    claims, valid_for = parse_user_token_request(await read_document(request, ctx.max_body_bytes))
    key = await ensure_signing_key(ctx.store, TokenKind.USER)
    return web.Response(text=issue(claims, key, valid_for), content_type="text/plain")


async def _signing_key(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    kind = ROTATABLE.get(request.match_info["kind"])
    if kind is None:
        raise ApiError(
            404, "Not Found", f"no signing keys of kind {request.match_info['kind']!r}: zone, user"
        )
    key = await add_signing_key(ctx.store, kind)
    await publish_public_keys(ctx.store)
    return web.json_response({"name": key.kid}, status=201)
