"""Kuma resource types meshfed does not have, each with why: data for the API and the CLI.

A request for one of these is a real Kuma request, not a mistyped URL: the API answers its
REST paths with a 400 naming the type and the reason (meshfed/api/unsupported.py), and
`meshctl apply` refuses such a document the same way, instead of "no such path" / "unknown
type". `NOT_YET` types could be added; `NEVER` ones conflict with how meshfed works.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from meshfed.resources.descriptors import Scope


class Support(enum.StrEnum):
    NOT_YET = "not supported yet"
    NEVER = "not supported"


@dataclass(frozen=True)
class UnsupportedType:
    name: str  # Kuma's type name, as in a document's `type`
    plural: str  # Kuma's REST path segment
    scope: Scope
    support: Support
    reason: str

    def message(self) -> str:
        """One sentence a user can act on: the type, that meshfed lacks it, and why."""
        return f"{self.name} is {self.support} by meshfed: {self.reason}"


def _t(name: str, plural: str, support: Support, reason: str) -> UnsupportedType:
    return UnsupportedType(name, plural, Scope.MESH, support, reason)


_YET, _NEVER = Support.NOT_YET, Support.NEVER
_LEGACY = "Kuma's legacy policy, replaced by the targetRef policies; use"

UNSUPPORTED_TYPES: Final[tuple[UnsupportedType, ...]] = (
    _t(
        "MeshProxyPatch",
        "meshproxypatches",
        _NEVER,
        "it patches Envoy configuration, and meshfed's sidecar is not Envoy",
    ),
    _t("MeshGateway", "meshgateways", _YET, "there are no built-in gateways"),
    _t(
        "MeshGatewayRoute",
        "meshgatewayroutes",
        _NEVER,
        "Kuma's legacy gateway route; there are no built-in gateways",
    ),
    _t(
        "MeshTLS",
        "meshtlses",
        _YET,
        "mTLS is configured on the Mesh (mtls.backends) and always required between sidecars",
    ),
    _t("MeshTrust", "meshtrusts", _YET, "trust comes from the Mesh's builtin CA"),
    _t(
        "MeshIdentity",
        "meshidentities",
        _YET,
        "identities are the SPIFFE IDs the Mesh's builtin CA issues per service",
    ),
    _t("TrafficPermission", "traffic-permissions", _NEVER, f"{_LEGACY} MeshTrafficPermission"),
    _t("TrafficRoute", "traffic-routes", _NEVER, f"{_LEGACY} MeshTCPRoute"),
    _t("HealthCheck", "health-checks", _NEVER, f"{_LEGACY} MeshHealthCheck"),
    _t("CircuitBreaker", "circuit-breakers", _NEVER, f"{_LEGACY} MeshCircuitBreaker"),
    _t("Retry", "retries", _NEVER, f"{_LEGACY} MeshRetry"),
    _t("Timeout", "timeouts", _NEVER, f"{_LEGACY} MeshTimeout"),
    _t("FaultInjection", "fault-injections", _NEVER, f"{_LEGACY} MeshFaultInjection"),
    _t("RateLimit", "rate-limits", _NEVER, f"{_LEGACY} MeshRateLimit"),
    _t("TrafficLog", "traffic-logs", _NEVER, f"{_LEGACY} MeshAccessLog"),
    _t("TrafficTrace", "traffic-traces", _NEVER, f"{_LEGACY} MeshTrace"),
    _t("ProxyTemplate", "proxytemplates", _NEVER, f"{_LEGACY} MeshProxyPatch"),
    _t("ExternalService", "external-services", _NEVER, f"{_LEGACY} MeshExternalService"),
    _t(
        "VirtualOutbound",
        "virtual-outbounds",
        _NEVER,
        "Kuma's legacy DNS names for outbounds; zone DNS names are <service>.mesh",
    ),
)

_BY_NAME: Final = {t.name.lower(): t for t in UNSUPPORTED_TYPES}
_BY_PLURAL: Final = {t.plural: t for t in UNSUPPORTED_TYPES}


def unsupported_type(name: str) -> UnsupportedType | None:
    """The entry for a type name or plural, any case; None for types meshfed has or Kuma
    does not."""
    return _BY_NAME.get(name.lower()) or _BY_PLURAL.get(name.lower())
