"""In-process store for tests and throwaway runs: nothing survives the process.

Every method does its check-and-write without awaiting, so on one event loop each write is
atomic without a lock. Stored objects are never mutated in place (a write replaces them), which
lets the watch history share them; callers only ever get copies.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

from meshfed.resources.model import Resource
from meshfed.store._batch import check_batch, check_expected, check_required
from meshfed.store._common import (
    CheckedListStore,
    ListQuery,
    check_key,
    check_mesh,
    page_of,
    stamped_new,
    stamped_update,
)
from meshfed.store._watch import DEFAULT_HISTORY, DEFAULT_MAX_PENDING, WatchHub
from meshfed.store.base import (
    EventKind,
    ListPage,
    NotFoundError,
    Requirement,
    StoreKey,
    WatchEvent,
)


class MemoryStore(CheckedListStore):
    def __init__(
        self, *, history: int = DEFAULT_HISTORY, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        # type -> (mesh, name) -> resource
        self._items: dict[str, dict[tuple[str, str], Resource]] = {}
        self._revision = 0
        self._hub = WatchHub(history, max_pending)

    def _stored(self, type_: str, mesh: str, name: str) -> Resource:
        check_key(type_, mesh, name)
        found = self._items.get(type_, {}).get((mesh, name))
        if found is None:
            raise NotFoundError(type_, mesh, name)
        return found

    def _commit(self, events: list[tuple[EventKind, Resource]]) -> int:
        self._revision += 1
        self._hub.publish([WatchEvent(kind, res, self._revision) for kind, res in events])
        return self._revision

    async def get(self, type_: str, mesh: str, name: str) -> Resource:
        return self._stored(type_, mesh, name).clone()

    async def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        found: dict[StoreKey, Resource] = {}
        for key in keys:
            check_key(*key)
            stored = self._items.get(key[0], {}).get((key[1], key[2]))
            if stored is not None:
                found[key] = stored.clone()
        return found

    async def _list(self, query: ListQuery) -> ListPage:
        of_type, mesh = self._items.get(query.type, {}), query.mesh
        return page_of((r for (m, _), r in of_type.items() if mesh is None or m == mesh), query)

    async def write_batch(
        self,
        puts: Sequence[Resource],
        deletes: Sequence[StoreKey],
        *,
        expected: Mapping[StoreKey, str | None] | None = None,
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> builtins.list[Resource]:
        check_batch(puts, deletes, expected, require)
        for key, version in (expected or {}).items():
            found = self._items.get(key[0], {}).get(key[1:])
            check_expected(key, version, None if found is None else found.meta.version)
        for req in require:
            found = self._items.get(req[0], {}).get((req[1], req[2]))
            check_required(req, None if found is None else found.meta.version)
        revision = self._revision + 1
        events: list[tuple[EventKind, Resource]] = []
        stored_puts: list[Resource] = []
        for res in puts:
            type_, mesh, name = res.key
            of_type = self._items.setdefault(type_, {})
            current = of_type.get((mesh, name))
            if current is None:
                stored = stamped_new(res, revision)
            else:
                stored = stamped_update(res, current, revision)
            of_type[(mesh, name)] = stored
            events.append((EventKind.PUT, stored))
            stored_puts.append(stored)
        for type_, mesh, name in deletes:
            gone = self._items.get(type_, {}).pop((mesh, name), None)
            if gone is not None:
                events.append((EventKind.DELETE, gone))
        if events:
            self._commit(events)
        return [res.clone() for res in stored_puts] if copies else []

    async def delete_mesh_scoped(self, mesh: str) -> int:
        check_mesh(mesh)
        doomed: list[tuple[EventKind, Resource]] = []
        for type_ in sorted(self._items):
            of_type = self._items[type_]
            for key in sorted(k for k in of_type if k[0] == mesh):
                doomed.append((EventKind.DELETE, of_type.pop(key)))
        if doomed:
            self._commit(doomed)  # one transaction: one revision for all, like an etcd txn
        return len(doomed)

    def watch(
        self,
        from_revision: int | None = None,
        *,
        types: Collection[str] | None = None,
        copy: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        return self._hub.watch(from_revision, types=types, copy=copy)

    async def revision(self) -> int:
        return self._revision

    async def close(self) -> None:
        self._hub.close()
