"""Mesh: Kuma's top-level fields (mtls with a builtin CA backend, routing, constraints, ...).

Only the builtin CA is implemented: the global creates the CA and syncs it to zones as a
Secret. Observability backends (logging, tracing, metrics) are not configured through the
Mesh in meshfed, so those fields are refused instead of being stored and ignored.
"""

from __future__ import annotations

from typing import Any

from meshfed.resources.descriptors import KdsFlag, Mode, Scope, TypeDescriptor
from meshfed.resources.errors import FieldError
from meshfed.resources.schema import (
    Bool,
    Duration,
    Enum,
    Int,
    ListOf,
    Obj,
    Str,
    Unsupported,
    index,
    join,
)
from meshfed.resources.types.common import (
    AGE_COLUMN,
    NAME_COLUMN,
    NOT_SUPPORTED,
    TAGS,
    column,
    dig,
)


def _backend_names(mtls: dict[str, Any], path: str) -> list[FieldError]:
    """Backend names are unique and enabledBackend names one of them."""
    errors: list[FieldError] = []
    backends = mtls.get("backends")
    names: set[str] = set()
    for i, backend in enumerate(backends if isinstance(backends, list) else []):
        name = backend.get("name") if isinstance(backend, dict) else None
        if not isinstance(name, str):
            continue
        if name in names:
            errors.append(
                FieldError(
                    join(index(join(path, "backends"), i), "name"),
                    f"{name!r} is already used by another backend",
                )
            )
        names.add(name)
    enabled = mtls.get("enabledBackend")
    if isinstance(enabled, str) and enabled and enabled not in names:
        known = ", ".join(sorted(names)) or "none defined"
        errors.append(
            FieldError(
                join(path, "enabledBackend"),
                f"must name one of the backends in mtls.backends ({known})",
            )
        )
    return errors


# The key sizes meshfed.pki makes (KeyAlgorithm); Kuma takes any size, meshfed refuses the
# others rather than make a key of a size nobody asked for.
RSA_KEY_SIZES = (2048, 4096)


def _rsa_bits(ca_cert: dict[str, Any], path: str) -> list[FieldError]:
    bits = ca_cert.get("RSAbits")
    if isinstance(bits, int) and 2048 <= bits <= 8192 and bits not in RSA_KEY_SIZES:
        return [
            FieldError(
                join(path, "RSAbits"),
                f"{NOT_SUPPORTED}: the builtin CA makes 2048- or 4096-bit RSA keys",
            )
        ]
    return []


# A builtin backend's name ends the names of its CA Secrets (`<mesh>.ca-builtin-cert-<name>`)
# and is the value of their `meshfed.io/ca-backend` label: it must fit both.
_BACKEND_NAME = Str(
    non_empty=True,
    max_len=63,
    pattern=r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*",
    message="must consist of lower case alphanumeric characters, '-' or '.', and start and "
    "end with an alphanumeric character (it names the CA's Secrets)",
)

_BACKEND = Obj(
    {
        "name": _BACKEND_NAME,
        "type": Enum(
            "builtin",
            unsupported={
                "provided": f"{NOT_SUPPORTED} yet: only the builtin CA is implemented",
            },
        ),
        "mode": Enum(
            "STRICT",
            unsupported={"PERMISSIVE": f"{NOT_SUPPORTED}: sidecars always require mTLS"},
        ),
        "dpCert": Obj({"rotation": Obj({"expiration": Duration(positive=True, long_units=True)})}),
        "conf": Obj(
            {
                "caCert": Obj(
                    {
                        "RSAbits": Int(2048, 8192),
                        "expiration": Duration(positive=True, long_units=True),
                    },
                    checks=(_rsa_bits,),
                )
            }
        ),
    },
    required=("name", "type"),
)

_OBSERVABILITY = Unsupported(
    f"{NOT_SUPPORTED}: observability backends are not configured through the Mesh"
)


