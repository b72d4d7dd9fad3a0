"""Removing resources whose Mesh no longer exists (orphans).

Deleting a Mesh through the API commits the Mesh's deletion first, then everything scoped to
it; a PUT into a mesh commits only while the Mesh it read still exists (`write_batch`
`require`). So a PUT racing a deletion is either swept by the cascade or refused, and an
orphan is left only when a process dies between the two commits. `OrphanSweeper` removes
them: a full pass when it starts, and a pass over each Mesh deleted later (whoever deleted
it). It runs on the global's leader and on a standalone zone; KDS never sends orphans
(`meshfed.kds.views.GlobalView`) meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from meshfed.resources.descriptors import Registry, Scope
from meshfed.resources.types.mesh import MESH
from meshfed.store.base import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    EventKind,
    NotFoundError,
    ResourceStore,
    StoreKey,
    WatchEvent,
    WatchOverflowError,
)

log = logging.getLogger("meshfed.store.orphans")

BATCH = 1000  # deletes per write_batch


async def sweep_orphans(
    store: ResourceStore, registry: Registry, meshes: Iterable[str] | None = None
) -> int:
    """Deletes every resource of a mesh-scoped type whose Mesh does not exist (only in
    `meshes`, if given); returns how many.

    The resources are listed before the Meshes: one whose Mesh is absent afterwards was an
    orphan when listed, and it is deleted at the version listed, so a resource written again
    since (into a Mesh created again) is left alone.
    """
    types = [d.name for d in registry if d.scope is Scope.MESH]
    listed: dict[StoreKey, str] = {}
    for type_name in types:
        if meshes is None:
            items = (await store.list(type_name)).items
        else:
            items = [r for m in meshes for r in (await store.list(type_name, m)).items]
        listed.update((r.key, r.meta.version) for r in items)
    existing = {r.name for r in (await store.list(MESH.name)).items}
    doomed = [(key, version) for key, version in listed.items() if key[1] not in existing]
    removed = 0
    for start in range(0, len(doomed), BATCH):
        chunk = dict(doomed[start : start + BATCH])
        try:
            await store.write_batch([], list(chunk), expected=chunk)
            removed += len(chunk)
        except (NotFoundError, AlreadyExistsError, ConflictError):
            # Something in the chunk changed meanwhile: one by one, skipping what changed.
            for (type_name, mesh, name), version in chunk.items():
                with contextlib.suppress(NotFoundError, ConflictError):
                    await store.delete(type_name, mesh, name, expected_version=version)
                    removed += 1
    if removed:
        where = "" if meshes is None else f" in {', '.join(sorted(set(meshes)))}"
        log.info("removed %d resource(s) whose Mesh no longer exists%s", removed, where)
    return removed


class OrphanSweeper:
    """A full sweep, then one per deleted Mesh, until cancelled."""

    def __init__(self, store: ResourceStore, registry: Registry) -> None:
        self._store = store
        self._registry = registry
        self.removed = 0  # resources removed so far (observability, tests)
        self.passes = 0

    async def run(self) -> None:
        while True:
            # Before the full pass: no deletion falls between. Only Mesh events, only read.
            events = self._store.watch(types=(MESH.name,), copy=False)
            try:
                await self._pass(None)
                await self._follow(events)
                return  # the store closed
            except (CompactedError, WatchOverflowError) as exc:
                log.warning("orphan sweeper lost the store watch (%s); sweeping everything", exc)
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    async def _follow(self, events: AsyncIterator[WatchEvent]) -> None:
        async for event in events:
            res = event.resource
            if event.kind is EventKind.DELETE and res.type == MESH.name:
                await self._pass([res.name])

    async def _pass(self, meshes: list[str] | None) -> None:
        self.removed += await sweep_orphans(self._store, self._registry, meshes)
        self.passes += 1
