"""Mesh: Kuma's top-level fields (mtls with a builtin CA backend, routing, constraints, ...)
(https://kuma.io/docs/latest/policies/mutual-tls/).

Only the builtin CA is implemented; observability backends are not configured through the
Mesh in meshfed, so those fields are refused instead of being stored and ignored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import (
    NOT_SUPPORTED,
    Choice,
    GoDuration,
    Model,
    OpenObject,
    Range,
    Text,
    problem,
)
from meshfed.resources.models.common import NonEmpty, Tags

CertDuration = Annotated[timedelta, GoDuration(positive=True, long_units=True)]

# The key sizes meshfed.pki makes (KeyAlgorithm); Kuma takes any size, meshfed refuses the
# others rather than make a key of a size nobody asked for.
RSA_KEY_SIZES = (2048, 4096)


class CaCert(Model):
    rsa_bits: Annotated[int, Range(2048, 8192)] | None = Field(None, alias="RSAbits")
    expiration: CertDuration | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        bits = data.get("RSAbits")
        if (
            isinstance(bits, int)
            and not isinstance(bits, bool)
            and 2048 <= bits <= 8192
            and bits not in RSA_KEY_SIZES
        ):
            reason = f"{NOT_SUPPORTED}: the builtin CA makes 2048- or 4096-bit RSA keys"
            return [problem(("RSAbits",), reason)]
        return []


class BuiltinConf(Model):
    ca_cert: CaCert | None = None


class Rotation(Model):
    expiration: CertDuration | None = None


class DpCert(Model):
    rotation: Rotation | None = None


# A builtin backend's name ends the names of its CA Secrets (`<mesh>.ca-builtin-cert-<name>`)
# and is the value of their `meshfed.io/ca-backend` label: it must fit both.
BackendName = Annotated[
    str,
    Text(
        non_empty=True,
        max_len=63,
        pattern=r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*",
        message="must consist of lower case alphanumeric characters, '-' or '.', and start and "
        "end with an alphanumeric character (it names the CA's Secrets)",
    ),
]


class Backend(Model):
    name: BackendName
    type: Annotated[
        Literal["builtin"],
        Choice((("provided", f"{NOT_SUPPORTED} yet: only the builtin CA is implemented"),)),
    ]
    mode: (
        Annotated[
            Literal["STRICT"],
            Choice((("PERMISSIVE", f"{NOT_SUPPORTED}: sidecars always require mTLS"),)),
        ]
        | None
    ) = None
    dp_cert: DpCert | None = None
    conf: BuiltinConf | None = None


class Mtls(Model):
    refused = {"skipValidation": f"{NOT_SUPPORTED}: CA material is always validated"}
    enabled_backend: str | None = None
    backends: list[Backend] | None = None
    skip_validation: bool | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Backend names are unique and enabledBackend names one of them."""
        out: list[InitErrorDetails] = []
        backends = data.get("backends")
        names: set[str] = set()
        for i, backend in enumerate(backends if isinstance(backends, list) else []):
            name = backend.get("name") if isinstance(backend, dict) else None
            if not isinstance(name, str):
                continue
            if name in names:
                out.append(
                    problem(("backends", i, "name"), f"{name!r} is already used by another backend")
                )
            names.add(name)
        enabled = data.get("enabledBackend")
        if isinstance(enabled, str) and enabled and enabled not in names:
            known = ", ".join(sorted(names)) or "none defined"
            out.append(
                problem(
                    ("enabledBackend",), f"must name one of the backends in mtls.backends ({known})"
                )
            )
        return out

    def enabled(self) -> Backend | None:
        """The backend that signs certificates, or None when mTLS is off."""
        if not self.enabled_backend:
            return None
        return next((b for b in self.backends or () if b.name == self.enabled_backend), None)


class Outbound(Model):
    passthrough: bool | None = None


class Networking(Model):
    outbound: Outbound | None = None


class Routing(Model):
    locality_aware_load_balancing: bool | None = None
    zone_egress: bool | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        if data.get("zoneEgress") is True:
            reason = f"{NOT_SUPPORTED}: cross-zone traffic goes through zone ingresses"
            return [problem(("zoneEgress",), reason)]
        return []


class TagRule(Model):
    tags: Tags


class DataplaneProxyConstraints(Model):
    requirements: list[TagRule] | None = None
    restrictions: list[TagRule] | None = None


class Constraints(Model):
    dataplane_proxy: DataplaneProxyConstraints | None = None


class MeshServices(Model):
    mode: (
        Annotated[Literal["Disabled", "Everywhere", "ReachableBackends", "Exclusive"], Choice()]
        | None
    ) = None


_OBSERVABILITY = f"{NOT_SUPPORTED}: observability backends are not configured through the Mesh"


class MeshSpec(Model):
    """A Mesh's fields (Kuma puts them at the top level of the document)."""

    refused = {"logging": _OBSERVABILITY, "tracing": _OBSERVABILITY, "metrics": _OBSERVABILITY}
    mtls: Mtls | None = None
    skip_creating_initial_policies: list[NonEmpty] | None = None
    networking: Networking | None = None
    routing: Routing | None = None
    constraints: Constraints | None = None
    mesh_services: MeshServices | None = None
    logging: OpenObject | None = None
    tracing: OpenObject | None = None
    metrics: OpenObject | None = None
