"""A dataplane's certificate carries, as `kuma://` URI SANs, the tags zone-cp can vouch for
(decision 152): those the Dataplane registered on the inbounds of its service, and this zone;
never a tag it did not register, another zone, or a second service."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from global_cp.mesh_ca import ca_secrets, plan_for
from meshfed.auth.proxies import dataplane_refusal
from meshfed.auth.tokens import DataplaneClaims
from meshfed.dpconfig.catalog import build_catalog
from meshfed.dpconfig.model import SidecarConfig
from meshfed.dpconfig.protocol import ProxyType
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.tag_sans import tags_of
from meshfed.resources.model import Resource
from tests.unit.mesh_control.test_certs import Clock, mesh
from tests.unit.policy.factories import dataplane, inbound
from zone_cp.certs import CertIssuer
from zone_cp.dpbuild import BuildInputs, build_config

ZONE = "zone-1"
CA = create_mesh_ca("default")
MESH = mesh()
PLAN = plan_for(MESH)
assert PLAN is not None
INPUTS = BuildInputs.of([MESH], ca_secrets(PLAN, CA), [])


def cert_tags(dp: Resource, issuer: CertIssuer | None = None) -> frozenset[tuple[str, str]]:
    """The tags in the certificate zone-cp's build gives `dp`, read as a sidecar reads them."""
    config = build_config(
        ProxyType.SIDECAR,
        dp,
        ZONE,
        build_catalog(ZONE, [dp], []),
        {},
        INPUTS,
        issuer or CertIssuer(dt.timedelta(hours=1)),
    )
    assert isinstance(config, SidecarConfig) and config.tls is not None
    cert = x509.load_pem_x509_certificate(config.tls.cert_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert [u for u in uris if u.startswith("spiffe://")] == [config.identity]
    return tags_of(uris)


def test_the_registered_tags_of_its_service_and_its_zone() -> None:
    dp = dataplane(
        "web-1",
        inbound("web", 8080, tags={"version": "v2", "kuma.io/protocol": "http"}),
        inbound("metrics", 9000, tags={"version": "v9"}),
    )
    assert cert_tags(dp) == {
        ("version", "v2"),
        ("kuma.io/protocol", "http"),
        ("kuma.io/zone", ZONE),
    }


def test_a_claimed_zone_is_replaced_by_the_issuing_zone() -> None:
    dp = dataplane("web-1", inbound("web", 8080, tags={"kuma.io/zone": "us-east", "env": "a"}))
    assert cert_tags(dp) == {("kuma.io/zone", ZONE), ("env", "a")}


def test_a_changed_registration_gets_a_new_certificate_with_its_new_tags() -> None:
    issuer = CertIssuer(dt.timedelta(hours=1), clock=Clock())
    v1 = dataplane("web-1", inbound("web", 8080, tags={"version": "v1"}))
    v2 = dataplane("web-1", inbound("web", 8080, tags={"version": "v2"}))
    assert ("version", "v1") in cert_tags(v1, issuer)
    assert ("version", "v2") in cert_tags(v2, issuer)
    assert ("version", "v1") not in cert_tags(v2, issuer)
    assert issuer.issued_total == 2


def test_a_token_naming_a_tag_keeps_other_values_out_of_certificates() -> None:
    # A tag is an authorization boundary once the dataplane token names it (security.md):
    # a Dataplane claiming another value is refused before anything is stored or issued.
    claims = DataplaneClaims(MESH.meta.name, {"kuma.io/service": ("web",), "version": ("v1",)})
    v1 = dataplane("web-1", inbound("web", 8080, tags={"version": "v1"}))
    v2 = dataplane("web-1", inbound("web", 8080, tags={"version": "v2"}))
    assert dataplane_refusal(claims, v1) is None
    assert ("version", "v1") in cert_tags(v1)
    refusal = dataplane_refusal(claims, v2)
    assert refusal is not None and "version='v2'" in refusal
