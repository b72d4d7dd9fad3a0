"""Store-backed KDS sources and receive sides, for both control planes.

Sending: a `StoreMirror` keeps ONE store watch per process and a cache of the synced types in
wire form (encoded once, shared by every stream). `GlobalView` (what one zone should hold:
policies, meshes, secrets and other zones' ingresses) and `ZoneView` (a zone's own inventory)
are ResourceSources over it. Receiving: `global_receive_side` stores what a zone sends under
collision-free names labelled with that zone (and may touch nothing else);
`zone_receive_side` stores what the global sends (`kuma.io/origin: global`) and never
overwrites or deletes the zone's own resources. Each response is applied as one store batch
(`write_batch`): a reader or watcher sees all of it or none of it. Nothing is deleted except
by an explicit remove from the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from meshfed.kds.messages import WireResource, to_wire
from meshfed.kds.naming import (
    held_at_global,
    held_in_zone,
    outgoing_from_global,
    outgoing_from_zone,
    sends_to_global,
    sends_to_zone,
    stored_at_global,
    zone_resource_name,
)
from meshfed.kds.receiver import ChangeSet, Receiver
from meshfed.kds.stream import Listener, ReceiveSide, SourceChange
from meshfed.resources.codec import check_labels, check_name
from meshfed.resources.descriptors import KdsFlag, Registry, Scope
from meshfed.resources.errors import FieldError
from meshfed.resources.model import (
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Key,
    Resource,
)
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.zone import ZONE, zone_enabled
from meshfed.resources.types.zone_ingress import ZONE_INGRESS
from meshfed.store.base import (
    CompactedError,
    ResourceStore,
    StoreKey,
    WatchEvent,
    WatchOverflowError,
)

log = logging.getLogger("meshfed.kds")

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
        self._task = asyncio.create_task(self._follow(events), name="kds-store-mirror")

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
                log.info("store watch ended; the KDS mirror stops following the store")
                return
            except (CompactedError, WatchOverflowError) as exc:
                # Lost track: read everything again, and let every stream diff against it.
                log.warning("KDS mirror lost the store watch (%s); reloading", exc)
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
                log.exception("KDS mirror listener failed")


# -- sources ------------------------------------------------------------------------------------


class _View:
    """A filtered ResourceSource over a mirror."""

    def __init__(self, mirror: StoreMirror[WireResource], types: Sequence[str]) -> None:
        self._mirror = mirror
        self._types = frozenset(types)
        # Per type, the version of each resource this peer should hold, kept current from the
        # mirror once `pending` asked for the type: insights ask for every zone and type each
        # second, and rebuilding it from every resource each time costs zones x resources.
        self._wanted: dict[str, dict[Key, str]] = {}
        self._tracking = False

    def wants(self, type_name: str, res: Resource) -> bool:
        raise NotImplementedError

    async def snapshot(self, type_name: str) -> list[WireResource]:
        if type_name not in self._types:
            return []
        return [w for r, w in self._mirror.entries(type_name) if self.wants(type_name, r)]

    def listen(self, listener: Listener) -> Callable[[], None]:
        def on_change(type_name: str, key: Key | None, res: Resource | None) -> None:
            for change in self._changes(type_name, key, res):
                listener(change)

        return self._mirror.listen(on_change)

    def _changes(self, type_name: str, key: Key | None, res: Resource | None) -> list[SourceChange]:
        if type_name not in self._types:
            return []
        if key is None:
            return [SourceChange(type_name, None)]
        if res is not None and self.wants(type_name, res):
            found = self._mirror.get(type_name, key)
            if found is not None:
                return [SourceChange(type_name, key, found[1])]
        # Not (or no longer) for this peer: a remove, which the Sender ignores unless the
        # peer holds the key.
        return [SourceChange(type_name, key, None)]

    def pending(self, type_name: str, acked: dict[Key, str]) -> int:
        """Resources of a type the peer does not hold at the current version (or should drop)."""
        want = self._want(type_name)
        if acked == want:  # the usual answer, at C speed
            return 0
        return len(want.items() - acked.items()) + len(acked.keys() - want.keys())

    def _want(self, type_name: str) -> dict[Key, str]:
        if not self._tracking:
            # Synchronous from here to the computation below: no change can fall in between.
            self._mirror.listen(self._track)
            self._tracking = True
        want = self._wanted.get(type_name)
        if want is None:
            want = self._wanted[type_name] = {
                key: wire.version
                for key, res, wire in self._mirror.keyed(type_name)
                if self.wants(type_name, res)
            }
        return want

    def _track(self, type_name: str, key: Key | None, res: Resource | None) -> None:
        for other in self._also_changes(type_name):
            self._wanted.pop(other, None)
        want = self._wanted.get(type_name)
        if want is None:
            return
        if key is None:
            del self._wanted[type_name]  # reloaded: computed again when next asked
            return
        found = None
        if res is not None and self.wants(type_name, res):
            found = self._mirror.get(type_name, key)
        if found is None:
            want.pop(key, None)
        else:
            want[key] = found[1].version

    def _also_changes(self, type_name: str) -> Sequence[str]:
        """Types whose selection a change of `type_name` may alter."""
        return ()


class GlobalView(_View):
    """What the global sends to one zone: global types, plus other enabled zones' ingresses.

    Never a resource whose Mesh is gone (an orphan a crash between a Mesh's deletion and its
    cascade left behind, until the leader's sweep removes it): the zone would keep it, and
    it would come back to life if a Mesh of that name were created again.
    """

    def __init__(
        self, mirror: StoreMirror[WireResource], registry: Registry, zone: str, types: Sequence[str]
    ) -> None:
        super().__init__(mirror, types)
        self._registry = registry
        self.zone = zone
        self._relayed = [t for t in types if KdsFlag.SYNCED_ACROSS_ZONES in registry.get(t).kds]
        self._meshes_known = MESH.name in mirror.types
        self._in_meshes = [t for t in types if registry.get(t).scope is Scope.MESH]

    def wants(self, type_name: str, res: Resource) -> bool:
        if not sends_to_zone(self._registry.get(type_name), res, self.zone):
            return False
        if self._orphan(res):
            return False
        if res.meta.labels.get(LABEL_ORIGIN) == ORIGIN_ZONE:
            return self._zone_enabled(res.meta.labels.get(LABEL_ZONE, ""))
        return True

    def _orphan(self, res: Resource) -> bool:
        mesh = res.meta.mesh
        return (
            bool(mesh) and self._meshes_known and self._mirror.get(MESH.name, Key("", mesh)) is None
        )

    def _zone_enabled(self, zone: str) -> bool:
        found = self._mirror.get(ZONE.name, Key("", zone))
        return found is None or zone_enabled(found[0].spec)

    def _changes(self, type_name: str, key: Key | None, res: Resource | None) -> list[SourceChange]:
        if type_name == ZONE.name:
            # Enabling or disabling a zone shows or hides its ingresses: re-read them.
            return [SourceChange(t, None) for t in self._relayed]
        changes = super()._changes(type_name, key, res)
        if type_name == MESH.name and key is not None:
            # What is in a Mesh appears and disappears with it. (Its deletion's cascade also
            # removes each one; this covers what a crash left in between.)
            for t in self._in_meshes:
                for r, _ in self._mirror.entries(t):
                    if r.meta.mesh == key.name:
                        changes += super()._changes(t, Key(r.meta.mesh, r.meta.name), r)
        return changes

    def _also_changes(self, type_name: str) -> Sequence[str]:
        if type_name == ZONE.name:
            return self._relayed
        return self._in_meshes if type_name == MESH.name else ()


class ZoneView(_View):
    """What a zone sends up: its own inventory, never the copies the global sent it."""

    def __init__(
        self, mirror: StoreMirror[WireResource], registry: Registry, types: Sequence[str]
    ) -> None:
        super().__init__(mirror, types)
        self._registry = registry

    def wants(self, type_name: str, res: Resource) -> bool:
        return sends_to_global(self._registry.get(type_name), res)


def global_mirror(store: ResourceStore, down_types: Sequence[str]) -> StoreMirror[WireResource]:
    """The global's mirror: the types it sends, plus Zone (whether a zone is enabled)."""
    return StoreMirror(
        store, [*down_types, ZONE.name], lambda res: to_wire(outgoing_from_global(res))
    )


def zone_mirror(
    store: ResourceStore, up_types: Sequence[str], zone: str
) -> StoreMirror[WireResource]:
    return StoreMirror(
        store,
        up_types,
        lambda res: to_wire(with_ingress_zone(outgoing_from_zone(res, zone), zone)),
    )


# -- receiving ----------------------------------------------------------------------------------


def validator(registry: Registry) -> Callable[[Resource], str | None]:
    """The checks the API applies to a written resource: name, mesh, labels and body."""

    def validate(res: Resource) -> str | None:
        try:
            desc = registry.get(res.type)
        except KeyError:
            return f"unknown resource type {res.type!r}"
        errors: list[FieldError] = check_name(res.meta.name, "name")
        if desc.scope is Scope.MESH:
            errors += check_name(res.meta.mesh, "mesh")
        elif res.meta.mesh:
            errors.append(FieldError("mesh", f"{res.type} is not scoped to a mesh"))
        errors += check_labels(res.meta.labels)
        errors += desc.validate(res.spec, "spec" if desc.spec_wrapped else "")
        if not errors:
            return None
        return "; ".join(f"{e.field}: {e.reason}" if e.field else e.reason for e in errors)

    return validate


def with_ingress_zone(res: Resource, zone: str) -> Resource:
    """Sets a ZoneIngress's `zone` (Kuma: "set by the global") on `res`, a copy, in place.

    The global sets it from the stream, so a zone cannot claim another zone's; the zone sets
    the same value in the form it sends (its KDS version is computed over it), so the copy the
    global stores hashes to the version the zone sent: after a restart the global still holds
    exactly what the zone has, and nothing is sent again.
    """
    if res.type == ZONE_INGRESS.name and res.spec.get("zone") != zone:
        res.spec["zone"] = zone
    return res


async def _current(
    store: ResourceStore, type_name: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Resource]:
    """What the store holds at these (mesh, name) keys: exactly those (`get_many`), never
    the whole type (at 50,000 Dataplanes a list took seconds for a 17-key response)."""
    found = await store.get_many([(type_name, mesh, name) for mesh, name in keys])
    return {(mesh, name): res for (_, mesh, name), res in found.items()}


async def _apply(
    store: ResourceStore,
    type_name: str,
    upserts: Sequence[Resource],
    removes: Sequence[tuple[str, str]],
    may_change: Callable[[Resource], bool],
    refused: Callable[[Resource], None],
) -> None:
    """Writes one change set as one store batch, touching only what `may_change` allows.

    Each written key must still have the version read here (absent for a new one): a
    concurrent local write makes the batch fail with nothing written, and so this apply and
    the stream (the sender sends it all again), instead of being overwritten.
    """
    current = await _current(store, type_name, [*((r.mesh, r.name) for r in upserts), *removes])
    puts: list[Resource] = []
    deletes: list[StoreKey] = []
    expected: dict[StoreKey, str | None] = {}
    for res in upserts:
        existing = current.get((res.mesh, res.name))
        if existing is not None:
            if not may_change(existing):
                refused(res)
                continue
            if existing.meta.labels == res.meta.labels and existing.spec == res.spec:
                continue  # already stored as sent: no write, no event
        puts.append(res)
        expected[res.key] = existing.meta.version if existing is not None else None
    for mesh, name in removes:
        existing = current.get((mesh, name))
        if existing is not None and may_change(existing):
            deletes.append(existing.key)
            expected[existing.key] = existing.meta.version
    if puts or deletes:
        await store.write_batch(puts, deletes, expected=expected)


async def global_receive_side(
    store: ResourceStore, registry: Registry, zone: str, types: Sequence[str]
) -> ReceiveSide:
    """Where `zone`'s inventory goes at the global, resuming from what the store holds."""
    owned: list[Resource] = []
    for type_name in types:
        owned += (await store.list(type_name, labels={LABEL_ZONE: zone})).items
    receiver = Receiver(types, held=held_at_global(owned, zone))
    check = validator(registry)

    def owned_by_zone(res: Resource) -> bool:
        labels = res.meta.labels
        return labels.get(LABEL_ORIGIN) == ORIGIN_ZONE and labels.get(LABEL_ZONE) == zone

    def refused(res: Resource) -> None:
        log.error(
            "zone %s: not overwriting %s %r, which belongs to another zone or the global",
            zone,
            res.type,
            res.name,
        )

    async def apply(changes: ChangeSet) -> None:
        upserts = [with_ingress_zone(stored_at_global(r, zone), zone) for r in changes.upserts]
        removes = [(k.mesh, zone_resource_name(k.name, k.mesh, zone)) for k in changes.removes]
        await _apply(store, changes.type, upserts, removes, owned_by_zone, refused)

    return ReceiveSide(receiver=receiver, apply=apply, validate=check)


async def zone_receive_side(
    store: ResourceStore, registry: Registry, types: Sequence[str]
) -> ReceiveSide:
    """Where a zone stores what the global sends; its Receiver resumes from the store."""
    held: list[Resource] = []
    for type_name in types:
        held += (await store.list(type_name, labels={LABEL_ORIGIN: ORIGIN_GLOBAL})).items
    receiver = Receiver(types, held=held_in_zone(held))
    base = validator(registry)

    def check(res: Resource) -> str | None:
        if res.meta.labels.get(LABEL_ORIGIN) != ORIGIN_GLOBAL:
            return f"must be labelled {LABEL_ORIGIN}: {ORIGIN_GLOBAL} (sent by the global)"
        return base(res)

    def from_global(res: Resource) -> bool:
        return res.meta.labels.get(LABEL_ORIGIN) == ORIGIN_GLOBAL

    def refused(res: Resource) -> None:
        log.error(
            "not overwriting this zone's own %s %r with the global's copy", res.type, res.name
        )

    async def apply(changes: ChangeSet) -> None:
        removes = [(k.mesh, k.name) for k in changes.removes]
        await _apply(store, changes.type, changes.upserts, removes, from_global, refused)

    return ReceiveSide(receiver=receiver, apply=apply, validate=check)
