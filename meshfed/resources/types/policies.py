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

Validation has two stages, both in the descriptor's validator so that every path that
accepts a policy (REST, dry runs, KDS) refuses the same documents: the schema (Kuma's shape),
then the enforcement gate (meshfed.policy.enforced): a field meshfed's sidecar would not act
on is refused with a reason naming it, instead of being stored and silently ignored.
`schema_only` gives the descriptors without the gate, for code that must hold such a
document anyway (tests of the gate itself).
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
from meshfed.resources.schema import Check, ListOf, Obj, Schema, as_validator, join
from meshfed.resources.types import policy_confs as conf
from meshfed.resources.types.common import AGE_COLUMN, MESH_COLUMN, NAME_COLUMN, as_list, column
from meshfed.resources.types.load_balancing import LOAD_BALANCING_CONF
from meshfed.resources.types.mesh import MESH as MESH_TYPE
from meshfed.resources.types.mesh import MESH_SCHEMA
from meshfed.resources.types.targetref import (
    MESH,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    TOP_LEVEL_KINDS,
    describe,
    target_ref,
)

OUTBOUND_KINDS = (MESH, MESH_SERVICE)


def _sections_check(sections: Sequence[str]) -> Check:
    """Kuma's rules: at least one section has items; `rules` replaces `to`/`from`."""

    def check(spec: dict[str, Any], path: str) -> list[FieldError]:
        errors: list[FieldError] = []
        present = [s for s in sections if isinstance(spec.get(s), list) and spec[s]]
        if not present:
            if len(sections) == 1:
                errors.append(FieldError(join(path, sections[0]), "must have at least 1 item"))
            else:
                names = ", ".join(f"'{s}'" for s in sections)
                errors.append(FieldError(path, f"at least one of {names} must be defined"))
        if "rules" in present:
            others = [s for s in present if s != "rules"]
            if others:
                names = " and ".join(f"'{s}'" for s in others)
                errors.append(FieldError(path, f"{names} must be empty when 'rules' is defined"))
        return errors

    return check


def policy_spec(
    *,
    to: Schema | None = None,
    from_: Schema | None = None,
    from_kinds: Sequence[str] = (MESH,),
    rules: Schema | None = None,
) -> Obj:
    """The `spec` of one policy, given the `default` block of each section it has."""
    inbound = from_ is not None or rules is not None
    fields: dict[str, Schema] = {
        "targetRef": target_ref(TOP_LEVEL_KINDS, top_level=True, inbound=inbound)
    }
    sections: list[str] = []
    if to is not None:
        fields["to"] = ListOf(
            Obj(
                {"targetRef": target_ref(OUTBOUND_KINDS), "default": to},
                required=("targetRef", "default"),
            )
        )
        sections.append("to")
    if from_ is not None:
        fields["from"] = ListOf(
            Obj(
                {"targetRef": target_ref(from_kinds), "default": from_},
                required=("targetRef", "default"),
            )
        )
        sections.append("from")
    if rules is not None:
        fields["rules"] = ListOf(Obj({"default": rules}, required=("default",)))
        sections.append("rules")
    return Obj(fields, checks=(_sections_check(sections),))


def _within(field: str, prefix: str) -> bool:
    return field == prefix or field.startswith((prefix + ".", prefix + "["))


def enforced_validator(type_name: str, spec: Obj) -> Validator:
    """The schema's errors, then every field the sidecar does not enforce (a field the schema
    already refused is not reported twice)."""
    check = as_validator(spec)

    def validate(body: dict[str, Any], prefix: str) -> list[FieldError]:
        errors = check(body, prefix)
        policy = Resource(type_name, Meta(name="-"), body)
        for error in enforced.unenforced_fields(policy):
            where = prefix + error.field.removeprefix("spec") if prefix else error.field[5:]
            if not any(_within(where, e.field) for e in errors):
                errors.append(FieldError(where, error.reason))
        return errors

    return validate


def _count(section: str) -> Column:
    return column(section.upper(), lambda r: str(len(as_list(r.spec.get(section)))))


def _policy(
    name: str, short: str, description: str, spec: Obj, sections: Sequence[str]
) -> TypeDescriptor:
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
        kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
        short_names=(short,),
        validate=enforced_validator(name, spec),
        columns=columns,
        description=description,
    )


