"""`POST /tokens/zone` on the global: an admin issues a zone token (answered as text/plain,
as Kuma's `/tokens/zone`), e.g. through `meshctl generate zone-token`."""

from __future__ import annotations

import logging

from aiohttp import web

from meshfed.api.auth import identity_of
from meshfed.api.body import read_document
from meshfed.api.context import CONTEXT
from meshfed.api.errors import bad_request
from meshfed.api.routes import Access, Operation, RouteTable, ref
from meshfed.auth.zone_tokens import DEFAULT_VALIDITY, issue_zone_token, parse_request

log = logging.getLogger("meshfed.api")

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["zone"],
    "additionalProperties": False,
    "properties": {
        "zone": {"type": "string", "description": "The zone the token identifies"},
        "scope": {
            "type": "array",
            "items": {"type": "string", "enum": ["kds", "ingress", "egress"]},
            "description": "What the token may be used for (default: kds and ingress)",
        },
        "validFor": {
            "type": "string",
            "description": f"How long the token is valid (default {DEFAULT_VALIDITY})",
        },
    },
}


def add_zone_token_route(routes: RouteTable) -> None:
    routes.add(
        Operation(
            "POST",
            "/tokens/zone",
            "generateZoneToken",
            "Issue a zone token (admin only): the zone control plane's KDS credential and its "
            "proxies'",
            "Tokens",
            request_schema=routes.schema("ZoneTokenRequest", REQUEST_SCHEMA),
            responses={
                200: ("The token (text/plain)", None),
                400: ("Bad request: the fields named", ref("Error")),
                401: ("No admin user token", ref("Error")),
                403: ("Not an admin", ref("Error")),
            },
            access=Access.ADMIN,
        ),
        _generate,
    )


async def _generate(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    parsed = parse_request(await read_document(request, ctx.max_body_bytes))
    if isinstance(parsed, list):
        raise bad_request("the zone token request is not valid", parsed)
    token = await issue_zone_token(ctx.store, parsed)
    log.info(
        "zone token issued for zone %s (scope %s, valid for %s) by %s",
        parsed.zone,
        ",".join(parsed.scope),
        parsed.valid_for,
        identity_of(request).name,
    )
    return web.Response(text=token, content_type="text/plain")
