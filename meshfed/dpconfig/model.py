"""The configs zone-cp sends its proxies: one typed definition (msgspec Structs), its JSON
form derived from it (decision 75).

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
- `protocol` of an inbound or outbound: the service's `kuma.io/protocol` tag (tcp, http,
  http2, grpc; tcp when absent), what the sidecar speaks on it.
- `tls`: the proxy's own certificate and key (PEM), the trust bundle, and when the cert
  expires (zone-cp sends a new config with a new cert before then); None when mTLS is off.

`IngressConfig` maps each SNI to the local endpoints of that service: the ingress reads the
SNI, picks an endpoint and passes the TLS bytes through untouched.

`version` is a hash of the config's encoded bytes with `version` empty (`encode_config`):
equal versions mean equal configs, so zone-cp can rebuild freely and send only when the
version changes, and it encodes each config once: the bytes it hashes are the bytes it sends.

JSON field names are camelCase like the resources'. Decoding checks every type and range
(the `Annotated` bounds below, cross-field rules in `__post_init__`) and raises
ConfigFormatError naming the bad field; unknown fields are ignored (an older proxy, a newer
control plane).
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final, Generic, Literal, Self, TypeVar, cast

import msgspec

from meshfed.dpconfig.observability import AccessLog, Metrics
from meshfed.dpconfig.passthrough import Passthrough
from meshfed.dpconfig.tracing import Tracing
from meshfed.dpconfig.traffic import InboundFaults, InboundRateLimit
from meshfed.policy.permissions import Permissions

if TYPE_CHECKING:  # it builds on this module
    from meshfed.dpconfig.egress import EgressConfig

PORT_MAX = 65535
UINT32 = 2**32 - 1
MAX_SECONDS = float(2**32)  # ~136 years: any finite duration a policy can mean

Port = Annotated[int, msgspec.Meta(ge=1, le=PORT_MAX)]
Count = Annotated[int, msgspec.Meta(ge=1, le=UINT32)]  # a positive uint32
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Protocol = Literal["tcp", "http", "http2", "grpc"]

__all__ = [
    "ConfigFormatError",
    "Encoded",
    "Endpoint",
    "HashConf",
    "HashPolicy",
    "HealthCheck",
    "HttpCheck",
    "HttpFilter",
    "HttpMatch",
    "HttpRetry",
    "HttpRule",
    "Inbound",
    "IngressConfig",
    "IngressService",
    "LbAlgorithm",
    "Locality",
    "Outbound",
    "OutboundKind",
    "OutboundPolicies",
    "Outlier",
    "Protocol",
    "SidecarConfig",
    "Split",
    "Tls",
    "content_version",
    "encode_config",
]


class ConfigFormatError(ValueError):
    """A config (or part of one) that does not have the documented shape."""


class Locality(enum.StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


class LbAlgorithm(enum.StrEnum):
    ROUND_ROBIN = "RoundRobin"
    RANDOM = "Random"
    LEAST_REQUEST = "LeastRequest"
    RING_HASH = "RingHash"
    MAGLEV = "Maglev"


class OutboundKind(enum.StrEnum):
    VIP = "vip"  # a service's VIP from zone DNS
    EXPLICIT = "explicit"  # a Dataplane networking.outbound entry


class Message(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=False):
    """Base of every config part: immutable, camelCase, unknown fields ignored."""


class Endpoint(Message, frozen=True):
    address: str
    port: Port
    zone: str = ""
    weight: Count = 1  # remote: the instance count behind the ingress
    locality: Locality = Locality.LOCAL
    via_ingress: bool = False
    sni: str = ""  # set when via_ingress
    # Locality (meshfed/dpconfig/locality.py): lower priorities are used first; `affinity`
    # indexes OutboundPolicies.affinityWeights (local endpoints sharing the caller's tags).
    priority: Annotated[int, msgspec.Meta(ge=0, le=UINT32)] = 0
    affinity: Annotated[int, msgspec.Meta(ge=0, le=UINT32)] = 0

    def __post_init__(self) -> None:
        if self.via_ingress and not self.sni:
            raise ValueError("sni: is required when viaIngress is true")


HeaderPair = tuple[str, str]


class HttpCheck(Message, frozen=True):
    """MeshHealthCheck `http`: GET `path` over mTLS to the endpoint; healthy when the status
    is one of `expectedStatuses` (Kuma's defaults: "/", 200)."""

    path: str = "/"
    expected_statuses: tuple[int, ...] = (200,)
    set_headers: tuple[HeaderPair, ...] = ()  # requestHeadersToAdd.set: replace
    add_headers: tuple[HeaderPair, ...] = ()  # requestHeadersToAdd.add: append


class HealthCheck(Message, frozen=True):
    """Active checks of each endpoint (MeshHealthCheck): an HTTP check when `http` is set and
    the outbound speaks http, else a TCP connect when `tcp` is true, else none."""

    interval: Seconds  # between checks
    timeout: Seconds  # a check may take
    unhealthy_threshold: Count  # failures in a row that mark an endpoint unhealthy
    healthy_threshold: Count  # successes in a row that mark it healthy again
    tcp: bool = True
    http: HttpCheck | None = None


class SuccessRate(Message, frozen=True):
    minimum_hosts: Count = 5
    request_volume: Count = 100
    standard_deviation_factor: float = 1.9


class FailurePercentage(Message, frozen=True):
    minimum_hosts: Count = 5
    request_volume: Count = 50
    threshold: Annotated[int, msgspec.Meta(ge=0, le=100)] = 85


class Outlier(Message, frozen=True):
    """MeshCircuitBreaker `outlierDetection` (Envoy's defaults); a detector left None is off."""

    interval: Seconds = 10.0
    base_ejection_time: Seconds = 30.0
    max_ejection_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 10
    split_external_and_local_errors: bool = False
    total_failures: Count | None = None  # consecutive 5xx (local errors too unless split)
    gateway_failures: Count | None = None  # consecutive 502/503/504
    local_origin_failures: Count | None = None  # consecutive connect failures (split only)
    success_rate: SuccessRate | None = None
    failure_percentage: FailurePercentage | None = None


HashKind = Literal["Header", "Cookie", "Connection", "QueryParameter"]


class HashPolicy(Message, frozen=True):
    """One MeshLoadBalancingStrategy hash policy (mesh_dp/http/hashing.py computes it)."""

    type: HashKind
    name: str = ""  # the header, cookie or query parameter
    terminal: bool = False  # a key found here ends the list
    source_ip: bool = False  # Connection: hash the caller's address


class HashConf(Message, frozen=True):
    """RingHash / Maglev parameters (Envoy's defaults when a policy leaves them out; the
    largest ring meshfed's model allows is 8M)."""

    policies: tuple[HashPolicy, ...] = ()
    min_ring_size: Annotated[int, msgspec.Meta(ge=1, le=8_000_000)] = 1024
    max_ring_size: Annotated[int, msgspec.Meta(ge=1, le=8_000_000)] = 8_000_000
    table_size: Annotated[int, msgspec.Meta(ge=1, le=5_000_011)] = 65537


# Defaults when no policy sets a field: the values of the policies Kuma creates with a mesh
# (MeshTimeout, MeshRetry, MeshCircuitBreaker "*-all-default"), locality-aware round robin.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_CONNECT_ATTEMPTS = 5
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_LEAST_REQUEST_CHOICES = 2
DEFAULT_MAX_PENDING_REQUESTS = 1024  # Envoy's circuit-breaker defaults
DEFAULT_MAX_REQUESTS = 1024
DEFAULT_MAX_RETRIES = 3
# MeshTimeout http (Kuma's defaults; 0: off) and MeshRetry http (Kuma's default policy
# mesh-retry-all-default; retryOn unset is Kuma's default list).
DEFAULT_REQUEST_TIMEOUT = 15.0
DEFAULT_STREAM_IDLE_TIMEOUT = 1800.0
DEFAULT_HTTP_RETRIES = 5
DEFAULT_PER_TRY_TIMEOUT = 16.0
DEFAULT_BACKOFF_BASE = 0.025  # maxInterval defaults to 10 x baseInterval
DEFAULT_HTTP_RETRY_ON = ("GatewayError", "ConnectFailure", "RefusedStream")


class HttpRetry(Message, frozen=True):
    """MeshRetry `http` for one outbound (mesh_dp/http/retry.py says what each does)."""

    num_retries: Annotated[int, msgspec.Meta(ge=0, le=UINT32)] = DEFAULT_HTTP_RETRIES
    per_try_timeout: Seconds = DEFAULT_PER_TRY_TIMEOUT  # 0: none
    base_interval: Seconds = DEFAULT_BACKOFF_BASE
    max_interval: Seconds = 10 * DEFAULT_BACKOFF_BASE
    retry_on: tuple[str, ...] = DEFAULT_HTTP_RETRY_ON  # Kuma's names and status codes


class OutboundPolicies(Message, frozen=True):
    """The enforced policy fields for one outbound (see meshfed/policy/enforced.py)."""

    connect_timeout: Seconds = DEFAULT_CONNECT_TIMEOUT  # MeshTimeout
    idle_timeout: Seconds = DEFAULT_IDLE_TIMEOUT  # without bytes either way; 0: never
    max_connect_attempts: Count = DEFAULT_MAX_CONNECT_ATTEMPTS  # endpoints tried (MeshRetry)
    health_check: HealthCheck | None = None  # None: no active checks (MeshHealthCheck)
    max_connections: Count = DEFAULT_MAX_CONNECTIONS  # open at once (MeshCircuitBreaker)
    load_balancer: LbAlgorithm = LbAlgorithm.ROUND_ROBIN
    # sampled for LeastRequest
    least_request_choices: Annotated[int, msgspec.Meta(ge=2, le=UINT32)] = (
        DEFAULT_LEAST_REQUEST_CHOICES
    )
    locality_aware: bool = True  # local zone first (MeshLoadBalancingStrategy)
    # MeshCircuitBreaker connectionLimits of HTTP requests (mesh_dp/http/limits.py)
    max_pending_requests: Count = DEFAULT_MAX_PENDING_REQUESTS  # waiting for a connection
    max_requests: Count = DEFAULT_MAX_REQUESTS  # in flight at once
    max_retries: Count = DEFAULT_MAX_RETRIES  # retries in flight at once
    max_connection_pools: Count = UINT32  # endpoints with open connections at once
    outlier: Outlier | None = None  # passive ejection (mesh_dp/http/outlier.py)
    # MeshTimeout http, seconds, 0: off (mesh_dp/http/timeouts.py)
    request_timeout: Seconds = DEFAULT_REQUEST_TIMEOUT
    stream_idle_timeout: Seconds = DEFAULT_STREAM_IDLE_TIMEOUT
    max_stream_duration: Seconds = 0.0
    max_connection_duration: Seconds = 0.0
    request_headers_timeout: Seconds = 0.0
    http_retry: HttpRetry = HttpRetry()  # MeshRetry http
    # leave a priority when fewer than this % of its endpoints are available (0: when none is)
    failover_threshold: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.0
    affinity_weights: tuple[Count, ...] = ()  # per Endpoint.affinity group of the local zone
    hash: HashConf = HashConf()  # RingHash / Maglev
    sources: tuple[str, ...] = ()  # policies that set any of these, `Type/name`


class InboundTimeouts(Message, frozen=True):
    """MeshTimeout `rules` of one inbound (meshfed/dpconfig/policies.py): the connect to the
    application, the caller connection's quiet time and the HTTP exchanges with the
    application. The defaults (no `rules` policy) are what the inbound did before: a 5 s
    connect, nothing else bounded (0: off)."""

    connect_timeout: Seconds = DEFAULT_CONNECT_TIMEOUT
    idle_timeout: Seconds = 0.0
    request_timeout: Seconds = 0.0
    stream_idle_timeout: Seconds = 0.0
    max_stream_duration: Seconds = 0.0
    max_connection_duration: Seconds = 0.0
    request_headers_timeout: Seconds = 0.0
    sources: tuple[str, ...] = ()  # the policies that set them, `Type/name`


class Inbound(Message, frozen=True):
    name: str  # the inbound's name, "" if unnamed
    address: str  # where the sidecar listens (mTLS when the mesh has it)
    port: Port
    service_address: str  # where the application listens
    service_port: Port
    service: str  # kuma.io/service
    tags: dict[str, str]
    permissions: Permissions
    protocol: Protocol = "tcp"
    timeouts: InboundTimeouts = InboundTimeouts()
    # MeshFaultInjection, MeshRateLimit (meshfed/dpconfig/traffic.py)
    faults: InboundFaults = InboundFaults()
    rate_limit: InboundRateLimit = InboundRateLimit()
    access_logs: tuple[AccessLog, ...] = ()  # MeshAccessLog (meshfed/dpconfig/observability.py)


class Split(Message, frozen=True):
    """One MeshTCPRoute backendRef of an outbound: a share of its new connections (`weight`
    of the splits' total; 0: never) goes to `service`'s `endpoints` (the sidecar checks the
    server is `spiffe://<mesh>/<service>`). No endpoints: that share is closed at once."""

    service: str
    weight: Annotated[int, msgspec.Meta(ge=0, le=UINT32)]
    endpoints: tuple[Endpoint, ...] = ()
    zone: str | None = None  # the zone its backendRef pins


# MeshHTTPRoute (meshfed/dpconfig/http_route.py merges, mesh_dp/http/route.py evaluates):
# Kuma's JSON shapes of a rule's match and filters, a backendRef resolved to a Split.


def _regex(kind: str, value: str) -> None:
    """A RegularExpression the sidecar cannot compile is a bad config (NACKed), not a crash."""
    if kind == "RegularExpression":
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"value: not a regular expression: {exc}") from None


