"""The zone egress's config (meshfed/dpconfig/egress.py) from what the zone holds: every
MeshExternalService of every mesh with builtin mTLS, each with

- a leaf for `spiffe://<mesh>/<name>` from the mesh CA (zone_cp.certs): the egress speaks for
  the external service, so a sidecar checks it as it checks any service it calls;
- its permissions: the MeshTrafficPermissions whose top-level targetRef is
  `{kind: MeshExternalService, name: <name>}`, compiled as for an inbound (their `from[]` and
  `rules[]`). With none, every caller of the mesh may call it: Kuma's default
  (`routing.defaultForbidMeshExternalServiceAccess: false`,
  https://kuma.io/docs/latest/networking/meshexternalservice/);
- its endpoints and TLS origination, Secret references resolved to PEM here (a missing Secret
  leaves that service out of the config, logged, rather than the whole egress).

A mesh without mTLS has no external services at the egress: sidecars reach the egress over
mTLS only (Kuma requires mTLS for MeshExternalService too).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any, Final

from meshfed.dpconfig.egress import (
    EgressConfig,
    ExternalEndpoint,
    ExternalService,
    OriginTls,
    SanMatch,
)
from meshfed.dpconfig.model import Tls
from meshfed.dpconfig.sni import SniError, encode_sni
from meshfed.policy.permissions import Action, Permissions, compile_permissions
from meshfed.policy.rules import Matched, sort_policies
from meshfed.resources.model import Resource
from meshfed.resources.models.external import DataSource, MeshExternalServiceSpec
from meshfed.resources.typed import spec_as
from meshfed.resources.types.targetref import MESH_EXTERNAL_SERVICE
from zone_cp.certs import CertError, CertIssuer
from zone_cp.dpbuild import BuildInputs

log = logging.getLogger("zone_cp.egress")

EXTERNAL_TYPE: Final = "MeshExternalService"
PERMISSION_TYPE: Final = "MeshTrafficPermission"


class SourceError(ValueError):
    """A data source (caCert, clientCert, clientKey) cannot be read; says which."""


def egress_identity(egress: str, service: str) -> str:
    """The CertIssuer key of the egress's leaf for one external service."""
    return f"zone-egress:{egress}:{service}"


def external_permissions(policies: list[Resource], name: str, mesh: str) -> Permissions:
    """Who may call external service `name`: the permissions targeting it, or everyone of
    the mesh when none does."""
    targeting = [
        p
        for p in sort_policies(policies)
        if isinstance(ref := p.spec.get("targetRef"), dict)
        and ref.get("kind") == MESH_EXTERNAL_SERVICE
        and ref.get("name") == name
    ]
    if not targeting:
        return Permissions(mesh=mesh, default=Action.ALLOW, sources=("default: no permission",))
    matched = [Matched(p, frozenset({0})) for p in targeting]
    return compile_permissions(matched, 0, mesh, mtls_enabled=True)


def read_source(source: DataSource | None, secrets: Mapping[str, Resource], what: str) -> str:
    """A data source's text ("" for none)."""
    if source is None:
        return ""
    if source.inline_string is not None:
        return source.inline_string
    if source.inline is not None:
        raw = source.inline
    else:
        secret = secrets.get(source.secret or "")
        data = secret.spec.get("data") if secret is not None else None
        if not isinstance(data, str):
            raise SourceError(f"{what}: no Secret {source.secret!r} with data in the mesh")
        raw = data
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise SourceError(f"{what}: not base64 text: {exc}") from None


def origin_tls(spec: MeshExternalServiceSpec, secrets: Mapping[str, Resource]) -> OriginTls | None:
    tls = spec.tls
    if tls is None or not tls.enabled:
        return None
    v = tls.verification
    version = tls.version
    return OriginTls(
        min_version=version.min if version else "TLSAuto",
        max_version=version.max if version else "TLSAuto",
        allow_renegotiation=tls.allow_renegotiation,
        mode=(v.mode if v and v.mode and v.mode != "SkipCA" else "Secured"),
        server_name=(v.server_name or "") if v else "",
        subject_alt_names=tuple(SanMatch(s.type, s.value) for s in (v.subject_alt_names or ()))
        if v
        else (),
        ca_pem=read_source(v.ca_cert if v else None, secrets, "caCert"),
        client_cert_pem=read_source(v.client_cert if v else None, secrets, "clientCert"),
        client_key_pem=read_source(v.client_key if v else None, secrets, "clientKey"),
    )


def _service(
    res: Resource,
    mesh: Resource,
    inputs: BuildInputs,
    issuer: CertIssuer,
    egress: str,
    ca: Any,
) -> ExternalService | None:
    spec = spec_as(res, MeshExternalServiceSpec)
    if spec is None:
        return None
    mesh_name = mesh.meta.name
    secrets = inputs.secrets.get(mesh_name, {})
    try:
        origin = origin_tls(spec, secrets)
        sni = encode_sni(res.name, mesh_name)
    except (SourceError, SniError) as exc:
        log.warning(
            "MeshExternalService %s/%s left out of the egress: %s", mesh_name, res.name, exc
        )
        return None
    leaf = issuer.leaf_for(mesh, ca, egress_identity(egress, res.name), res.name)
    policies = inputs.policies.get(mesh_name, {})
    return ExternalService(
        mesh=mesh_name,
        name=res.name,
        sni=sni,
        tls=Tls(
            cert_pem=leaf.cert_pem.decode(),
            key_pem=leaf.key_pem.decode(),
            ca_pems=(ca.cert_pem.decode(),),
            expires_at=leaf.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
        permissions=external_permissions(policies.get(PERMISSION_TYPE, []), res.name, mesh_name),
        endpoints=tuple(
            ExternalEndpoint(e.address, e.port or 0, e.priority or 0) for e in spec.endpoints or ()
        ),
        origin_tls=origin,
        protocol=spec.match.protocol,
    )


def build_egress_config(
    resource: Resource, zone: str, inputs: BuildInputs, issuer: CertIssuer
) -> EgressConfig:
    """The config of the zone egress registered as `resource`."""
    services: list[ExternalService] = []
    for mesh_name, mesh in sorted(inputs.meshes.items()):
        externals = inputs.policies.get(mesh_name, {}).get(EXTERNAL_TYPE, [])
        if not externals:
            continue
        try:
            ca = inputs.ca(mesh)
        except CertError as exc:
            log.warning("mesh %s: no external services at the egress yet: %s", mesh_name, exc)
            continue
        if ca is None:
            continue
        for res in sorted(externals, key=lambda r: r.name):
            service = _service(res, mesh, inputs, issuer, resource.name, ca)
            if service is not None:
                services.append(service)
    return EgressConfig(zone=zone, egress=resource.name, services=tuple(services))
