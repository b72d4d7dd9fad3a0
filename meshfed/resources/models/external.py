"""MeshExternalService: a service outside the mesh that sidecars reach through their zone's
egress, in Kuma's shape (https://kuma.io/docs/latest/networking/meshexternalservice/).

Everything Kuma documents is accepted and acted on by the zone egress (zone_egress/), except
what is listed in `refused` or refused by a `Choice`: an `extension` (no plugins), and the
verification mode `SkipCA` (checking names on a chain nobody vouches for needs a certificate
parser the egress does not load; `SkipAll` or a `caCert` do the job).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic_core import InitErrorDetails

from meshfed.resources.models.base import (
    NOT_SUPPORTED,
    Choice,
    Model,
    OpenObject,
    Range,
    Text,
    problem,
)
from meshfed.resources.models.common import DialableAddress, Port
from meshfed.resources.values import is_address, is_base64

UNIX_PREFIX = "unix://"
TLS_VERSIONS = ("TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13")


def is_endpoint_address(text: str) -> bool:
    """An IP, a host name, or `unix:///absolute/path` (Kuma's three endpoint forms)."""
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        return path.startswith("/") and len(path) > 1 and "\x00" not in path
    return is_address(text)


class Match(Model):
    type: Annotated[Literal["HostnameGenerator"], Choice()] = "HostnameGenerator"
    port: Port
    protocol: Annotated[Literal["tcp", "grpc", "http", "http2"], Choice()] = "tcp"


class ExternalEndpoint(Model):
    address: Annotated[
        str,
        Text(
            predicate=is_endpoint_address,
            message="must be an IP address, a hostname or unix:///path/to/socket",
        ),
    ]
    port: Port | None = None
    priority: Annotated[int, Range(0, 128)] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Kuma's rule: a port for a network address, none for a unix socket."""
        address = data.get("address")
        if not isinstance(address, str):
            return []
        unix = address.startswith(UNIX_PREFIX)
        if unix and "port" in data:
            return [problem(("port",), "must not be set for a unix socket address")]
        if not unix and "port" not in data:
            return [problem(("port",), "is required")]
        return []


class DataSource(Model):
    """Kuma's data source: inline base64 bytes, an inline string, or a Secret of the mesh."""

    inline: Annotated[str, Text(predicate=is_base64, message="must be base64-encoded")] | None = (
        None
    )
    inline_string: Annotated[str, Text(non_empty=True)] | None = None
    secret: Annotated[str, Text(non_empty=True)] | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        given = [k for k in ("inline", "inlineString", "secret") if k in data]
        if len(given) != 1:
            return [problem((), "exactly one of 'inline', 'inlineString', 'secret' must be set")]
        return []


class SubjectAltName(Model):
    type: Annotated[Literal["Exact", "Prefix"], Choice()] = "Exact"
    value: Annotated[str, Text(non_empty=True)]


class Verification(Model):
    mode: (
        Annotated[
            Literal["SkipSAN", "SkipCA", "Secured", "SkipAll"],
            Choice(
                (
                    (
                        "SkipCA",
                        f"{NOT_SUPPORTED}: the egress checks names only on a chain it "
                        "verified; give caCert, or use SkipAll",
                    ),
                )
            ),
        ]
        | None
    ) = None
    server_name: Annotated[str, Text(non_empty=True)] | None = None
    subject_alt_names: list[SubjectAltName] | None = None
    ca_cert: DataSource | None = None
    client_cert: DataSource | None = None
    client_key: DataSource | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        cert, key = "clientCert" in data, "clientKey" in data
        if cert != key:
            missing, present = ("clientKey", "clientCert") if cert else ("clientCert", "clientKey")
            return [problem((missing,), f"is required when {present} is set")]
        return []


TlsVersionName = Annotated[Literal["TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13"], Choice()]


class TlsVersion(Model):
    min: TlsVersionName = "TLSAuto"
    max: TlsVersionName = "TLSAuto"

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        low, high = data.get("min"), data.get("max")
        if (
            low in TLS_VERSIONS[1:]
            and high in TLS_VERSIONS[1:]
            and TLS_VERSIONS.index(str(low)) > TLS_VERSIONS.index(str(high))
        ):
            return [problem(("min",), f"must not be above max ({high})")]
        return []


class ExternalTls(Model):
    enabled: bool = False
    version: TlsVersion | None = None
    allow_renegotiation: bool = False
    verification: Verification | None = None


class MeshExternalServiceSpec(Model):
    refused = {
        "extension": f"{NOT_SUPPORTED}: the zone egress has no extensions; list endpoints",
    }
    match: Match
    endpoints: list[ExternalEndpoint] | None = None
    tls: ExternalTls | None = None
    extension: OpenObject | None = None

    @classmethod
    def rules(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Without an extension (refused), the endpoints are where traffic goes: required."""
        if "extension" in data:
            return []
        endpoints = data.get("endpoints")
        if endpoints is None or (isinstance(endpoints, list) and not endpoints):
            return [problem(("endpoints",), "must have at least 1 item")]
        return []


class EgressAdmin(Model):
    port: Port | None = None


class EgressNetworking(Model):
    address: DialableAddress  # where the zone's sidecars dial the egress
    port: Port
    admin: EgressAdmin | None = None


class ZoneEgressSpec(Model):
    """Kuma's ZoneEgress (Universal): the zone-cp sets `zone` when the egress connects."""

    zone: str | None = None
    networking: EgressNetworking
