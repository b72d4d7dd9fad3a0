"""Whether a proxy's token lets it connect as the resource it announces: pure decisions.

zone-cp's dataplane config server (zone_cp/dpserver.py) asks these before it registers a
proxy or issues it a certificate:

- `bearer_of(metadata)`: the token of the call's `authorization: Bearer ...` metadata.
- `dataplane_refusal(claims, dataplane)`: a verified dataplane token against the Dataplane of
  a sidecar's Hello. As Kuma's universal authenticator (pkg/xds/auth/universal): the token's
  mesh must be the Dataplane's, a token `name` must be the Dataplane's name, and for every tag
  the token restricts (always `kuma.io/service`) every inbound must carry that tag with one of
  the allowed values. So a token for `web` can never get a certificate for `backend`. Kuma
  wants the tag values equal; here the token's values must cover the Dataplane's (a token for
  `web,web-admin` also serves a Dataplane with only `web`), which grants nothing the token does
  not name.
- `ingress_refusal(claims, zone)`: a verified zone token against the zone a zone ingress
  connects to: scope `ingress`, and the token's zone is this zone.

Each returns None (allowed) or the reason, phrased for the proxy's operator.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Final

from meshfed.auth.tokens import MAX_TOKEN_BYTES, DataplaneClaims, ZoneClaims, ZoneScope
from meshfed.resources.model import Resource
from meshfed.resources.models.proxies import DataplaneSpec
from meshfed.resources.typed import spec_as, unfit_reason

AUTHORIZATION: Final = "authorization"  # gRPC metadata keys are lower case


class BadCredentials(ValueError):
    """The call's credentials cannot be read (not a token problem: a request problem)."""


def bearer_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the one `authorization: Bearer <token>` entry; None when there is none;
    BadCredentials for another scheme, an empty token or several entries."""
    found: list[str | bytes] = [v for k, v in metadata or () if k.lower() == AUTHORIZATION]
    if not found:
        return None
    if len(found) > 1:
        raise BadCredentials("more than one authorization entry in the call's metadata")
    value = found[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise BadCredentials("the authorization metadata is not ASCII") from None
    if len(value) > MAX_TOKEN_BYTES + 16:
        raise BadCredentials(f"the authorization metadata is longer than {MAX_TOKEN_BYTES} bytes")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadCredentials("the authorization metadata must be 'Bearer <token>'")
    return token.strip()


def claimed_mesh(token: str) -> str | None:
    """The `mesh` claim of a token, NOT verified: only to pick the mesh whose keys verify it,
    so a genuine token for another mesh is refused for what it is (PERMISSION_DENIED naming
    the mesh) rather than as a bad signature. None when the token does not say."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > MAX_TOKEN_BYTES:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return None
    mesh = payload.get("mesh") if isinstance(payload, dict) else None
    return mesh if isinstance(mesh, str) and 0 < len(mesh) <= 253 else None


def _inbound_tags(dataplane: Resource) -> list[dict[str, str]] | None:
    """The tags of each inbound; None if the body does not fit the model."""
    spec = spec_as(dataplane, DataplaneSpec)
    if spec is None:
        return None
    return [i.tags for i in spec.networking.inbound or ()]


def dataplane_refusal(claims: DataplaneClaims, dataplane: Resource) -> str | None:
    """Why a sidecar with this (verified) token may not connect as `dataplane`; None: it may."""
    if claims.mesh != dataplane.meta.mesh:
        return (
            f"the dataplane token is for mesh {claims.mesh!r}, not mesh {dataplane.meta.mesh!r} "
            "of this Dataplane"
        )
    if claims.name and claims.name != dataplane.meta.name:
        return (
            f"the dataplane token is for a Dataplane named {claims.name!r}, not "
            f"{dataplane.meta.name!r}"
        )
    inbounds = _inbound_tags(dataplane)
    if inbounds is None:
        return f"the Dataplane is not valid: {unfit_reason(dataplane, DataplaneSpec)}"
    if not inbounds:
        return "the Dataplane has no inbound for the token to cover"
    for tag in sorted(claims.tags):
        allowed = claims.tags[tag]
        for index, tags in enumerate(inbounds):
            value = tags.get(tag)
            if value is None or value not in allowed:
                shown = "no value" if value is None else repr(value)
                return (
                    f"inbound[{index}] has {tag}={shown}, which the dataplane token does not "
                    f"allow (allowed: {', '.join(allowed)})"
                )
    return None


def ingress_refusal(claims: ZoneClaims, zone: str) -> str | None:
    """Why a zone ingress with this (verified) zone token may not connect to `zone`'s
    control plane; None: it may."""
    if ZoneScope.INGRESS not in claims.scope:
        scopes = ", ".join(str(s) for s in claims.scope)
        return f"the zone token has scope {scopes}, not ingress"
    if claims.zone != zone:
        return f"the zone token is for zone {claims.zone!r}, not this zone {zone!r}"
    return None


def egress_refusal(claims: ZoneClaims, zone: str) -> str | None:
    """Why a zone egress with this (verified) zone token may not connect to `zone`'s
    control plane; None: it may. Scope `egress` only: an ingress's token is refused."""
    if ZoneScope.EGRESS not in claims.scope:
        scopes = ", ".join(str(s) for s in claims.scope)
        return f"the zone token has scope {scopes}, not egress"
    if claims.zone != zone:
        return f"the zone token is for zone {claims.zone!r}, not this zone {zone!r}"
    return None
