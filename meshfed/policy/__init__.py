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

The package imports none of them: the sidecar evaluates permissions and reads OpenTelemetry
endpoints and access-log formats (permissions.py, otlp.py, observability.py) without loading
the engine that zone-cp and the API run (rules.py, targetref.py, enforced.py, and through them
the resource schema; decision 187).
"""