class PathMatch(Message, frozen=True):
    type: Literal["Exact", "PathPrefix", "RegularExpression"]
    value: str

    def __post_init__(self) -> None:
        _regex(self.type, self.value)


class HeaderMatch(Message, frozen=True):
    name: str  # lower case
    type: Literal["Exact", "Present", "RegularExpression", "Absent", "Prefix"] = "Exact"
    value: str = ""

    def __post_init__(self) -> None:
        _regex(self.type, self.value)


class QueryMatch(Message, frozen=True):
    type: Literal["Exact", "RegularExpression"]
    name: str
    value: str

    def __post_init__(self) -> None:
        _regex(self.type, self.value)


class HttpMatch(Message, frozen=True):
    """Every field set must match (regular expressions: Python's `re`, full match)."""

    path: PathMatch | None = None
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryMatch, ...] = ()


class HeaderKV(Message, frozen=True):
    name: str
    value: str


class HeaderModifier(Message, frozen=True):
    set: tuple[HeaderKV, ...] = ()  # replace every value
    add: tuple[HeaderKV, ...] = ()  # one more field
    remove: tuple[str, ...] = ()


class PathRewrite(Message, frozen=True):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class RequestRedirect(Message, frozen=True):
    scheme: str | None = None
    hostname: str | None = None
    path: PathRewrite | None = None
    port: Port | None = None
    status_code: Annotated[int, msgspec.Meta(ge=300, le=399)] = 302


