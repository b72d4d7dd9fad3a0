"""The storage contract every backend (memory, SQLite, etcd) implements and is tested against.

Versions are opaque strings (a store revision). `update` succeeds only when the caller's
`expected_version` matches the stored one: optimistic concurrency, so no update is lost.
Watch events carry a store-wide revision and arrive in commit order.

A backend implements `write_batch`; `create`, `update` and `delete` are one-key batches
written here once, so the three backends cannot disagree on their errors, events or versions.
"""

from __future__ import annotations

import abc
import builtins
import enum
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass

from meshfed.resources.model import Resource


class StoreError(Exception):
    pass


class NotFoundError(StoreError):
    def __init__(self, type_: str, mesh: str, name: str) -> None:
        where = f" in mesh {mesh!r}" if mesh else ""
        super().__init__(f"{type_} {name!r}{where} not found")
        self.type, self.mesh, self.name = type_, mesh, name


class AlreadyExistsError(StoreError):
    def __init__(self, type_: str, mesh: str, name: str) -> None:
        where = f" in mesh {mesh!r}" if mesh else ""
        super().__init__(f"{type_} {name!r}{where} already exists")


class ConflictError(StoreError):
    """The stored version is not the one the caller read: someone else wrote in between.
    `actual` None: the key is gone (a `write_batch` requirement on a deleted resource)."""

    def __init__(self, type_: str, mesh: str, name: str, expected: str, actual: str | None) -> None:
        stored = "it no longer exists" if actual is None else f"stored version {actual}"
        super().__init__(
            f"{type_} {name!r} was modified concurrently (expected version {expected}, "
            f"{stored}); read it again and retry"
        )
        self.type, self.mesh, self.name = type_, mesh, name
        self.expected, self.actual = expected, actual


class InvalidOffsetError(StoreError):
    pass


class CompactedError(StoreError):
    """A watch asked to replay from a revision whose events are no longer kept."""

    def __init__(self, requested: int, compacted_through: int) -> None:
        super().__init__(
            f"cannot replay events after revision {requested}: history is compacted through "
            f"revision {compacted_through}; list the current state and watch from its revision"
        )
        self.requested, self.compacted_through = requested, compacted_through


class WatchOverflowError(StoreError):
    """A watcher fell too far behind; its watch ends so a slow reader cannot exhaust memory."""

    def __init__(self, limit: int, last_revision: int) -> None:
        super().__init__(
            f"watcher fell more than {limit} events behind and was stopped after revision "
            f"{last_revision}; watch again from that revision"
        )
        self.limit, self.last_revision = limit, last_revision


class EventKind(enum.StrEnum):
    PUT = "PUT"  # created or updated
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: EventKind
    resource: Resource  # for DELETE: the last stored state
    revision: int


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[Resource]
    total: int  # matching items across all pages
    next_offset: str | None  # opaque; None on the last page


# (type, mesh, name): how write_batch names a key to delete or to check.
StoreKey = tuple[str, str, str]
# (type, mesh, name, version): a key a write_batch requires to exist at exactly that version.
Requirement = tuple[str, str, str, str]


class ResourceStore(abc.ABC):
    """Async CRUD + watch over resources keyed by (type, mesh, name). mesh is "" if global."""

    @abc.abstractmethod
    async def get(self, type_: str, mesh: str, name: str) -> Resource:
        """Raises NotFoundError."""

    async def get_many(self, keys: Sequence[StoreKey]) -> dict[StoreKey, Resource]:
        """The resources stored at these keys, one read for all where the backend allows;
        absent keys are left out. The default reads them one by one."""
        found: dict[StoreKey, Resource] = {}
        for key in keys:
            try:
                found[key] = await self.get(*key)
            except NotFoundError:
                continue
        return found

    @abc.abstractmethod
    async def list(
        self,
        type_: str,
        mesh: str | None = None,
        *,
        name_contains: str | None = None,
        labels: dict[str, str] | None = None,
        size: int | None = None,
        offset: str | None = None,
    ) -> ListPage:
        """Sorted by (mesh, name). mesh=None lists across meshes. size=None: everything."""

    async def create(self, resource: Resource) -> Resource:
        """Stores a new resource; sets times and version. Raises AlreadyExistsError."""
        [stored] = await self.write_batch([resource], [], expected={resource.key: None})
        return stored

    async def update(self, resource: Resource, expected_version: str | None = None) -> Resource:
        """Replaces labels and spec; keeps creation time. expected_version=None: last write wins.
        Raises NotFoundError, ConflictError."""
        key = resource.key
        while True:
            version = expected_version
            if version is None:
                version = (await self.get(*key)).meta.version
            try:
                [stored] = await self.write_batch([resource], [], expected={key: version})
            except ConflictError:
                if expected_version is not None:
                    raise
                continue  # written in between: last write wins, so read the new version
            return stored

    async def delete(
        self, type_: str, mesh: str, name: str, expected_version: str | None = None
    ) -> None:
        """Raises NotFoundError, ConflictError."""
        key = (type_, mesh, name)
        while True:
            version = expected_version
            if version is None:
                version = (await self.get(*key)).meta.version
            try:
                await self.write_batch([], [key], expected={key: version})
            except ConflictError:
                if expected_version is not None:
                    raise
                continue
            return

    @abc.abstractmethod
    async def write_batch(
        self,
        puts: Sequence[Resource],
        deletes: Sequence[StoreKey],
        *,
        expected: Mapping[StoreKey, str | None] | None = None,
        require: Sequence[Requirement] = (),
        copies: bool = True,
    ) -> builtins.list[Resource]:
        """Upserts every put and deletes every key as one commit, so no reader or watcher sees
        part of it; returns the stored puts, in order (copies of their own). `copies=False`
        returns [] instead, for a caller that does not read them: no backend then decodes or
        copies a stored put for it (the zone's stream registrations write thousands a second
        and read none back; issue 19).

        A put creates or replaces (keeping the stored creation time); deleting an absent key
        does nothing. Events: one per change, puts then deletes, all at the batch's revision.
        `expected` (optional) names the version some of the batch's keys must have (None:
        absent); if one differs nothing is written and NotFoundError, AlreadyExistsError or
        ConflictError is raised. `require` names keys the batch does not write that must exist
        at exactly the given version for it to commit (e.g. the Mesh of a policy, so a Mesh
        deleted meanwhile cannot get a new policy); otherwise ConflictError. A key may appear
        once only (ValueError). A batch that changes nothing (no puts, only absent keys to
        delete) commits nothing, but its requirements are still checked.
        etcd splits a batch over its transaction limit into transactions that are each
        atomic, in order, and each checks every requirement (see meshfed.store.etcd).
        """

    @abc.abstractmethod
    async def delete_mesh_scoped(self, mesh: str) -> int:
        """Deletes every resource of any type in `mesh` (not the Mesh itself); returns count."""

    @abc.abstractmethod
    def watch(
        self,
        from_revision: int | None = None,
        *,
        types: Collection[str] | None = None,
        copy: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Events after `from_revision` (None: from now), in commit order, until cancelled.

        `types`: only events of these types (None: all). Others are dropped before anything
        is copied or queued for this watcher, and do not count towards its backlog; a replay
        from a revision is filtered the same way. Revisions still increase, with gaps.
        `copy=False`: the caller promises never to mutate an event's resource, nor to hand it
        to code that might; the backend may then give it the very object other watchers and
        its replay history hold instead of a deep copy of its own (memory, SQLite; etcd
        decodes each event for each watch anyway).
        """

    @abc.abstractmethod
    async def revision(self) -> int:
        """The store's current revision (the revision of the last commit)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections; the default has nothing to release."""
