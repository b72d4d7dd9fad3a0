"""One store cache per process: one watch, the current resources of the types its readers
need, and each reader's change callbacks.

A program makes one `StoreCache` in its app wiring, naming every type its parts read, and
starts it before them; each part (KDS, the service catalog, the dataplane server, the mesh CA
and key jobs) takes a `CacheView` of its types (`subscribe`) with its own callbacks and, for
KDS, its own encoded form of each resource. Before this a zone process held up to four
copies of its store, each with its own watch (decision 80).

The cache takes watch events uncopied: a resource it holds may be the very object in the
store's watch history (and a memory store's data), so it is READ-ONLY for everyone who gets
it from `entries`, `keyed`, `get` or a listener; build a changed copy instead
(`Resource.clone`, as the naming transforms do).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Generic, TypeVar, overload

from meshfed.aio import cancel_and_wait
from meshfed.resources.model import Key, Resource
from meshfed.store.base import CompactedError, ResourceStore, WatchEvent, WatchOverflowError

log = logging.getLogger("meshfed.store.cache")

# (type, key, stored resource or None when deleted); key None: the whole type was reloaded.
MirrorListener = Callable[[str, Key | None, Resource | None], None]

F = TypeVar("F")


class _Entry:
    """A cached resource, and one encoded form of it made on first use (encoding every policy
    of a cold sync before anyone sends it would cost as much as storing it). One slot: a
    process has at most one encoding reader (its KDS side); a second would only recompute."""

    __slots__ = ("encoded", "encoder", "resource")

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.encoder: object = None
        self.encoded: Any = None


def _store_version(res: Resource) -> int:
    try:
        return int(res.meta.version)
    except ValueError:
        return -1


class StoreCache:
    """The current state of some types of a store, kept by one watch, shared by every reader
    of the process. Types are named before `start` (at creation or by `subscribe`)."""

    def __init__(self, store: ResourceStore, types: Iterable[str] = ()) -> None:
        self._store = store
        self._types: dict[str, None] = dict.fromkeys(types)
        self._data: dict[str, dict[Key, _Entry]] = {}
        self._listeners: dict[str, list[MirrorListener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None
        self.started = False
        self.reloads = 0  # full reloads after the watch was lost (observability)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self._types)

    @overload
    def subscribe(self, types: Iterable[str]) -> CacheView[Resource]: ...

    @overload
    def subscribe(self, types: Iterable[str], encode: Callable[[Resource], F]) -> CacheView[F]: ...

    def subscribe(
        self, types: Iterable[str], encode: Callable[[Resource], Any] | None = None
    ) -> CacheView[Any]:
        """A reader of `types`. Once the cache has started it holds no other types: asking
        for one is a wiring mistake (name it where the cache is made)."""
        wanted = tuple(dict.fromkeys(types))
        missing = [t for t in wanted if t not in self._types]
        if missing and self.started:
            raise ValueError(
                f"the store cache was started without {', '.join(missing)}: name every type "
                "where the cache is created"
            )
        self._types.update(dict.fromkeys(missing))
        return CacheView(self, wanted, encode)

    async def start(self) -> None:
        """Loads every type, then follows the store; returns once the cache is complete.
        Starting again (or from several readers at once) waits for the one load."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.started:
                return
            events = await self._load()
            self._task = asyncio.create_task(self._follow(events), name="store-cache")
            self.started = True

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def watches(self) -> int:
        """Store watches this cache holds (one while it runs)."""
        return 0 if self._task is None or self._task.done() else 1

    # -- for views ----------------------------------------------------------------------------

    def _listen(self, types: Iterable[str], listener: MirrorListener) -> Callable[[], None]:
        types = tuple(types)
        for t in types:
            self._listeners.setdefault(t, []).append(listener)

        def unlisten() -> None:
            for t in types:
                with contextlib.suppress(ValueError):
                    self._listeners.get(t, []).remove(listener)

        return unlisten

    def _of(self, type_name: str) -> dict[Key, _Entry]:
        return self._data.get(type_name, {})

    # -- internals ----------------------------------------------------------------------------

    def _names(self) -> str:
        return ", ".join(self._types) or "no type"

    async def _load(self) -> AsyncIterator[WatchEvent]:
        """Subscribes first, then lists: no change can fall between the list and the watch."""
        revision = await self._store.revision()
        types = tuple(self._types)
        # No copies (see the module docstring); `or None`: a store refuses an empty filter.
        events = self._store.watch(from_revision=revision, types=types or None, copy=False)
        fresh: dict[str, dict[Key, _Entry]] = {}
        for type_name in types:
            page = await self._store.list(type_name)
            fresh[type_name] = {Key(r.mesh, r.name): _Entry(r) for r in page.items}
        self._data = fresh
        return events

    async def _follow(self, events: AsyncIterator[WatchEvent]) -> None:
        while True:
            try:
                async for event in events:
                    self._apply(event)
                log.info("store watch ended; the cache of %s stops following it", self._names())
                return
            except (CompactedError, WatchOverflowError) as exc:
                # Lost track: read everything again, and let every reader diff against it.
                log.warning("store cache of %s lost its watch (%s); reloading", self._names(), exc)
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
        for listener in list(self._listeners.get(type_name, ())):
            try:
                listener(type_name, key, res)
            except Exception:  # one broken reader must not stop the others' updates
                log.exception("store cache listener failed")


class CacheView(Generic[F]):
    """One reader's window on a StoreCache: its types, its callbacks, and its form `F` of
    each resource (`encode`, computed once per stored version when first asked for and shared
    by every stream that sends it; None: the resource itself)."""

    def __init__(
        self,
        cache: StoreCache,
        types: tuple[str, ...],
        encode: Callable[[Resource], F] | None,
    ) -> None:
        self._cache = cache
        self._types = types
        self._encode = encode
        self._unlisten: list[Callable[[], None]] = []

    @property
    def types(self) -> tuple[str, ...]:
        return self._types

    @property
    def reloads(self) -> int:
        return self._cache.reloads

    async def start(self) -> None:
        """Returns once the cache holds its types (the app wiring has usually started it)."""
        await self._cache.start()

    async def stop(self) -> None:
        """Drops this reader's callbacks; the cache goes on for the others."""
        for unlisten in self._unlisten:
            unlisten()
        self._unlisten.clear()

    def listen(self, listener: MirrorListener) -> Callable[[], None]:
        unlisten = self._cache._listen(self._types, listener)
        self._unlisten.append(unlisten)
        return unlisten

    def entries(self, type_name: str) -> list[tuple[Resource, F]]:
        return [(e.resource, self._encoded(e)) for e in self._of(type_name).values()]

    def keyed(self, type_name: str) -> list[tuple[Key, Resource, F]]:
        """Like `entries`, with the cache's own Key objects: a map kept per zone then shares
        them instead of holding a copy of every key per zone."""
        return [(k, e.resource, self._encoded(e)) for k, e in self._of(type_name).items()]

    def get(self, type_name: str, key: Key) -> tuple[Resource, F] | None:
        entry = self._of(type_name).get(key)
        return None if entry is None else (entry.resource, self._encoded(entry))

    def _of(self, type_name: str) -> dict[Key, _Entry]:
        return self._cache._of(type_name) if type_name in self._types else {}

    def _encoded(self, entry: _Entry) -> F:
        if self._encode is None:
            return entry.resource  # type: ignore[return-value]  # F is Resource here
        if entry.encoder is not self._encode:
            entry.encoded = self._encode(entry.resource)
            entry.encoder = self._encode
        return entry.encoded  # type: ignore[no-any-return]
