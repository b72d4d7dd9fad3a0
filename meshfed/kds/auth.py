"""Who may talk KDS: the zone token a zone presents, and the decision to accept or refuse it.

A zone sends `client-id: <zone>` and `authorization: Bearer <zone token>` on both streams and
on every HealthCheck. The global verifies the token (meshfed.auth, kind `zone`) before it
looks at anything else the zone sent, creates a Zone, or sends a byte. Pure decision
(`read_request`, `decide`) and one async edge (`KdsAuthenticator`) that reads the keys.

A refusal names what is wrong (missing, malformed, expired, revoked, unknown key, another
zone's token, a token without scope `kds`) and never echoes the token. A valid token of
another zone or scope is PERMISSION_DENIED; anything else is UNAUTHENTICATED; a missing or
malformed zone name is INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from meshfed.auth.tokens import TokenError, Verified, ZoneClaims, ZoneScope
from meshfed.kds.stream import CLIENT_ID
from meshfed.resources.codec import check_name

AUTHORIZATION = "authorization"  # gRPC metadata keys are lowercase
CLIENT_INSTANCE = "client-instance-id"  # which zone-cp process this is
MAX_METADATA_VALUE = 8192  # a zone token is ~500 bytes; a client id at most 253
SINGLE_KEYS = (CLIENT_ID, AUTHORIZATION, CLIENT_INSTANCE)

Metadata = Iterable[tuple[str, str | bytes]]


@dataclass(frozen=True)
class Refusal:
    """Why a KDS call is refused, as the zone will see it (status and message)."""

    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class KdsRequest:
    """What a call says about itself, before the token is checked."""

    zone: str
    token: str
    instance: str = ""


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def read_request(metadata: Metadata | None) -> KdsRequest | Refusal:
    """The zone name, token and instance of a call; a Refusal when one is missing, repeated
    or malformed. Pure."""
    found: dict[str, list[str]] = {}
    for key, value in metadata or ():
        if key in SINGLE_KEYS:
            found.setdefault(key, []).append(_text(value))
    for key in SINGLE_KEYS:
        values = found.get(key, [])
        if len(values) > 1:
            return Refusal(
                grpc.StatusCode.INVALID_ARGUMENT, f"gRPC metadata {key!r} is given more than once"
            )
        if values and len(values[0]) > MAX_METADATA_VALUE:
            return Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"gRPC metadata {key!r} is too long")
    zone = (found.get(CLIENT_ID) or [""])[0]
    if not zone:
        return Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"missing gRPC metadata {CLIENT_ID!r}: a zone must send its name",
        )
    problems = check_name(zone, CLIENT_ID)
    if problems:
        return Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid zone name {zone[:80]!r} in metadata {CLIENT_ID!r}: {problems[0].reason}",
        )
    header = (found.get(AUTHORIZATION) or [""])[0]
    if not header:
        return Refusal(
            grpc.StatusCode.UNAUTHENTICATED,
            f"missing gRPC metadata {AUTHORIZATION!r}: a zone must send 'Bearer <zone token>' "
            "(zone-cp --zone-token-file; issue one with meshctl generate zone-token)",
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return Refusal(
            grpc.StatusCode.UNAUTHENTICATED,
            f"malformed gRPC metadata {AUTHORIZATION!r}: expected 'Bearer <zone token>'",
        )
    instance = (found.get(CLIENT_INSTANCE) or [""])[0]
    return KdsRequest(zone, token, instance)


def decide(request: KdsRequest, verified: Verified | TokenError) -> Refusal | None:
    """None when the verified token lets `request.zone` talk KDS; else why not. Pure."""
    if isinstance(verified, TokenError):
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, f"invalid zone token: {verified}")
    claims = verified.claims
    if not isinstance(claims, ZoneClaims):  # the verifier checks the kind; never trust it blindly
        return Refusal(grpc.StatusCode.UNAUTHENTICATED, "invalid zone token: not a zone token")
    if claims.zone != request.zone:
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the zone token is not valid for zone {request.zone!r} (metadata {CLIENT_ID!r}): "
            "a zone token names the one zone it was issued for",
        )
    if ZoneScope.KDS not in claims.scope:
        have = ", ".join(str(s) for s in claims.scope)
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the zone token lacks scope 'kds' (it has: {have}); issue one with --scope kds",
        )
    return None


class TokenVerifier(Protocol):
    async def verify(self, token: str | bytes | None, mesh: str = "") -> Verified:
        """Raises TokenError (meshfed.auth.credentials.Verifier)."""


class KdsAuthenticator:
    """Reads a call's metadata and verifies its zone token against the store's keys."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, metadata: Metadata | None) -> KdsRequest | Refusal:
        request = read_request(metadata)
        if isinstance(request, Refusal):
            return request
        try:
            verified: Verified | TokenError = await self._verifier.verify(request.token)
        except TokenError as exc:
            verified = exc
        refusal = decide(request, verified)
        return refusal if refusal is not None else request


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace dropped); ValueError says what is wrong,
    never the token."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the zone token file: {exc}") from None
    if len(raw) > MAX_METADATA_VALUE:
        raise ValueError(f"the zone token file {path} is too large to hold a token")
    token = raw.decode("ascii", "replace").strip()
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError(f"the zone token file {path} does not hold one token")
    return token