def _zone_egress(routing: dict[str, Any], path: str) -> list[FieldError]:
    if routing.get("zoneEgress") is True:
        return [
            FieldError(
                join(path, "zoneEgress"),
                f"{NOT_SUPPORTED}: cross-zone traffic goes through zone ingresses",
            )
        ]
    return []


_TAG_RULES = ListOf(Obj({"tags": TAGS}, required=("tags",)))

MESH_SCHEMA = Obj(
    {
        "mtls": Obj(
            {
                "enabledBackend": Str(),
                "backends": ListOf(_BACKEND),
                "skipValidation": Unsupported(f"{NOT_SUPPORTED}: CA material is always validated"),
            },
            checks=(_backend_names,),
        ),
        "skipCreatingInitialPolicies": ListOf(Str(non_empty=True)),
        "networking": Obj({"outbound": Obj({"passthrough": Bool()})}),
        "routing": Obj(
            {"localityAwareLoadBalancing": Bool(), "zoneEgress": Bool()},
            checks=(_zone_egress,),
        ),
        "constraints": Obj(
            {"dataplaneProxy": Obj({"requirements": _TAG_RULES, "restrictions": _TAG_RULES})}
        ),
        "meshServices": Obj(
            {"mode": Enum("Disabled", "Everywhere", "ReachableBackends", "Exclusive")}
        ),
        "logging": _OBSERVABILITY,
        "tracing": _OBSERVABILITY,
        "metrics": _OBSERVABILITY,
    }
)


# Mesh fields of Kuma's shape that nothing in meshfed acts on, each with the reason. They are
# kept in MESH_SCHEMA (Kuma's shape: documents round-trip, schema tests use them) and refused
# by the Mesh's validator, as the policies' unenforced fields are (docs/architecture.md).
MESH_NOT_ENFORCED = "is not enforced by meshfed"
UNENFORCED_MESH_FIELDS: dict[tuple[str, ...], str] = {
    ("skipCreatingInitialPolicies",): "meshfed creates no initial default policies to skip",
    ("networking", "outbound", "passthrough"): "sidecars do not intercept outbound traffic "
    "(no transparent proxying), so traffic outside the mesh cannot be passed or blocked",
    ("routing", "localityAwareLoadBalancing"): "locality-aware load balancing is on by "
    "default and set per service with MeshLoadBalancingStrategy localityAwareness",
    ("constraints", "dataplaneProxy"): "Dataplanes are not checked against requirements or "
    "restrictions",
    ("meshServices",): "meshfed has no MeshService resources: services come from Dataplane tags",
}


def _unenforced(body: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for steps, reason in UNENFORCED_MESH_FIELDS.items():
        if dig(body, *steps) is not None:
            where = path
            for step in steps:
                where = join(where, step)
            errors.append(FieldError(where, f"{MESH_NOT_ENFORCED}: {reason}"))
    return errors


def _validate_mesh(body: dict[str, Any], path: str) -> list[FieldError]:
    """Kuma's shape, then the fields meshfed would store and ignore (refused, named)."""
    errors = MESH_SCHEMA.check(body, path)

    def reported(field: str) -> bool:  # one mistake, one error: the shape's comes first
        return any(
            e.field == field or e.field.startswith((f"{field}.", f"{field}[")) for e in errors
        )

    return errors + [e for e in _unenforced(body, path) if not reported(e.field)]


def _mtls_cell(spec: dict[str, Any]) -> str:
    enabled = dig(spec, "mtls", "enabledBackend")
    return f"{enabled}" if isinstance(enabled, str) and enabled else "off"


MESH = TypeDescriptor(
    name="Mesh",
    plural="meshes",
    scope=Scope.GLOBAL,
    spec_wrapped=False,
    owner=Mode.GLOBAL,
    kds=frozenset({KdsFlag.GLOBAL_TO_ZONE}),
    short_names=("mesh",),
    validate=_validate_mesh,
    columns=(NAME_COLUMN, column("MTLS", lambda r: _mtls_cell(r.spec)), AGE_COLUMN),
    description="A mesh: the unit of isolation, trust (mTLS CA) and policy.",
)
