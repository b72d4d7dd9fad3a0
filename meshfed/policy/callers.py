"""Callers named by any tag in `from[]` (MeshSubset / MeshServiceSubset), as Kuma's
attribute-based policies allow (issue 17; decisions 152, 153).

A caller is what its verified certificate says: its service (the SPIFFE ID) and its tags (the
`kuma://<tag>/<value>` URI SANs, meshfed/pki/tag_sans.py). The zone control plane writes into
a dataplane's certificate only tags it can vouch for (`certified_tags`): those the Dataplane
registered on the inbounds of the service its SPIFFE ID names, and `kuma.io/zone` set to the
zone that issues it, whatever the Dataplane claims.

A `from[]` entry selects a caller when every tag it requires is one of the caller's (a tag may
have several values, one per inbound, as in Kuma's certificates). The merge is Kuma's
(meshfed/policy/rules.py): the entries selecting the caller, in merge order, JSON-merged; so
for a one-field `default` (MeshTrafficPermission's `action`, MeshFaultInjection's `http`
list) the last selecting entry that sets it decides. When no entry of an inbound needs a tag
beyond `kuma.io/service`, the compilers keep their per-service table; otherwise they send the
ordered entries (`caller_entries`) and the sidecar folds them per caller (`selects`).

Pure: no store, no sockets. The sidecar imports this module for `selects` alone: what the
compilers use (the rules engine, the resource model) is imported inside their functions,
so it does not load them (decision 187).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from meshfed.pki.tag_sans import TagSet
from meshfed.resources.fields import SERVICE_TAG

if TYPE_CHECKING:
    from meshfed.policy.rules import Entry, Matched
    from meshfed.policy.targetref import DataplaneView


def certified_tags(dp: DataplaneView, service: str, zone: str) -> TagSet:
    """The tags a certificate naming `service` may carry for `dp`: every tag of its inbounds
    of that service (but the service itself, which the SPIFFE ID names), with `kuma.io/zone`
    the issuing zone's."""
    from meshfed.resources.model import LABEL_ZONE

    tags = {
        (k, v)
        for inbound in dp.inbounds
        if inbound.service == service
        for k, v in inbound.tags.items()
        if k not in (SERVICE_TAG, LABEL_ZONE)
    }
    if zone:
        tags.add((LABEL_ZONE, zone))
    return frozenset(tags)


def selects(required: Mapping[str, str], service: str | None, tags: TagSet) -> bool:
    """Whether a caller of `service` (None: not of this mesh) with certificate `tags` has every
    tag `required` names; the service only from the SPIFFE ID."""
    for key, want in required.items():
        if key == SERVICE_TAG:
            if service != want:
                return False
        elif (key, want) not in tags:
            return False
    return True


def needs_tags(required: Mapping[str, str]) -> bool:
    return any(k != SERVICE_TAG for k in required)


def caller_entries(matched: Sequence[Matched], inbound: int) -> list[tuple[dict[str, str], Entry]]:
    """The `from[]` entries for `inbound` in merge order with the tags each requires, when
    at least one requires a tag beyond the service; else [] (the per-service table holds)."""
    from meshfed.policy.rules import caller_subset, entries

    found: list[tuple[dict[str, str], Entry]] = []
    for e in entries(matched, "from", inbound):
        required = caller_subset(e.target_ref)
        if required is not None:
            found.append((required, e))
    if not any(needs_tags(required) for required, _ in found):
        return []
    return found