class UrlRewrite(Message, frozen=True):
    hostname: str | None = None
    path: PathRewrite | None = None


class RequestMirror(Message, frozen=True):
    """A copy of `percentage` % of the requests goes to `backend` (its answer is dropped)."""

    backend: Split
    percentage: Annotated[float, msgspec.Meta(ge=0, le=100)] = 100.0


class HttpFilter(Message, frozen=True):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "RequestMirror",
    ]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: UrlRewrite | None = None
    request_mirror: RequestMirror | None = None


class HttpRule(Message, frozen=True):
    """One match of a merged MeshHTTPRoute rule, in precedence order: a request matching it
    gets `filters` and goes to one of `splits` by weight (none: the outbound's service)."""

    match: HttpMatch
    filters: tuple[HttpFilter, ...] = ()
    splits: tuple[Split, ...] = ()


class Outbound(Message, frozen=True):
    service: str
    address: str  # the VIP, or the explicit outbound's address
    port: Port
    endpoints: tuple[Endpoint, ...] = ()
    policies: OutboundPolicies = OutboundPolicies()
    also_port_80: bool = False
    zone: str | None = None  # only this zone's endpoints (`<service>.<zone>.mesh`)
    kind: OutboundKind = OutboundKind.VIP
    protocol: Protocol = "tcp"
    # MeshTCPRoute (meshfed/dpconfig/policies.py, tcp_route): when set, each new connection
    # picks one split by weight and `endpoints` are not used; `route` names the policies.
    splits: tuple[Split, ...] = ()
    route: tuple[str, ...] = ()
    # MeshHTTPRoute (http outbounds): the first rule matching a request decides (no match:
    # `endpoints`); when set, `splits` is empty (an HTTP route wins over a TCP route).
    http_rules: tuple[HttpRule, ...] = ()
    access_logs: tuple[AccessLog, ...] = ()  # MeshAccessLog (meshfed/dpconfig/observability.py)


