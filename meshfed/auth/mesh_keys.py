"""Every Mesh gets its dataplane-token signing key (mesh Secret `dataplane-token-signing-key-1`).

Run by whoever owns Meshes: the global's leader (the Secret then syncs to every zone, like the
mesh CA, so each zone-cp verifies and issues its dataplane tokens) and a standalone zone. It
follows Meshes and Secrets and creates the key of a Mesh that has none
(`credentials.ensure_signing_key`: a batch expecting the Secret absent, so replicas racing make
one key). A key that exists is never replaced here; rotation is `add_signing_key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from meshfed.auth import keyring
from meshfed.auth.credentials import ensure_signing_key
from meshfed.auth.tokens import TokenKind
from meshfed.resources.model import Resource
from meshfed.store.base import ResourceStore, StoreError
from meshfed.store.cache import StoreCache
from meshfed.store.mirror import resource_view

log = logging.getLogger("meshfed.auth")

MESH = "Mesh"
SECRET = "Secret"
RETRY = 2.0
WATCHED: Final = (MESH, SECRET)  # what the job reads from the store cache


def meshes_without_key(meshes: list[Resource], secrets: list[Resource]) -> list[str]:
    """The Meshes none of whose Secrets is a dataplane-token signing key."""
    keyed = {
        s.mesh for s in secrets if keyring.serial_of(TokenKind.DATAPLANE, s.meta.name) is not None
    }
    return sorted(m.meta.name for m in meshes if m.meta.name not in keyed)


class DataplaneKeyJob:
    """Follows Meshes and Secrets until cancelled; makes the missing dataplane-token keys."""

    def __init__(self, store: ResourceStore, cache: StoreCache | None = None) -> None:
        """`cache`: the process's store cache (None: one of its own, for each run)."""
        self._store = store
        self._cache = cache
        self.created = 0
        self.failures = 0

    async def run(self) -> None:
        mirror = resource_view(self._store, WATCHED, self._cache)
        dirty = asyncio.Event()
        unlisten = mirror.listen(lambda *_: dirty.set())
        await mirror.start()
        try:
            while True:
                dirty.clear()
                meshes = [r for r, _ in mirror.entries(MESH)]
                secrets = [r for r, _ in mirror.entries(SECRET)]
                if await self.ensure(meshes_without_key(meshes, secrets)):
                    await dirty.wait()
                else:
                    await asyncio.sleep(RETRY)  # a store failure: try again, change or not
        finally:
            unlisten()
            with contextlib.suppress(Exception):
                await mirror.stop()

    async def ensure(self, meshes: list[str]) -> bool:
        """True when every one of `meshes` has its key now."""
        ok = True
        for mesh in meshes:
            try:
                await ensure_signing_key(self._store, TokenKind.DATAPLANE, mesh)
            except (StoreError, RuntimeError) as exc:  # the next change (or term) tries again
                self.failures += 1
                log.error("mesh %s: cannot create its dataplane-token key: %s", mesh, exc)
                ok = False
            else:
                self.created += 1
        return ok
