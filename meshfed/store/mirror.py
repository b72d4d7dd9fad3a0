"""One store watch and a cache of the resources of some types, shared by every reader.

KDS sends from one (`meshfed.kds.views`), and zone-cp's service catalog, its dataplane
server and the mesh CA job each follow the store through one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

from meshfed.resources.model import Key, Resource
from meshfed.store.base import CompactedError, ResourceStore, WatchEvent, WatchOverflowError

log = logging.getLogger("meshfed.store.mirror")

# (type, key, stored resource or None when deleted); key None: the whole type was reloaded.
MirrorListener = Callable[[str, Key | None, Resource | None], None]

F = TypeVar("F")


class _Entry(Generic[F]):
    """A mirrored resource. Its encoded form is made on first use: encoding every policy of a
    cold sync before anyone sends it would cost as much as storing it."""

    __slots__ = ("encoded", "resource")

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.encoded: F | None = None


def _store_version(res: Resource) -> int:
    try:
        return int(res.meta.version)
    except ValueError:
        return -1


class StoreMirror(Generic[F]):
    """The current state of some types of a store, kept by one watch, with an encoded form of
    each resource cached.

    `encode` makes that form (KDS: the wire form of what a peer is sent, e.g.
    `to_wire(naming.outgoing_from_global(res))`; a reader that needs none passes
    `lambda res: res`); it is computed once per stored version, when first asked for, and
    shared by every stream that sends it.

    The watch names the mirrored types (the store drops the rest before copying anything)
    and takes events uncopied: a resource the mirror holds may be the very object in the
    store's watch history (and a memory store's data), so it is READ-ONLY for everyone who
    gets it from `entries`, `keyed`, `get` or a listener; build a changed copy instead
    (`Resource.clone`, as the naming transforms do). The mirror never changed one anyway: it
    is a cache of the store that every view and stream shares.
    """

    def __init__(
        self,
        store: ResourceStore,
        types: Iterable[str],
        encode: Callable[[Resource], F],
    ) -> None:
        self._store = store
        self._types = tuple(dict.fromkeys(types))
        self._encode = encode
        self._data: dict[str, dict[Key, _Entry[F]]] = {t: {} for t in self._types}
        self._listeners: list[MirrorListener] = []
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0  # full reloads after the watch was lost (observability)

    @property
    def types(self) -> tuple[str, ...]:
        return self._types

    async def start(self) -> None:
        """Loads every type, then follows the store; returns once the cache is complete."""
        events = await self._load()
        self._task = asyncio.create_task(self._follow(events), name="store-mirror")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def listen(self, listener: MirrorListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unlisten() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unlisten

    def entries(self, type_name: str) -> list[tuple[Resource, F]]:
        return [(e.resource, self._encoded(e)) for e in self._data.get(type_name, {}).values()]

    def keyed(self, type_name: str) -> list[tuple[Key, Resource, F]]:
        """Like `entries`, with the mirror's own Key objects: a map kept per zone then shares
        them instead of holding a copy of every key per zone."""
        return [(k, e.resource, self._encoded(e)) for k, e in self._data.get(type_name, {}).items()]

    def get(self, type_name: str, key: Key) -> tuple[Resource, F] | None:
        entry = self._data.get(type_name, {}).get(key)
        return None if entry is None else (entry.resource, self._encoded(entry))

    def _names(self) -> str:
        return ", ".join(self._types) or "no type"

    # -- internals ---------------------------------------------------------------------------

    async def _load(self) -> AsyncIterator[WatchEvent]:
        """Subscribes first, then lists: no change can fall between the list and the watch."""
        revision = await self._store.revision()
        # No copies (see the class docstring); `or None`: a store refuses an empty filter.
        events = self._store.watch(from_revision=revision, types=self._types or None, copy=False)
        fresh: dict[str, dict[Key, _Entry[F]]] = {}
        for type_name in self._types:
            page = await self._store.list(type_name)
            fresh[type_name] = {Key(r.mesh, r.name): _Entry(r) for r in page.items}
        self._data = fresh
        return events

    def _encoded(self, entry: _Entry[F]) -> F:
        if entry.encoded is None:
            entry.encoded = self._encode(entry.resource)
        return entry.encoded

    async def _follow(self, events: AsyncIterator[WatchEvent]) -> None:
        while True:
            try:
                async for event in events:
                    self._apply(event)
                log.info(
                    "store watch ended; the mirror of %s stops following the store", self._names()
                )
                return
            except (CompactedError, WatchOverflowError) as exc:
                # Lost track: read everything again, and let every stream diff against it.
                log.warning(
                    "store mirror of %s lost the store watch (%s); reloading", self._names(), exc
                )
                self.reloads += 1
                events = await self._load()
                for type_name in self._types:
                    self._notify(type_name, None, None)

    def _apply(self, event: WatchEvent) -> None:
        res = event.resource
        of_type = self._data.get(res.type)
        if of_type is None:
            return
        key = Key(res.mesh, res.name)
        cached = of_type.get(key)
        # Events replayed from before the initial list must not roll the cache back.
        if cached is not None and _store_version(cached.resource) >= event.revision:
            return
        if event.kind == "DELETE":
            if cached is None:
                return
            del of_type[key]
            self._notify(res.type, key, None)
            return
        of_type[key] = _Entry(res)
        self._notify(res.type, key, res)

    def _notify(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        for listener in list(self._listeners):
            try:
                listener(type_name, key, res)
            except Exception:  # one broken stream must not stop the others' updates
                log.exception("store mirror listener failed")
