"""Secret and GlobalSecret: opaque base64 data.

Secret is mesh-scoped (the mesh CA, a mesh's dataplane-token signing key) and synced from the
global to every zone, whose control planes sign with it. GlobalSecret (Kuma's type for
mesh-independent credentials: token signing keys, revocation lists, the bootstrap admin token)
stays on the global except for the public halves of the signing keys and the revocation lists,
which zones need to verify tokens: a private signing key never leaves the global.
"""

from __future__ import annotations

import re

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.model import Resource
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN

_MODEL = "meshfed.resources.models.system:SecretSpec"

SECRET = TypeDescriptor(
    name="Secret",
    plural="secrets",
    scope=Scope.MESH,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("secret",),
    model=_MODEL,
    # Never a DATA column: tables must not print key material.
    columns=(NAME_COLUMN, MESH_COLUMN, AGE_COLUMN),
    description="Mesh-scoped secret data (base64), e.g. the mesh CA.",
    secret=True,
)

# The only GlobalSecrets a zone ever receives: public keys and revocation lists.
PUBLIC_GLOBAL_SECRET = re.compile(
    r"^(zone|user)-token-signing-public-key-[0-9]{1,9}$|^(zone|user)-token-revocations$"
)


def is_public_global_secret(res: Resource) -> bool:
    return PUBLIC_GLOBAL_SECRET.match(res.meta.name) is not None


GLOBAL_SECRET = TypeDescriptor(
    name="GlobalSecret",
    plural="global-secrets",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("global-secret", "globalsecret"),
    model=_MODEL,
    columns=(NAME_COLUMN, AGE_COLUMN),
    description="Secret data (base64) of no mesh: token signing keys, revocation lists, the "
    "bootstrap admin token. Only public keys and revocation lists are synced to zones.",
    sync_to_zones=is_public_global_secret,
    secret=True,
)
