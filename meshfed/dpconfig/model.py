"""The configs zone-cp sends its proxies: frozen dataclasses with a JSON form.

`SidecarConfig` is everything a mesh-dp needs and nothing it must compute from policies:

- `inbounds`: one mTLS listener per inbound at `address:port`, forwarding accepted
  connections to the application at `serviceAddress:servicePort`; `permissions` is the
  compiled MeshTrafficPermission (meshfed.policy.permissions.Permissions.evaluate, per
  connection, with the caller's verified SPIFFE ID).
- `outbounds`: one listener per reachable service at `address:port` (a VIP from the zone's
  DNS, or 127.0.0.1 for an explicit Dataplane outbound), and on port 80 of the same address
  too when `alsoPort80` is true and the process may bind it. `zone` set: the listener of
  `<service>.<zone>.mesh`, whose endpoints are in that zone only. `endpoints` are the
  choices, in no particular order; choosing is the sidecar's job: local zone first unless
  `policies.localityAware` is false, `weight` within a locality, `policies.loadBalancer`
  among equals. An endpoint `viaIngress` is another zone's ingress: connect to it and set
  `sni` in the ClientHello (it names service and mesh); otherwise connect directly. Either
  way originate mTLS with `tls` when `mtlsEnabled`, and check that the server presents
  `spiffe://<mesh>/<service>`.
- `tls`: the proxy's own certificate and key (PEM), the trust bundle, and when the cert
  expires (zone-cp sends a new config with a new cert before then); None when mTLS is off.

`IngressConfig` maps each SNI to the local endpoints of that service: the ingress reads the
SNI, picks an endpoint and passes the TLS bytes through untouched.

`version` is a hash of the rest of the config (`content_version`): equal versions mean equal
configs, so zone-cp can rebuild freely and send only when the version changes.

JSON field names are camelCase like the resources'. `from_json` raises ConfigFormatError
naming the bad field; unknown fields are ignored (an older proxy, a newer control plane).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from meshfed.dpconfig.jsonread import ConfigFormatError, Obj
from meshfed.policy.permissions import Action, MatchType, Permissions, SpiffeMatch

PORT_MAX = 65535
UINT32 = 2**32 - 1

__all__ = [
    "ConfigFormatError",
    "Endpoint",
    "HealthCheck",
    "Inbound",
    "IngressConfig",
    "IngressService",
    "LbAlgorithm",
    "Locality",
    "Outbound",
    "OutboundKind",
    "OutboundPolicies",
    "SidecarConfig",
    "Tls",
    "content_version",
    "permissions_from_json",
    "permissions_to_json",
]


class Locality(enum.StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


class LbAlgorithm(enum.StrEnum):
    ROUND_ROBIN = "RoundRobin"
    RANDOM = "Random"
    LEAST_REQUEST = "LeastRequest"


# `kuma.io/protocol` of a listener (Kuma's values); "tcp" when untagged. mesh-dp speaks HTTP/1.1
# on "http" listeners; every other value is relayed as bytes.
PROTOCOLS = ("tcp", "http", "http2", "grpc")


def _protocol(o: Obj) -> str:
    value = o.text("protocol", "tcp")
    if value not in PROTOCOLS:
        raise ConfigFormatError(f"{o.path}.protocol: must be one of {', '.join(PROTOCOLS)}")
    return value


class OutboundKind(enum.StrEnum):
    VIP = "vip"  # a service's VIP from zone DNS
    EXPLICIT = "explicit"  # a Dataplane networking.outbound entry


E = TypeVar("E", bound=enum.StrEnum)


def _enum(cls: type[E], obj: Obj, name: str, default: E | None = None) -> E:
    raw = obj.text(name, None if default is None else str(default))
    try:
        return cls(raw)
    except ValueError:
        allowed = ", ".join(str(v) for v in cls)
        raise ConfigFormatError(f"{obj.path}.{name}: must be one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    zone: str
    weight: int = 1  # remote: the instance count behind the ingress
    locality: Locality = Locality.LOCAL
    via_ingress: bool = False
    sni: str = ""  # set when via_ingress

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address,
            "port": self.port,
            "zone": self.zone,
            "weight": self.weight,
            "locality": str(self.locality),
        }
        if self.via_ingress:
            out["viaIngress"] = True
            out["sni"] = self.sni
        return out

    @classmethod
    def from_json(cls, o: Obj) -> Endpoint:
        via = o.flag("viaIngress", False)
        sni = o.text("sni") if via else o.text("sni", "")
        return cls(
            address=o.text("address"),
            port=o.integer("port", 1, PORT_MAX),
            zone=o.text("zone", ""),
            weight=o.integer("weight", 1, UINT32, 1),
            locality=_enum(Locality, o, "locality", Locality.LOCAL),
            via_ingress=via,
            sni=sni,
        )


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active TCP connect checks of each endpoint (MeshHealthCheck)."""

    interval: float  # seconds between checks
    timeout: float  # seconds a connect may take
    unhealthy_threshold: int  # failures in a row that mark an endpoint unhealthy
    healthy_threshold: int  # successes in a row that mark it healthy again

    def to_json(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "timeout": self.timeout,
            "unhealthyThreshold": self.unhealthy_threshold,
            "healthyThreshold": self.healthy_threshold,
        }

    @classmethod
    def from_json(cls, o: Obj) -> HealthCheck:
        return cls(
            interval=o.number("interval"),
            timeout=o.number("timeout"),
            unhealthy_threshold=o.integer("unhealthyThreshold", 1, UINT32),
            healthy_threshold=o.integer("healthyThreshold", 1, UINT32),
        )


