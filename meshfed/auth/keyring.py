"""Where token keys live in the store, and how a verifier or an issuer reads them.

Pure code over resources (no store calls). Names follow Kuma's:

- GlobalSecret `zone-token-signing-key-N`: zone-token signing key N (private, global only);
  `zone-token-signing-public-key-N`: its public half (synced to zones).
- GlobalSecret `user-token-signing-key-N` / `user-token-signing-public-key-N`: the same for
  user tokens.
- GlobalSecret `zone-token-revocations`, `user-token-revocations`: revoked token ids
  (comma-separated).
- GlobalSecret `admin-user-token`: the bootstrap admin user token.
- Secret `dataplane-token-signing-key-N` in a mesh: that mesh's dataplane-token signing key N;
  Secret `dataplane-token-revocations`: its revoked dataplane token ids.

A token's `kid` is the name of the private key's secret; verifiers find the public half by
name. The dataplane-token key is private key material synced to zones like the mesh CA, since
every zone-cp issues and checks dataplane tokens of its meshes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Final

from meshfed.auth.tokens import (
    KeySet,
    SigningKey,
    TokenKind,
    key_set,
    parse_revocations,
)
from meshfed.resources.model import Meta, Resource

GLOBAL_SECRET: Final = "GlobalSecret"
SECRET: Final = "Secret"
ADMIN_USER_TOKEN: Final = "admin-user-token"

_SIGNING_PREFIX = {
    TokenKind.ZONE: "zone-token-signing-key-",
    TokenKind.USER: "user-token-signing-key-",
    TokenKind.DATAPLANE: "dataplane-token-signing-key-",
}
_REVOCATIONS = {
    TokenKind.ZONE: "zone-token-revocations",
    TokenKind.USER: "user-token-revocations",
    TokenKind.DATAPLANE: "dataplane-token-revocations",
}
_SERIAL = re.compile(r"^[0-9]{1,9}$")


def secret_type(kind: TokenKind) -> str:
    """Dataplane keys are per mesh (Secret); zone and user keys are global (GlobalSecret)."""
    return SECRET if kind is TokenKind.DATAPLANE else GLOBAL_SECRET


def signing_key_name(kind: TokenKind, serial: int) -> str:
    return f"{_SIGNING_PREFIX[kind]}{serial}"


def public_key_name(private_name: str) -> str:
    return private_name.replace("-signing-key-", "-signing-public-key-", 1)


def revocations_name(kind: TokenKind) -> str:
    return _REVOCATIONS[kind]


def serial_of(kind: TokenKind, name: str) -> int | None:
    prefix = _SIGNING_PREFIX[kind]
    if not name.startswith(prefix) or not _SERIAL.match(name[len(prefix) :]):
        return None
    return int(name[len(prefix) :])


def public_serial_of(kind: TokenKind, name: str) -> int | None:
    if "-signing-public-key-" not in name:
        return None
    return serial_of(kind, name.replace("-signing-public-key-", "-signing-key-", 1))


def secret_bytes(res: Resource) -> bytes | None:
    """A secret's decoded `data`, or None when it is not valid base64."""
    data = res.spec.get("data")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def make_secret(kind: TokenKind, name: str, data: bytes, mesh: str = "") -> Resource:
    return Resource(
        secret_type(kind),
        Meta(name=name, mesh=mesh if kind is TokenKind.DATAPLANE else ""),
        {"data": base64.b64encode(data).decode()},
    )


def signing_keys(kind: TokenKind, secrets: Iterable[Resource], mesh: str = "") -> list[SigningKey]:
    """The private signing keys of `kind` (of `mesh` for dataplane keys), oldest first; a
    secret that does not hold a P-256 key is left out."""
    found: list[tuple[int, SigningKey]] = []
    for res in secrets:
        if res.type != secret_type(kind) or (kind is TokenKind.DATAPLANE and res.mesh != mesh):
            continue
        serial = serial_of(kind, res.meta.name)
        pem = secret_bytes(res) if serial is not None else None
        if serial is None or pem is None:
            continue
        try:
            found.append((serial, SigningKey.from_pem(res.meta.name, pem)))
        except ValueError:
            continue
    return [key for _, key in sorted(found, key=lambda item: item[0])]


def newest_signing_key(
    kind: TokenKind, secrets: Iterable[Resource], mesh: str = ""
) -> SigningKey | None:
    """The key new tokens are signed with: the highest serial."""
    keys = signing_keys(kind, secrets, mesh)
    return keys[-1] if keys else None


def next_serial(kind: TokenKind, secrets: Iterable[Resource], mesh: str = "") -> int:
    serials = [
        serial_of(kind, r.meta.name)
        for r in secrets
        if r.type == secret_type(kind) and (kind is not TokenKind.DATAPLANE or r.mesh == mesh)
    ]
    return max((s for s in serials if s is not None), default=0) + 1


def revoked(kind: TokenKind, secrets: Iterable[Resource], mesh: str = "") -> frozenset[str]:
    name = _REVOCATIONS[kind]
    for res in secrets:
        if res.type == secret_type(kind) and res.meta.name == name:
            if kind is TokenKind.DATAPLANE and res.mesh != mesh:
                continue
            raw = secret_bytes(res)
            return parse_revocations(raw.decode("utf-8", "replace")) if raw else frozenset()
    return frozenset()


def trusted_keys(kind: TokenKind, secrets: Iterable[Resource], mesh: str = "") -> KeySet:
    """What a verifier of `kind` tokens trusts. Zone and user tokens: the public keys (all a
    zone has; the global holds the private ones too, and their public halves are published
    beside them). Dataplane tokens: the mesh's signing keys themselves."""
    secrets = list(secrets)
    pems: dict[str, bytes] = {}
    if kind is TokenKind.DATAPLANE:
        for key in signing_keys(kind, secrets, mesh):
            pems[key.kid] = key.public_pem
    else:
        for res in secrets:
            if res.type != GLOBAL_SECRET:
                continue
            serial = public_serial_of(kind, res.meta.name)
            pem = secret_bytes(res) if serial is not None else None
            if serial is not None and pem is not None:
                pems[signing_key_name(kind, serial)] = pem
    return key_set(pems, revoked(kind, secrets, mesh))


def published_public_keys(kind: TokenKind, secrets: Iterable[Resource]) -> list[Resource]:
    """The public-key GlobalSecrets that should exist for the private keys present."""
    return [
        make_secret(kind, public_key_name(key.kid), key.public_pem)
        for key in signing_keys(kind, secrets)
    ]
