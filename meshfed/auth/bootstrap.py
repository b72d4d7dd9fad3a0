"""What a control plane that issues tokens does with its store on every start.

The global and a standalone zone (no global to get keys from) make their signing keys and the
bootstrap admin token here; a federated zone makes none, it verifies with the public keys the
global syncs to it. Shared so both products run the very same steps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from meshfed.auth.credentials import ensure_admin_token, ensure_signing_key, publish_public_keys
from meshfed.auth.options import write_secret_file
from meshfed.auth.tokens import TokenKind
from meshfed.store.base import ResourceStore

log = logging.getLogger("meshfed.auth")


async def bootstrap_credentials(
    store: ResourceStore, kinds: Iterable[TokenKind], admin_token_file: Path | None
) -> str:
    """Signing keys of `kinds` (the user kind is needed for the admin token), their public
    halves published, the admin token made once and written to `admin_token_file` (0600) at
    every start. Safe when replicas race. Returns the admin token."""
    for kind in kinds:
        await ensure_signing_key(store, kind)
    await ensure_signing_key(store, TokenKind.USER)
    await publish_public_keys(store)
    token = await ensure_admin_token(store)
    if admin_token_file is not None:
        write_secret_file(admin_token_file, token + "\n")
        log.info("admin user token written to %s", admin_token_file)
    return token
