"""Zone-originated policies at the API (Kuma 2.6+, issue 17; decisions 149-151).

A policy type (`TypeDescriptor.zone_origin`) may be written at a zone's API as well as at the
global's. In the zone it is stored with the labels Kuma computes for a zone-provided resource
on Universal: `kuma.io/origin: zone`, `kuma.io/zone`, `kuma.io/mesh`, `kuma.io/env:
universal` and `kuma.io/display-name` (no `kuma.io/policy-role`: Kuma sets it from a
Kubernetes namespace only). The zone syncs it up; the global stores it renamed
`<name>.<hash>` and read-only: only that zone's KDS stream changes or removes it.
See https://kuma.io/docs/latest/policies/introduction/ ("Global, zonal, producer and consumer
policies").
"""

from __future__ import annotations

from meshfed.api.errors import ApiError
from meshfed.resources.descriptors import Mode, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError
from meshfed.resources.model import (
    LABEL_DISPLAY_NAME,
    LABEL_ORIGIN,
    LABEL_ZONE,
    ORIGIN_ZONE,
    Resource,
)

LABEL_MESH = "kuma.io/mesh"
LABEL_ENV = "kuma.io/env"
ENV_UNIVERSAL = "universal"


def origin_label_errors(
    mode: Mode, federated: bool, desc: TypeDescriptor, resource: Resource
) -> list[FieldError]:
    """Kuma's check on a federated zone: a policy applied there must carry `kuma.io/origin:
    zone`, so that a policy meant for the global is not applied to one zone by mistake
    (https://kuma.io/docs/latest/policies/applying-policies/). A standalone zone needs none.
    (A wrong value is `system_label_errors`'.)"""
    if mode is not Mode.ZONE or not federated or not desc.zone_origin:
        return []
    if LABEL_ORIGIN in resource.meta.labels:
        return []
    reason = (
        f"must be set to {ORIGIN_ZONE!r} to apply a {desc.name} at a zone (it then applies in "
        "this zone only); a policy for every zone is applied at the global control plane"
    )
    return [FieldError(f"labels[{LABEL_ORIGIN!r}]", reason)]


def stamp_zone_origin(desc: TypeDescriptor, resource: Resource) -> None:
    """Kuma's labels of a policy applied at a zone (origin and zone are `_stamp`'s)."""
    if not desc.zone_origin:
        return
    labels = resource.meta.labels
    labels[LABEL_DISPLAY_NAME] = resource.meta.name
    labels[LABEL_ENV] = ENV_UNIVERSAL
    if desc.scope is Scope.MESH:
        labels[LABEL_MESH] = resource.meta.mesh


def check_not_zone_copy(mode: Mode, desc: TypeDescriptor, res: Resource | None) -> None:
    """405 at the global for a policy a zone applied: its zone owns it, and the next sync
    from there would undo any change made here."""
    if mode is not Mode.GLOBAL or res is None:
        return
    labels = res.meta.labels
    if labels.get(LABEL_ORIGIN) != ORIGIN_ZONE:
        return
    zone = labels.get(LABEL_ZONE, "?")
    shown = labels.get(LABEL_DISPLAY_NAME, res.meta.name)
    detail = (
        f"{desc.name} {res.meta.name!r} was applied in zone {zone!r} and is read-only at the "
        f"global control plane; change or delete it in zone {zone!r} (as {shown!r})"
    )
    raise ApiError(405, "Method Not Allowed", detail, headers={"Allow": "GET"})