class Tls(Message, frozen=True):
    cert_pem: str
    key_pem: str
    ca_pems: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]  # the mesh CA(s)
    expires_at: str  # RFC 3339 UTC, when cert_pem stops being valid


C = TypeVar("C", bound="SidecarConfig | IngressConfig | EgressConfig")
C_co = TypeVar("C_co", bound="SidecarConfig | IngressConfig | EgressConfig", covariant=True)


class _Config(Message, frozen=True):
    """What both configs share: the version and the (de)serialization."""

    def stamped(self) -> Self:
        """The same config with `version` set to its content hash (encodes it)."""
        config = encode_config(cast("SidecarConfig | IngressConfig | EgressConfig", self)).config
        return cast(Self, config)

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    def to_json(self) -> dict[str, Any]:
        """The JSON form as Python objects (the admin endpoint's /config)."""
        out: dict[str, Any] = msgspec.to_builtins(self, order="deterministic")
        return out

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> Self:
        """Decodes and checks a config; ConfigFormatError names the first bad field."""
        try:
            if isinstance(data, bytes | str):
                return msgspec.json.decode(data, type=cls)
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise ConfigFormatError(_where(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise ConfigFormatError(f"config is not valid JSON: {exc}") from None


_AT = re.compile(r"(?s)(.*) - at `\$(.*)`")
_MISSING = re.compile(r"Object missing required field `(.*)`")
_RULE = re.compile(r"([A-Za-z0-9]+): (.*)", re.DOTALL)  # a __post_init__ rule naming a field


def _where(message: str) -> str:
    """msgspec's "Expected `int` >= 1 - at `$.inbounds[0].port`" as "inbounds[0].port:
    Expected `int` >= 1": the path first, as every config error reads."""
    found = _AT.fullmatch(message)
    path, reason = ("", message) if found is None else (found[2].lstrip("."), found[1])
    field = _MISSING.fullmatch(reason) or _RULE.fullmatch(reason)
    if field is not None:
        path = f"{path}.{field[1]}" if path else field[1]
        reason = "is required" if field.re is _MISSING else field[2]
    return f"{path or 'config'}: {reason}"


class SidecarConfig(_Config, frozen=True):
    mesh: str
    zone: str
    dataplane: str  # the Dataplane's name
    identity: str  # spiffe://<mesh>/<service>: the cert's and the one callers check
    mtls_enabled: bool
    inbounds: tuple[Inbound, ...] = ()
    outbounds: tuple[Outbound, ...] = ()
    tls: Tls | None = None
    version: str = ""
    metrics: Metrics | None = None  # MeshMetric (meshfed/dpconfig/observability.py)
    tracing: Tracing | None = None  # MeshTrace (meshfed/dpconfig/tracing.py)
    # MeshPassthrough (meshfed/dpconfig/passthrough.py); None: nothing passes
    passthrough: Passthrough | None = None

    def __post_init__(self) -> None:
        if self.mtls_enabled and self.tls is None:
            raise ValueError("tls: is required when mtlsEnabled is true")


class IngressService(Message, frozen=True):
    mesh: str
    service: str
    sni: str  # encode_sni(service, mesh): what callers in other zones send
    endpoints: tuple[Endpoint, ...] = ()  # local sidecar inbounds (mTLS passes through)


class IngressConfig(_Config, frozen=True):
    zone: str
    ingress: str  # the ZoneIngress's name
    services: tuple[IngressService, ...] = ()  # no TLS material: TLS is passed through
    version: str = ""

    def by_sni(self) -> dict[str, IngressService]:
        """SNI -> service: what the ingress looks up per connection (SNI is lowercase)."""
        return {s.sni.lower(): s for s in self.services}


# Dict keys sorted, so equal configs encode to equal bytes (tags, permissions.services).
_ENCODER: Final = msgspec.json.Encoder(order="deterministic")


def content_version(body: bytes) -> str:
    """The version of a config encoded with an empty `version`: a hash of its bytes."""
    return hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Encoded(Generic[C_co]):
    """A config encoded once: `body` is what zone-cp sends, `config.version` its hash."""

    config: C_co
    body: bytes

    @property
    def version(self) -> str:
        return self.config.version


def encode_config(config: C) -> Encoded[C]:
    """Encodes `config` (its `version` ignored) and stamps it with the hash of those bytes."""
    body = _ENCODER.encode(
        msgspec.structs.replace(config, version="") if config.version else config
    )
    return Encoded(msgspec.structs.replace(config, version=content_version(body)), body)