MESH_TRAFFIC_PERMISSION_SPEC = policy_spec(
    from_=conf.MTP_FROM_CONF,
    from_kinds=(MESH, MESH_SUBSET, MESH_SERVICE, MESH_SERVICE_SUBSET),
    rules=conf.MTP_RULE_CONF,
)
MESH_TIMEOUT_SPEC = policy_spec(
    to=conf.TIMEOUT_CONF, from_=conf.TIMEOUT_CONF, rules=conf.TIMEOUT_CONF
)
MESH_RETRY_SPEC = policy_spec(to=conf.RETRY_CONF)
MESH_HEALTH_CHECK_SPEC = policy_spec(to=conf.HEALTH_CHECK_CONF)
MESH_CIRCUIT_BREAKER_SPEC = policy_spec(
    to=conf.CIRCUIT_BREAKER_CONF, from_=conf.CIRCUIT_BREAKER_CONF, rules=conf.CIRCUIT_BREAKER_CONF
)
MESH_LOAD_BALANCING_STRATEGY_SPEC = policy_spec(to=LOAD_BALANCING_CONF)

MESH_TRAFFIC_PERMISSION = _policy(
    "MeshTrafficPermission",
    "mtp",
    "Who may call whom.",
    MESH_TRAFFIC_PERMISSION_SPEC,
    ("from", "rules"),
)
MESH_TIMEOUT = _policy(
    "MeshTimeout",
    "mt",
    "Connection and request timeouts.",
    MESH_TIMEOUT_SPEC,
    ("to", "from", "rules"),
)
MESH_RETRY = _policy(
    "MeshRetry", "mr", "Retries of failed requests and connections.", MESH_RETRY_SPEC, ("to",)
)
MESH_HEALTH_CHECK = _policy(
    "MeshHealthCheck",
    "mhc",
    "Active health checking of endpoints.",
    MESH_HEALTH_CHECK_SPEC,
    ("to",),
)
MESH_CIRCUIT_BREAKER = _policy(
    "MeshCircuitBreaker",
    "mcb",
    "Connection limits, outlier ejection.",
    MESH_CIRCUIT_BREAKER_SPEC,
    ("to", "from", "rules"),
)
MESH_LOAD_BALANCING_STRATEGY = _policy(
    "MeshLoadBalancingStrategy",
    "mlbs",
    "Load balancing and cross-zone locality.",
    MESH_LOAD_BALANCING_STRATEGY_SPEC,
    ("to",),
)

POLICIES: tuple[TypeDescriptor, ...] = (
    MESH_TRAFFIC_PERMISSION,
    MESH_TIMEOUT,
    MESH_RETRY,
    MESH_HEALTH_CHECK,
    MESH_CIRCUIT_BREAKER,
    MESH_LOAD_BALANCING_STRATEGY,
)

_SPECS: dict[str, Obj] = {
    MESH_TRAFFIC_PERMISSION.name: MESH_TRAFFIC_PERMISSION_SPEC,
    MESH_TIMEOUT.name: MESH_TIMEOUT_SPEC,
    MESH_RETRY.name: MESH_RETRY_SPEC,
    MESH_HEALTH_CHECK.name: MESH_HEALTH_CHECK_SPEC,
    MESH_CIRCUIT_BREAKER.name: MESH_CIRCUIT_BREAKER_SPEC,
    MESH_LOAD_BALANCING_STRATEGY.name: MESH_LOAD_BALANCING_STRATEGY_SPEC,
}


def schema_only(desc: TypeDescriptor) -> TypeDescriptor:
    """`desc` validating Kuma's shape only, without the enforcement gate (the policies' and
    the Mesh's unenforced fields); other types are returned as they are."""
    spec = _SPECS.get(desc.name) or (MESH_SCHEMA if desc.name == MESH_TYPE.name else None)
    if spec is None:
        return desc
    return dataclasses.replace(desc, validate=as_validator(spec))
