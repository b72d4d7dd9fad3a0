"""The Mesh* policies: Kuma's targetRef / to / from / rules structure under `spec`.

Which targetRef kinds each position accepts follows Kuma 2.x (its per-policy validators),
narrowed to what meshfed enforces (see targetref.py):

| policy                    | top level    | to[]               | from[]             | rules |
|---------------------------|--------------|--------------------|--------------------|-------|
| MeshTrafficPermission     | all five     | -                  | Mesh, MeshSubset,  | yes   |
|                           |              |                    | MeshService(Subset)|       |
| MeshTimeout               | all five     | Mesh, MeshService  | Mesh               | yes   |
| MeshCircuitBreaker        | all five     | Mesh, MeshService  | Mesh               | yes   |
| MeshRetry                 | all five     | Mesh, MeshService  | -                  | -     |
| MeshHealthCheck           | all five     | Mesh, MeshService  | -                  | -     |
| MeshLoadBalancingStrategy | all five     | Mesh, MeshService  | -                  | -     |

"All five" = Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane.

Validation has two stages, both in the descriptor's `validate` so that every path that
accepts a policy (REST, dry runs, KDS) refuses the same documents: the model (Kuma's full
shape, meshfed/resources/models/policies.py), then the enforcement gate
(meshfed.policy.enforced): a field meshfed's sidecar would not act on is refused with a reason
naming it, instead of being stored and silently ignored. `schema_only` gives the descriptors
without the gate, for code that must hold such a document anyway (tests of the gate itself).

A new policy type is one model (its spec) in meshfed/resources/models/policies.py and one
`_policy(...)` line here (docs/architecture.md, decision 74).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

# The module, not the function: meshfed.policy.enforced imports the resource types, so
# either package may be imported first.
from meshfed.policy import enforced
from meshfed.resources.descriptors import (
    Column,
    KdsFlag,
    Mode,
    Scope,
    TypeDescriptor,
    Validator,
)
from meshfed.resources.errors import FieldError
from meshfed.resources.model import Meta, Resource
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN, as_list, column
from meshfed.resources.types.targetref import describe

_MODELS = "meshfed.resources.models.policies:"


def enforcement_gate(type_name: str) -> Validator:
    """Every field of a policy body the sidecar does not enforce, at its path."""

    def gate(body: dict[str, Any], prefix: str) -> list[FieldError]:
        policy = Resource(type_name, Meta(name="-"), body)
        return [
            FieldError(prefix + e.field.removeprefix("spec") if prefix else e.field[5:], e.reason)
            for e in enforced.unenforced_fields(policy)
        ]

    return gate


def _count(section: str) -> Column:
    return column(section.upper(), lambda r: str(len(as_list(r.spec.get(section)))))


def _policy(
    name: str, short: str, description: str, sections: Sequence[str], models: str = _MODELS
) -> TypeDescriptor:
    """A Mesh* policy; its spec model is `<name>Spec` in `models` (default:
    meshfed/resources/models/policies.py)."""
    columns: tuple[Column, ...] = (
        NAME_COLUMN,
        MESH_COLUMN,
        column("TARGETREF", lambda r: describe(r.spec.get("targetRef"))),
        *(_count(s) for s in sections),
        AGE_COLUMN,
    )
    return TypeDescriptor(
        name=name,
        plural=name.lower() + "s" if not name.endswith("y") else name.lower()[:-1] + "ies",
        scope=Scope.MESH,
        spec_wrapped=True,
        owner=Mode.GLOBAL,
        # Kuma 2.6+: also applied at a zone, and synced up from there (decision 149).
        kds=frozenset({KdsFlag.GLOBAL_TO_ZONE, KdsFlag.ZONE_TO_GLOBAL}),
        zone_origin=True,
        short_names=(short,),
        model=f"{models}{name}Spec",
        gate=enforcement_gate(name),
        columns=columns,
        description=description,
    )


MESH_TRAFFIC_PERMISSION = _policy(
    "MeshTrafficPermission", "mtp", "Who may call whom.", ("from", "rules")
)
MESH_TIMEOUT = _policy(
    "MeshTimeout", "mt", "Connection and request timeouts.", ("to", "from", "rules")
)
MESH_RETRY = _policy("MeshRetry", "mr", "Retries of failed requests and connections.", ("to",))
MESH_HEALTH_CHECK = _policy(
    "MeshHealthCheck", "mhc", "Active health checking of endpoints.", ("to",)
)
MESH_CIRCUIT_BREAKER = _policy(
    "MeshCircuitBreaker", "mcb", "Connection limits, outlier ejection.", ("to", "from", "rules")
)
MESH_LOAD_BALANCING_STRATEGY = _policy(
    "MeshLoadBalancingStrategy", "mlbs", "Load balancing and cross-zone locality.", ("to",)
)

# Issue 14: Kuma's schemas in meshfed/resources/models/routes.py; the gate refuses every field
# until mesh-dp enforces them (meshfed/policy/enforced.py), so none can be stored yet.
_ROUTES = "meshfed.resources.models.routes:"
MESH_HTTP_ROUTE = _policy(
    "MeshHTTPRoute",
    "mhttpr",
    "HTTP routing: matches, filters, weighted backends.",
    ("to",),
    _ROUTES,
)
MESH_TCP_ROUTE = _policy(
    "MeshTCPRoute", "mtcpr", "TCP routing: weighted backends.", ("to",), _ROUTES
)
MESH_FAULT_INJECTION = _policy(
    "MeshFaultInjection",
    "mfi",
    "HTTP aborts, delays, bandwidth limits.",
    ("from", "rules"),
    _ROUTES,
)
MESH_RATE_LIMIT = _policy(
    "MeshRateLimit",
    "mrl",
    "Local HTTP request and TCP connection rates.",
    ("from", "rules"),
    _ROUTES,
)
# Issue 18: meshfed/resources/models/observability.py.
_OBSERVABILITY = "meshfed.resources.models.observability:"
MESH_ACCESS_LOG = _policy(
    "MeshAccessLog",
    "mal",
    "Access logs of requests and connections.",
    ("to", "from", "rules"),
    _OBSERVABILITY,
)
MESH_METRIC = _policy(
    "MeshMetric", "mm", "Where and which metrics sidecars expose.", (), _OBSERVABILITY
)
MESH_TRACE = _policy("MeshTrace", "mtr", "Distributed tracing.", (), _OBSERVABILITY)
# The policy types whose every field the gate still refuses (no documented example applies).
NOT_YET_ENFORCED: tuple[TypeDescriptor, ...] = ()

POLICIES: tuple[TypeDescriptor, ...] = (
    MESH_TRAFFIC_PERMISSION,
    MESH_TIMEOUT,
    MESH_RETRY,
    MESH_HEALTH_CHECK,
    MESH_CIRCUIT_BREAKER,
    MESH_LOAD_BALANCING_STRATEGY,
    MESH_TCP_ROUTE,
    MESH_HTTP_ROUTE,
    MESH_ACCESS_LOG,
    MESH_METRIC,
    MESH_TRACE,
    MESH_FAULT_INJECTION,
    MESH_RATE_LIMIT,
)


def schema_only(desc: TypeDescriptor) -> TypeDescriptor:
    """`desc` validating Kuma's shape only, without the enforcement gate (the policies' and
    the Mesh's unenforced fields)."""
    return dataclasses.replace(desc, gate=None)
