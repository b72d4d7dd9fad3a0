"""The zone egress's config: per mesh and MeshExternalService, what the egress presents to the
mesh's sidecars (a leaf naming `spiffe://<mesh>/<service>` and the mesh CA), who may call it
(a compiled MeshTrafficPermission), and how to reach it (endpoints, TLS origination).

Sidecars reach an external service with mTLS to the egress and the SNI
`encode_sni(<name>, <mesh>)` (meshfed.dpconfig.sni); the egress terminates that mTLS with the
service's leaf, checks the caller's verified identity against `permissions`, then opens the
connection to an endpoint, with TLS when `tls` is set. Secret references of the
MeshExternalService are resolved by the control plane: the config carries PEM text only.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from meshfed.dpconfig.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    Message,
    Seconds,
    Tls,
    _Config,
)
from meshfed.policy.permissions import Permissions

TlsVersion = Literal["TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13"]
VerificationMode = Literal["Secured", "SkipSAN", "SkipAll"]


class ExternalEndpoint(Message, frozen=True):
    address: str  # IP, host name, or unix:///path
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0 for a unix socket
    priority: Annotated[int, msgspec.Meta(ge=0, le=128)] = 0  # lower first (failover)


class SanMatch(Message, frozen=True):
    type: Literal["Exact", "Prefix"]
    value: str


class OriginTls(Message, frozen=True):
    """TLS the egress originates (MeshExternalService `tls` with `enabled: true`)."""

    min_version: TlsVersion = "TLSAuto"
    max_version: TlsVersion = "TLSAuto"
    allow_renegotiation: bool = False
    mode: VerificationMode = "Secured"
    server_name: str = ""  # SNI and the name checked; "": the endpoint's host name
    subject_alt_names: tuple[SanMatch, ...] = ()  # when set, checked instead of the name
    ca_pem: str = ""  # "": the system's trust store
    client_cert_pem: str = ""
    client_key_pem: str = ""


class ExternalService(Message, frozen=True):
    mesh: str
    name: str  # the MeshExternalService
    sni: str  # encode_sni(name, mesh): what sidecars send
    tls: Tls  # the egress's leaf for spiffe://<mesh>/<name>, and the mesh CA
    permissions: Permissions
    endpoints: tuple[ExternalEndpoint, ...]
    origin_tls: OriginTls | None = None
    protocol: Literal["tcp", "http", "http2", "grpc"] = "tcp"
    connect_timeout: Seconds = DEFAULT_CONNECT_TIMEOUT
    idle_timeout: Seconds = DEFAULT_IDLE_TIMEOUT  # 0: never


class EgressConfig(_Config, frozen=True):
    zone: str
    egress: str  # the ZoneEgress's name
    services: tuple[ExternalService, ...] = ()
    version: str = ""

    def by_sni(self) -> dict[str, ExternalService]:
        return {s.sni.lower(): s for s in self.services}
