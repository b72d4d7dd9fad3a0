"""Who calls the API and what they may do: user tokens, checked before any handler runs.

A caller presents `Authorization: Bearer <user token>` (meshfed.auth.tokens, kind `user`,
verified against the user-token public keys in this control plane's store: the global's own,
or a zone's synced copies). Every route declares its access (`routes.Access`): PUBLIC routes
are open to anonymous callers, ADMIN routes need a token of group `mesh-system:admin`. By
default reads are public and writes are admin; secret data (Secret, GlobalSecret, the store
event stream, token issuing) is admin even to read.

Secure by default: anonymous callers may read non-secret resources, nothing else, even from
localhost. `localhost_is_admin` gives Kuma's behaviour (a loopback caller is admin) to an
operator who asks for it. A token that is present but invalid is refused (401) on every route,
never quietly treated as anonymous, so a client learns at once that its token is bad.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from meshfed.api.errors import ApiError
from meshfed.api.routes import ROUTES, Access, Handler
from meshfed.auth.credentials import Verifier
from meshfed.auth.tokens import ADMIN_GROUP, TokenError, UserClaims

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="meshfed"'}


@dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...] = ()
    authenticated: bool = False

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


IDENTITY: Final = web.RequestKey("meshfed_identity", Identity)  # the caller, set by ApiAuth
ANONYMOUS = Identity("mesh-system:anonymous", ("mesh-system:unauthenticated",))
LOCALHOST_ADMIN = Identity("mesh-system:localhost", (ADMIN_GROUP,), authenticated=False)


def identity_of(request: web.Request) -> Identity:
    """The caller of a request that passed the middleware."""
    ident: Identity = request.get(IDENTITY, ANONYMOUS)
    return ident


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header; ApiError 401 for another scheme."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "Unauthorized",
            "the Authorization header must be 'Bearer <user token>'",
            headers=_CHALLENGE,
        )
    return token.strip()


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_access(access: Access, ident: Identity, what: str) -> None:
    """Raises ApiError 401 (anonymous) or 403 (signed in, not allowed) unless allowed."""
    if access is Access.PUBLIC or ident.is_admin:
        return
    if not ident.authenticated:
        raise ApiError(
            401,
            "Unauthorized",
            f"{what} needs an admin user token (Authorization: Bearer ...); anonymous callers "
            "may only read non-secret resources",
            headers=_CHALLENGE,
        )
    raise ApiError(
        403,
        "Forbidden",
        f"user {ident.name!r} is not in group {ADMIN_GROUP!r}: {what} is admin only",
    )


NO_KEYS_YET = (
    "this control plane has no user-token keys yet: a zone receives them from the global "
    "over KDS once connected (retry then); a standalone control plane makes them at start"
)


def refusal_detail(reason: str, no_keys: bool) -> str:
    """What a caller with a refused token is told; with no keys at all, why none can pass."""
    return f"{NO_KEYS_YET} ({reason})" if no_keys else f"invalid user token: {reason}"


class ApiAuth:
    """The authentication middleware of one API server."""

    def __init__(self, verifier: Verifier, *, localhost_is_admin: bool = False) -> None:
        self.verifier = verifier
        self.localhost_is_admin = localhost_is_admin

    async def identify(self, request: web.Request) -> Identity:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            if self.localhost_is_admin and is_loopback(request.remote):
                return LOCALHOST_ADMIN
            return ANONYMOUS
        try:
            verified = await self.verifier.verify(token)
        except TokenError as exc:
            try:
                no_keys = not (await self.verifier.trusted()).keys
            except Exception:  # the store is down: the verify error already says so
                no_keys = False
            raise ApiError(
                401, "Unauthorized", refusal_detail(str(exc), no_keys), headers=_CHALLENGE
            ) from None
        claims = verified.claims
        assert isinstance(claims, UserClaims)
        return Identity(claims.name, claims.groups, authenticated=True)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Routes resolve before middlewares run: an unknown path or method is answered by the
        # router (404/405) without looking at credentials, as that reveals nothing.
        resource = request.match_info.route.resource
        if resource is None:
            return await handler(request)
        op = request.app[ROUTES].operation(request.method, resource.canonical)
        # A route outside the table (none should exist) is admin only: fail closed.
        access = op.required_access if op is not None else Access.ADMIN
        ident = await self.identify(request)
        request[IDENTITY] = ident
        check_access(access, ident, f"{request.method} {resource.canonical}")
        return await handler(request)
