"""What each KDS peer is sent, read from a store mirror.

`GlobalView` is what one zone should hold (policies, meshes, secrets and other zones'
ingresses), `ZoneView` a zone's own inventory; both are ResourceSources over a
view of the process's one store cache (meshfed.store.cache: ONE store watch per process)
holding the wire form of each resource, encoded once and shared by every stream
(`global_mirror`, `zone_mirror`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meshfed.kds.messages import WireResource, to_wire
from meshfed.kds.naming import (
    outgoing_from_global,
    outgoing_from_zone,
    sends_to_global,
    sends_to_zone,
    with_ingress_zone,
)
from meshfed.kds.stream import Listener, SourceChange
from meshfed.resources.descriptors import KdsFlag, Registry, Scope
from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_ZONE, Key, Resource
from meshfed.resources.types.mesh import MESH
from meshfed.resources.types.zone import ZONE, zone_enabled
from meshfed.store.base import ResourceStore
from meshfed.store.cache import CacheView, StoreCache
from meshfed.store.mirror import encoded_view


class _View:
    """A filtered ResourceSource over a mirror."""

    def __init__(self, mirror: CacheView[WireResource], types: Sequence[str]) -> None:
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
        self, mirror: CacheView[WireResource], registry: Registry, zone: str, types: Sequence[str]
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
        self, mirror: CacheView[WireResource], registry: Registry, types: Sequence[str]
    ) -> None:
        super().__init__(mirror, types)
        self._registry = registry

    def wants(self, type_name: str, res: Resource) -> bool:
        return sends_to_global(self._registry.get(type_name), res)


def global_mirror_types(down_types: Sequence[str]) -> list[str]:
    """What the global's KDS reads: the types it sends, plus Zone (whether a zone is enabled)."""
    return [*down_types, ZONE.name]


def global_mirror(
    store: ResourceStore, down_types: Sequence[str], cache: StoreCache | None = None
) -> CacheView[WireResource]:
    """The global's KDS view of the process's store cache (or, no cache given, its own)."""
    return encoded_view(
        store,
        global_mirror_types(down_types),
        lambda res: to_wire(outgoing_from_global(res)),
        cache,
    )


def zone_mirror(
    store: ResourceStore, up_types: Sequence[str], zone: str, cache: StoreCache | None = None
) -> CacheView[WireResource]:
    return encoded_view(
        store,
        up_types,
        lambda res: to_wire(with_ingress_zone(outgoing_from_zone(res, zone), zone)),
        cache,
    )
