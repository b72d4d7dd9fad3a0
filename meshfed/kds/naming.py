"""Which types go which way, and how a synced resource is named and labelled on the other side.

Zone -> global: the zone sends its resources labelled with origin, zone and display name; the
global stores them under a name that cannot collide across zones (Kuma's idea: the original
name plus a short hash of mesh, name and zone) and overwrites the zone label with the zone of
the stream, so a zone can only ever write its own resources.
Global -> zone: the global sends its resources labelled `kuma.io/origin: global`; the zone
stores them as they are.

Because the sending side adds the labels before computing the KDS version (the content hash),
the stored copy on the receiving side hashes to the same version. After a restart a receiver
can therefore rebuild the versions it holds from its store (`held_*` below) and resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace

from meshfed.resources.descriptors import KdsFlag, Registry, TypeDescriptor
from meshfed.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_GLOBAL,
    ORIGIN_ZONE,
    Key,
    Resource,
)
from meshfed.resources.types.zone_ingress import ZONE_INGRESS

MAX_NAME = 253  # what meshfed.resources.codec.NAME_RE allows
HASH_LEN = 10


# -- directions --------------------------------------------------------------------------------


def types_global_to_zone(registry: Registry) -> list[str]:
    """Types the global sends down (including zone types it relays to other zones)."""
    return [
        d.name
        for d in registry
        if KdsFlag.GLOBAL_TO_ZONE in d.kds or KdsFlag.SYNCED_ACROSS_ZONES in d.kds
    ]


def types_zone_to_global(registry: Registry) -> list[str]:
    """Types a zone sends up."""
    return [d.name for d in registry if KdsFlag.ZONE_TO_GLOBAL in d.kds]


def sends_to_zone(desc: TypeDescriptor, res: Resource, zone: str) -> bool:
    """Whether the global sends this resource to `zone`."""
    if res.meta.labels.get(LABEL_ORIGIN) == ORIGIN_ZONE:
        # Zone inventory goes to other zones only for types synced across zones, and never
        # back to the zone it came from.
        return KdsFlag.SYNCED_ACROSS_ZONES in desc.kds and res.meta.labels.get(LABEL_ZONE) != zone
    if desc.sync_to_zones is not None and not desc.sync_to_zones(res):
        return False
    return KdsFlag.GLOBAL_TO_ZONE in desc.kds


def sends_to_global(desc: TypeDescriptor, res: Resource) -> bool:
    """Whether a zone sends this resource up: its own inventory, not copies from the global."""
    return KdsFlag.ZONE_TO_GLOBAL in desc.kds and res.meta.labels.get(LABEL_ORIGIN) != ORIGIN_GLOBAL


# -- zone -> global ----------------------------------------------------------------------------


def zone_resource_name(name: str, mesh: str, zone: str) -> str:
    """`<name>.<hash>`: unique per (mesh, name, zone), and still a valid resource name."""
    digest = hashlib.sha256("\x00".join((mesh, name, zone)).encode()).hexdigest()[:HASH_LEN]
    head = name[: MAX_NAME - HASH_LEN - 1].rstrip("-._")
    return f"{head}.{digest}" if head else digest


def outgoing_from_zone(res: Resource, zone: str) -> Resource:
    """The form a zone sends its resource in (what its KDS version is computed over).

    Its body is `res`'s, shared, not copied: it is only encoded (`with_ingress_zone` copies
    before it sets anything). A deep copy of each Dataplane and insight on its way to the
    global was the largest item of a zone's profile under registration churn
    (docs/benchmarks.md)."""
    labels = {
        **res.meta.labels,
        LABEL_ORIGIN: ORIGIN_ZONE,
        LABEL_ZONE: zone,
        LABEL_DISPLAY_NAME: res.meta.name,
    }
    return _relabelled(res, labels)


def _relabelled(res: Resource, labels: dict[str, str]) -> Resource:
    """`res` with these labels and no store version, its body shared."""
    return Resource(type=res.type, meta=replace(res.meta, labels=labels, version=""), spec=res.spec)


def stored_at_global(res: Resource, zone: str) -> Resource:
    """How the global stores a resource received from `zone` (the zone comes from the stream,
    never from the payload). `res` is left as it is; its body is shared, not copied: it was
    decoded from the stream for this, and the stores copy what they keep. A deep copy of
    each received Dataplane and insight was a fifth of the global's CPU under a zone's
    registration churn (decision 190)."""
    labels = {
        **res.meta.labels,
        LABEL_ORIGIN: ORIGIN_ZONE,
        LABEL_ZONE: zone,
        LABEL_DISPLAY_NAME: res.meta.name,
    }
    name = zone_resource_name(res.meta.name, res.meta.mesh, zone)
    meta = replace(res.meta, name=name, labels=labels, version="")
    return Resource(type=res.type, meta=meta, spec=res.spec)


def key_at_global(res: Resource) -> Key:
    """The key under which the zone that sent a stored resource knows it."""
    return Key(res.meta.mesh, res.meta.labels.get(LABEL_DISPLAY_NAME, res.meta.name))


def held_at_global(resources: Iterable[Resource], zone: str) -> dict[str, dict[Key, str]]:
    """Versions the global holds from `zone`, per type, rebuilt from its store."""
    held: dict[str, dict[Key, str]] = {}
    for res in resources:
        labels = res.meta.labels
        if labels.get(LABEL_ORIGIN) == ORIGIN_ZONE and labels.get(LABEL_ZONE) == zone:
            held.setdefault(res.type, {})[key_at_global(res)] = res.content_hash()
    return held


# -- global -> zone ----------------------------------------------------------------------------


def outgoing_from_global(res: Resource) -> Resource:
    """The form the global sends a resource in; the zone stores exactly this. Its body is
    `res`'s, shared: it is only encoded."""
    return _relabelled(res, {**res.meta.labels, LABEL_ORIGIN: ORIGIN_GLOBAL})


def held_in_zone(resources: Iterable[Resource]) -> dict[str, dict[Key, str]]:
    """Versions a zone holds from the global, per type, rebuilt from its store."""
    held: dict[str, dict[Key, str]] = {}
    for res in resources:
        if res.meta.labels.get(LABEL_ORIGIN) == ORIGIN_GLOBAL:
            held.setdefault(res.type, {})[Key(res.meta.mesh, res.meta.name)] = res.content_hash()
    return held


def with_ingress_zone(res: Resource, zone: str) -> Resource:
    """Sets a ZoneIngress's `zone` (Kuma: "set by the global") on `res`, a copy, replacing its
    body with a copy that has it (the body may be shared with the stored resource).

    The global sets it from the stream, so a zone cannot claim another zone's; the zone sets
    the same value in the form it sends (its KDS version is computed over it), so the copy the
    global stores hashes to the version the zone sent: after a restart the global still holds
    exactly what the zone has, and nothing is sent again.
    """
    if res.type == ZONE_INGRESS.name and res.spec.get("zone") != zone:
        res.spec = {**res.spec, "zone": zone}
    return res
