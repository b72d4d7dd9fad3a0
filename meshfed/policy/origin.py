"""Where a policy was applied, as Kuma's policy matching reads it (issue 17; decision 150).

Two pure rules from https://kuma.io/docs/latest/policies/introduction/ ("Merging
configuration", "Global, zonal, producer and consumer policies"):

- Priority: after the top-level targetRef, policies are ordered by origin (`global` below
  `zone`), then by `kuma.io/policy-role` (`system` < `producer` < `consumer` <
  `workload-owner`; no label is `system`, as on Universal, where Kuma sets none), then by
  display name. So on equal targetRefs a zone's policy overrides the global's field by field.
- Scope: a policy applied at a zone applies only to proxies of that zone, as if its targetRef
  also had `labels: {kuma.io/zone: <zone>}`; a `producer` policy applies to every caller of
  its service (Kuma's `dppSelectedByZone`). A zone only ever holds its own zone's policies, so
  this matters where several zones' are seen at once: the global's inspect views.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshfed.resources.model import LABEL_ORIGIN, LABEL_ZONE, ORIGIN_GLOBAL, ORIGIN_ZONE, Resource

LABEL_POLICY_ROLE = "kuma.io/policy-role"
ROLE_SYSTEM = "system"
ROLE_PRODUCER = "producer"
# Least priority first (Kuma's PolicyRole order).
ROLE_RANK: Mapping[str, int] = {
    ROLE_SYSTEM: 0,
    ROLE_PRODUCER: 1,
    "consumer": 2,
    "workload-owner": 3,
}


def policy_role(policy: Resource) -> str:
    """The policy's role; `system` when unlabelled (Kuma's `PolicyRole`)."""
    return policy.meta.labels.get(LABEL_POLICY_ROLE) or ROLE_SYSTEM


def origin_rank(policy: Resource) -> tuple[int, int]:
    """(origin, role) rank, least priority first: the part of Kuma's order after targetRef."""
    zone = 1 if policy.meta.labels.get(LABEL_ORIGIN) == ORIGIN_ZONE else 0
    return zone, ROLE_RANK.get(policy_role(policy), 0)


def applies_in_zone(policy: Resource, dataplane_labels: Mapping[str, str]) -> bool:
    """Whether a policy may select a proxy with these labels: a zone's policy only its own
    zone's proxies (a proxy with no origin, or one of the global's, is not zone-bound)."""
    if policy_role(policy) == ROLE_PRODUCER:
        return True
    labels = policy.meta.labels
    if labels.get(LABEL_ORIGIN) != ORIGIN_ZONE or LABEL_ZONE not in labels:
        return True
    dp_origin = dataplane_labels.get(LABEL_ORIGIN)
    if dp_origin is None or dp_origin == ORIGIN_GLOBAL:
        return True
    if dp_origin != ORIGIN_ZONE:
        return False
    # A zone's proxy without a zone label is local (Kuma's IsLocalZoneResource).
    return dataplane_labels.get(LABEL_ZONE, labels[LABEL_ZONE]) == labels[LABEL_ZONE]
