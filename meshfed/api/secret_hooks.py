"""What the API does around writes of key material (Secret, GlobalSecret).

- A mesh CA Secret (meshfed.pki.ca_secrets) must be valid PEM and match the other half as
  stored; the write also requires that half at the version checked, so a concurrent change of
  it makes the PUT read and check again rather than store a mismatched pair.
- After a token signing key (GlobalSecret `zone|user-token-signing-[public-]key-N`) is written
  or deleted through the global's API, the public keys are published again
  (meshfed.auth.credentials.publish_public_keys): deleting a private key retires its tokens in
  every zone in one step, and a public key always is the half of a private one.
"""

from __future__ import annotations

import logging

from meshfed.auth import keyring
from meshfed.auth.credentials import publish_public_keys
from meshfed.auth.tokens import TokenKind
from meshfed.pki.ca_secrets import ca_secret, check_ca_secret
from meshfed.resources.descriptors import Mode, TypeDescriptor
from meshfed.resources.errors import FieldError, ValidationError
from meshfed.resources.model import Resource
from meshfed.store.base import NotFoundError, Requirement, ResourceStore

log = logging.getLogger("meshfed.api.resources")


async def check_secret_write(
    store: ResourceStore, resource: Resource, require: list[Requirement]
) -> None:
    """Raises ValidationError (field `data`) for a mesh CA half that is malformed or does not
    match the stored other half; adds that half's version to `require`."""
    if resource.type != keyring.SECRET:
        return
    half = ca_secret(resource.mesh, resource.name)
    if half is None:
        return
    try:
        other = await store.get(keyring.SECRET, resource.mesh, half.counterpart)
    except NotFoundError:
        other = None
    other_data = other.spec.get("data") if other is not None else None
    data = resource.spec.get("data")
    problem = check_ca_secret(
        half,
        data if isinstance(data, str) else "",
        other_data if isinstance(other_data, str) else None,
    )
    if problem is not None:
        raise ValidationError([FieldError("data", problem)])
    if other is not None:
        require.append((keyring.SECRET, resource.mesh, half.counterpart, other.meta.version))


def is_signing_key_secret(name: str) -> bool:
    return any(
        keyring.serial_of(kind, name) is not None
        or keyring.public_serial_of(kind, name) is not None
        for kind in (TokenKind.ZONE, TokenKind.USER)
    )


async def after_secret_change(
    store: ResourceStore, mode: Mode, desc: TypeDescriptor, name: str
) -> None:
    """Publishes the public keys again after a signing-key GlobalSecret changed (global)."""
    if mode is not Mode.GLOBAL or desc.name != keyring.GLOBAL_SECRET:
        return
    if not is_signing_key_secret(name):
        return
    changes = await publish_public_keys(store)
    if changes:
        log.info("GlobalSecret %r changed: %d public key(s) published again", name, changes)