# Defaults when no policy sets a field: the values of the policies Kuma creates with a mesh
# (MeshTimeout, MeshRetry, MeshCircuitBreaker "*-all-default"), locality-aware round robin.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_CONNECT_ATTEMPTS = 5
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_LEAST_REQUEST_CHOICES = 2


@dataclass(frozen=True, slots=True)
class OutboundPolicies:
    """The enforced policy fields for one outbound (see meshfed/policy/enforced.py)."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # seconds (MeshTimeout)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds without bytes either way; 0: never
    max_connect_attempts: int = DEFAULT_MAX_CONNECT_ATTEMPTS  # endpoints tried (MeshRetry)
    health_check: HealthCheck | None = None  # None: no active checks (MeshHealthCheck)
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open at once (MeshCircuitBreaker)
    load_balancer: LbAlgorithm = LbAlgorithm.ROUND_ROBIN
    least_request_choices: int = DEFAULT_LEAST_REQUEST_CHOICES  # sampled for LeastRequest
    locality_aware: bool = True  # local zone first (MeshLoadBalancingStrategy)
    sources: tuple[str, ...] = ()  # policies that set any of these, `Type/name`

    def to_json(self) -> dict[str, Any]:
        return {
            "connectTimeout": self.connect_timeout,
            "idleTimeout": self.idle_timeout,
            "maxConnectAttempts": self.max_connect_attempts,
            "healthCheck": None if self.health_check is None else self.health_check.to_json(),
            "maxConnections": self.max_connections,
            "loadBalancer": str(self.load_balancer),
            "leastRequestChoices": self.least_request_choices,
            "localityAware": self.locality_aware,
            "sources": list(self.sources),
        }

    @classmethod
    def from_json(cls, o: Obj) -> OutboundPolicies:
        hc = o.opt_obj("healthCheck")
        return cls(
            connect_timeout=o.number("connectTimeout", DEFAULT_CONNECT_TIMEOUT),
            idle_timeout=o.number("idleTimeout", DEFAULT_IDLE_TIMEOUT),
            max_connect_attempts=o.integer(
                "maxConnectAttempts", 1, UINT32, DEFAULT_MAX_CONNECT_ATTEMPTS
            ),
            health_check=None if hc is None else HealthCheck.from_json(hc),
            max_connections=o.integer("maxConnections", 1, UINT32, DEFAULT_MAX_CONNECTIONS),
            load_balancer=_enum(LbAlgorithm, o, "loadBalancer", LbAlgorithm.ROUND_ROBIN),
            least_request_choices=o.integer(
                "leastRequestChoices", 2, UINT32, DEFAULT_LEAST_REQUEST_CHOICES
            ),
            locality_aware=o.flag("localityAware", True),
            sources=o.texts("sources"),
        )


def permissions_to_json(p: Permissions) -> dict[str, Any]:
    def matchers(ms: tuple[SpiffeMatch, ...]) -> list[dict[str, str]]:
        return [{"type": str(m.type), "value": m.value} for m in ms]

    return {
        "mesh": p.mesh,
        "enforced": p.enforced,
        "default": None if p.default is None else str(p.default),
        "services": {k: str(v) for k, v in sorted(p.services.items())},
        "deny": matchers(p.deny),
        "allow": matchers(p.allow),
        "allowWithShadowDeny": matchers(p.allow_with_shadow_deny),
        "sources": list(p.sources),
    }


def permissions_from_json(o: Obj) -> Permissions:
    def matchers(name: str) -> tuple[SpiffeMatch, ...]:
        return tuple(
            SpiffeMatch(_enum(MatchType, m, "type"), m.text("value")) for m in o.objs(name)
        )

    services: dict[str, Action] = {}
    for service, action in o.text_map("services").items():
        try:
            services[service] = Action(action)
        except ValueError:
            raise ConfigFormatError(
                f"{o.path}.services[{service!r}]: must be one of "
                + ", ".join(str(a) for a in Action)
            ) from None
    default = None if o.opt_text("default") is None else _enum(Action, o, "default")
    return Permissions(
        mesh=o.text("mesh"),
        enforced=o.flag("enforced"),
        default=default,
        services=services,
        deny=matchers("deny"),
        allow=matchers("allow"),
        allow_with_shadow_deny=matchers("allowWithShadowDeny"),
        sources=o.texts("sources"),
    )


@dataclass(frozen=True, slots=True)
class Inbound:
    name: str  # the inbound's name, "" if unnamed
    address: str  # where the sidecar listens (mTLS when the mesh has it)
    port: int
    service_address: str  # where the application listens
    service_port: int
    service: str  # kuma.io/service
    tags: dict[str, str]
    permissions: Permissions
    protocol: str = "tcp"  # kuma.io/protocol of the inbound

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "address": self.address,
            "port": self.port,
            "serviceAddress": self.service_address,
            "servicePort": self.service_port,
            "service": self.service,
            "tags": dict(sorted(self.tags.items())),
            "permissions": permissions_to_json(self.permissions),
        }

    @classmethod
    def from_json(cls, o: Obj) -> Inbound:
        return cls(
            name=o.text("name", ""),
            address=o.text("address"),
            port=o.integer("port", 1, PORT_MAX),
            service_address=o.text("serviceAddress"),
            service_port=o.integer("servicePort", 1, PORT_MAX),
            service=o.text("service"),
            tags=o.text_map("tags"),
            permissions=permissions_from_json(o.obj("permissions")),
            protocol=_protocol(o),
        )


@dataclass(frozen=True, slots=True)
class Outbound:
    service: str
    address: str  # the VIP, or the explicit outbound's address
    port: int
    endpoints: tuple[Endpoint, ...]
    policies: OutboundPolicies = field(default_factory=OutboundPolicies)
    also_port_80: bool = False
    zone: str | None = None  # only this zone's endpoints (`<service>.<zone>.mesh`)
    kind: OutboundKind = OutboundKind.VIP
    protocol: str = "tcp"  # the service's kuma.io/protocol when all its instances agree

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "protocol": self.protocol,
            "zone": self.zone,
            "kind": str(self.kind),
            "address": self.address,
            "port": self.port,
            "alsoPort80": self.also_port_80,
            "endpoints": [e.to_json() for e in self.endpoints],
            "policies": self.policies.to_json(),
        }

    @classmethod
    def from_json(cls, o: Obj) -> Outbound:
        policies = o.opt_obj("policies")
        return cls(
            service=o.text("service"),
            zone=o.opt_text("zone"),
            kind=_enum(OutboundKind, o, "kind", OutboundKind.VIP),
            address=o.text("address"),
            port=o.integer("port", 1, PORT_MAX),
            also_port_80=o.flag("alsoPort80", False),
            endpoints=tuple(Endpoint.from_json(e) for e in o.objs("endpoints")),
            policies=OutboundPolicies()
            if policies is None
            else OutboundPolicies.from_json(policies),
            protocol=_protocol(o),
        )


@dataclass(frozen=True, slots=True)
class Tls:
    cert_pem: str
    key_pem: str
    ca_pems: tuple[str, ...]  # trust bundle: the mesh CA(s)
    expires_at: str  # RFC 3339 UTC, when cert_pem stops being valid

    def to_json(self) -> dict[str, Any]:
        return {
            "certPem": self.cert_pem,
            "keyPem": self.key_pem,
            "caPems": list(self.ca_pems),
            "expiresAt": self.expires_at,
        }

    @classmethod
    def from_json(cls, o: Obj) -> Tls:
        cas = o.texts("caPems")
        if not cas:
            raise ConfigFormatError(f"{o.path}.caPems: must hold at least one CA certificate")
        return cls(o.text("certPem"), o.text("keyPem"), cas, o.text("expiresAt"))


def content_version(body: dict[str, Any]) -> str:
    """Hash of a config's JSON without its version: the config's version."""
    rest = {k: v for k, v in body.items() if k != "version"}
    blob = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _load(data: bytes | str | dict[str, Any]) -> Obj:
    if not isinstance(data, bytes | str):
        return Obj(data)  # an object, or an error saying it must be one
    try:
        return Obj(json.loads(data))
    except (ValueError, RecursionError) as exc:
        raise ConfigFormatError(f"config is not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    mesh: str
    zone: str
    dataplane: str  # the Dataplane's name
    identity: str  # spiffe://<mesh>/<service>: the cert's and the one callers check
    mtls_enabled: bool
    inbounds: tuple[Inbound, ...]
    outbounds: tuple[Outbound, ...]
    tls: Tls | None = None
    version: str = ""

    def stamped(self) -> SidecarConfig:
        """The same config with `version` set to its content hash."""
        return replace(self, version=content_version(self.to_json()))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mesh": self.mesh,
            "zone": self.zone,
            "dataplane": self.dataplane,
            "identity": self.identity,
            "mtlsEnabled": self.mtls_enabled,
            "inbounds": [i.to_json() for i in self.inbounds],
            "outbounds": [o.to_json() for o in self.outbounds],
            "tls": None if self.tls is None else self.tls.to_json(),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> SidecarConfig:
        o = _load(data)
        tls = o.opt_obj("tls")
        mtls = o.flag("mtlsEnabled")
        if mtls and tls is None:
            raise ConfigFormatError("tls: is required when mtlsEnabled is true")
        return cls(
            version=o.text("version", ""),
            mesh=o.text("mesh"),
            zone=o.text("zone"),
            dataplane=o.text("dataplane"),
            identity=o.text("identity"),
            mtls_enabled=mtls,
            inbounds=tuple(Inbound.from_json(i) for i in o.objs("inbounds")),
            outbounds=tuple(Outbound.from_json(x) for x in o.objs("outbounds")),
            tls=None if tls is None else Tls.from_json(tls),
        )


@dataclass(frozen=True, slots=True)
class IngressService:
    mesh: str
    service: str
    sni: str  # encode_sni(service, mesh): what callers in other zones send
    endpoints: tuple[Endpoint, ...]  # local sidecar inbounds (mTLS passes through to them)

    def to_json(self) -> dict[str, Any]:
        return {
            "mesh": self.mesh,
            "service": self.service,
            "sni": self.sni,
            "endpoints": [e.to_json() for e in self.endpoints],
        }

    @classmethod
    def from_json(cls, o: Obj) -> IngressService:
        return cls(
            mesh=o.text("mesh"),
            service=o.text("service"),
            sni=o.text("sni"),
            endpoints=tuple(Endpoint.from_json(e) for e in o.objs("endpoints")),
        )


@dataclass(frozen=True, slots=True)
class IngressConfig:
    zone: str
    ingress: str  # the ZoneIngress's name
    services: tuple[IngressService, ...]  # no TLS material: TLS is passed through
    version: str = ""

    def stamped(self) -> IngressConfig:
        return replace(self, version=content_version(self.to_json()))

    def by_sni(self) -> dict[str, IngressService]:
        """SNI -> service: what the ingress looks up per connection (SNI is lowercase)."""
        return {s.sni.lower(): s for s in self.services}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "zone": self.zone,
            "ingress": self.ingress,
            "services": [s.to_json() for s in self.services],
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> IngressConfig:
        o = _load(data)
        return cls(
            version=o.text("version", ""),
            zone=o.text("zone"),
            ingress=o.text("ingress"),
            services=tuple(IngressService.from_json(s) for s in o.objs("services")),
        )
