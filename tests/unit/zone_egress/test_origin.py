"""The TLS the egress originates: each MeshExternalService setting in the client context, the
SNI, and the subjectAltNames matchers. Pure (no connection: the handshakes are in
tests/integration/test_zone_egress.py)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from meshfed.dpconfig.egress import OriginTls, SanMatch
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf
from zone_egress.origin import OriginError, client_context, san_problem, server_name

CA_PEM = create_mesh_ca("ext").cert_pem.decode()


def test_secured_checks_the_chain_and_the_name() -> None:
    ctx = client_context(OriginTls(ca_pem=CA_PEM, min_version="TLS12", max_version="TLS13"))
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    # SAN matchers replace the host name check; the chain is still verified
    sans = client_context(OriginTls(ca_pem=CA_PEM, subject_alt_names=(SanMatch("Exact", "a"),)))
    assert sans.verify_mode is ssl.CERT_REQUIRED and not sans.check_hostname


def test_skip_san_skip_all_and_renegotiation() -> None:
    skip_san = client_context(OriginTls(ca_pem=CA_PEM, mode="SkipSAN"))
    assert skip_san.verify_mode is ssl.CERT_REQUIRED and not skip_san.check_hostname
    skip_all = client_context(OriginTls(mode="SkipAll", allow_renegotiation=True))
    assert skip_all.verify_mode is ssl.CERT_NONE and not skip_all.check_hostname
    assert not skip_all.options & ssl.OP_NO_RENEGOTIATION


def test_unusable_material_is_named() -> None:
    with pytest.raises(OriginError, match="caCert"):
        client_context(OriginTls(ca_pem="not a certificate"))
    leaf = issue_leaf(create_mesh_ca("ext"), "client")
    other = issue_leaf(create_mesh_ca("ext"), "client")
    with pytest.raises(OriginError, match="clientCert/clientKey"):
        client_context(
            OriginTls(
                ca_pem=CA_PEM,
                client_cert_pem=leaf.cert_pem.decode(),
                client_key_pem=other.key_pem.decode(),
            )
        )
    paired = OriginTls(
        ca_pem=CA_PEM, client_cert_pem=leaf.cert_pem.decode(), client_key_pem=leaf.key_pem.decode()
    )
    assert client_context(paired) is not None


def test_the_sni_is_the_server_name_else_a_host_name() -> None:
    assert server_name(OriginTls(server_name="api.test"), "10.0.0.1") == "api.test"
    assert server_name(OriginTls(), "api.example.com") == "api.example.com"
    assert server_name(OriginTls(), "10.0.0.1") is None
    assert server_name(OriginTls(), "unix:///run/api.sock") is None


class FakePeer:
    def __init__(self, dns: list[str], der: bytes | None) -> None:
        self.dns, self.der = dns, der

    def getpeercert(self, binary_form: bool = False) -> Any:
        if binary_form:
            return self.der
        return {"subjectAltName": tuple(("DNS", d) for d in self.dns)}


def test_san_matchers_exact_or_prefix_on_dns_and_uri_names() -> None:
    der = issue_leaf(create_mesh_ca("ext"), "api").cert.public_bytes(_der())
    peer: Any = FakePeer(["api.example.com"], der)
    exact = OriginTls(subject_alt_names=(SanMatch("Exact", "api.example.com"),))
    assert san_problem(exact, peer) is None
    prefix = OriginTls(subject_alt_names=(SanMatch("Prefix", "spiffe://ext/"),))
    assert san_problem(prefix, peer) is None
    wrong = OriginTls(subject_alt_names=(SanMatch("Exact", "other.example.com"),))
    problem = san_problem(wrong, peer)
    assert problem is not None and "wanted Exact other.example.com" in problem
    # not Secured: the matchers are not checked
    assert (
        san_problem(OriginTls(mode="SkipSAN", subject_alt_names=wrong.subject_alt_names), peer)
        is None
    )


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER
