"""Kuma's targetRef policy semantics, pure: which policies apply to a dataplane, how their
`default` blocks merge, MeshTrafficPermission compiled for the sidecar, and which policy
fields the sidecar enforces.

- targetref.py: top-level targetRef -> selected inbounds of a dataplane;
- rules.py: policy order, `to[]`/`from[]` entries and their merged defaults;
- precedence.py: the order of top-level targetRef kinds (Kuma 2.14's);
- callers.py: callers named by tags (the tags a certificate carries, how entries select them);
- merge.py: JSON merge patch of `default` blocks;
- permissions.py: MeshTrafficPermission -> `Permissions.evaluate(spiffe_id, tags)`;
- enforced.py: the enforced field set, and `unenforced_fields(policy)`.
"""

from meshfed.policy.enforced import ENFORCED, unenforced_fields
from meshfed.policy.merge import merge_confs, merge_patch
from meshfed.policy.permissions import (
    Action,
    Permissions,
    SpiffeMatch,
    Verdict,
    compile_permissions,
)
from meshfed.policy.rules import Matched, Merged, match, outbound_conf, sort_policies
from meshfed.policy.targetref import DataplaneView, selected_inbounds, view_of

__all__ = [
    "ENFORCED",
    "Action",
    "DataplaneView",
    "Matched",
    "Merged",
    "Permissions",
    "SpiffeMatch",
    "Verdict",
    "compile_permissions",
    "match",
    "merge_confs",
    "merge_patch",
    "outbound_conf",
    "selected_inbounds",
    "sort_policies",
    "unenforced_fields",
    "view_of",
]
