"""Where what a KDS peer sends is stored.

`global_receive_side` stores what a zone sends under collision-free names labelled with that
zone (and may touch nothing else); `zone_receive_side` stores what the global sends
(`kuma.io/origin: global`) and never overwrites or deletes the zone's own resources. Each
response is applied as one store batch (`write_batch`): a reader or watcher sees all of it or
none of it. Nothing is deleted except by an explicit remove from the peer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from meshfed.kds.naming import (
    held_at_global,
    held_in_zone,
    stored_at_global,
    with_ingress_zone,
    zone_resource_name,
)
from meshfed.kds.receiver import ChangeSet, Receiver
from meshfed.kds.stream import ReceiveSide
from meshfed.resources.codec import check_labels, check_name
from meshfed.resources.descriptors import Registry, Scope
from meshfed.resources.errors import FieldError
from meshfed.resources.model import (
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Key,
    Resource,
)
from meshfed.store.base import ResourceStore, StoreKey

log = logging.getLogger("meshfed.kds")


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
) -> set[int]:
    """Writes one change set as one store batch, touching only what `may_change` allows;
    returns the positions in `upserts` it refused to write (another owner holds the key).

    Each written key must still have the version read here (absent for a new one): a
    concurrent local write makes the batch fail with nothing written, and so this apply and
    the stream (the sender sends it all again), instead of being overwritten.
    """
    current = await _current(store, type_name, [*((r.mesh, r.name) for r in upserts), *removes])
    puts: list[Resource] = []
    deletes: list[StoreKey] = []
    expected: dict[StoreKey, str | None] = {}
    not_written: set[int] = set()
    for i, res in enumerate(upserts):
        existing = current.get((res.mesh, res.name))
        if existing is not None:
            if not may_change(existing):
                refused(res)
                not_written.add(i)
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
        await store.write_batch(puts, deletes, expected=expected, copies=False)
    return not_written


def _forget(changes: ChangeSet, not_written: set[int]) -> None:
    """Takes what was not written out of `changes`, so the receiver never counts it as held
    (it would tell the peer, on the next subscribe, that it has a version it does not)."""
    if not not_written:
        return
    for i in not_written:
        res = changes.upserts[i]
        changes.versions.pop(Key(res.mesh, res.name), None)
    changes.upserts = [r for i, r in enumerate(changes.upserts) if i not in not_written]


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
        _forget(
            changes, await _apply(store, changes.type, upserts, removes, owned_by_zone, refused)
        )

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
        _forget(
            changes,
            await _apply(store, changes.type, changes.upserts, removes, from_global, refused),
        )

    return ReceiveSide(receiver=receiver, apply=apply, validate=check)
