"""TLS contexts from a config's certificate material, and the refusals of bad material."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from mesh_dp.tlsconf import TlsConfigError, build_contexts
from meshfed.dpconfig.model import Tls
from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.leaf import issue_leaf

CA = create_mesh_ca("default")
LEAF = issue_leaf(CA, "web", validity=dt.timedelta(hours=1))
TLS = Tls(LEAF.cert_pem.decode(), LEAF.key_pem.decode(), (CA.cert_pem.decode(),), "2030-01-01")


def test_contexts_for_a_valid_leaf() -> None:
    contexts = build_contexts(TLS, "spiffe://default/web")
    assert contexts.identity == "spiffe://default/web"
    assert contexts.serial == LEAF.cert.serial_number
    assert contexts.server.verify_mode == contexts.client.verify_mode  # both require peers
    assert not contexts.client.check_hostname


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cert_pem": "nope"}, "tls.certPem: not a PEM certificate"),
        ({"key_pem": "nope"}, "tls.keyPem: not an unencrypted PEM private key"),
        (
            {"key_pem": issue_leaf(CA, "web").key_pem.decode()},
            "tls.keyPem does not match tls.certPem",
        ),
        ({"ca_pems": ("garbage",)}, r"tls.caPems\[0\]"),
        (
            {"key_pem": CA.key_pem.decode(), "cert_pem": CA.cert_pem.decode()},
            "certificate carries|names spiffe://default,",
        ),
    ],
)
def test_bad_material_is_refused_with_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(TlsConfigError, match=message):
        build_contexts(msgspec.structs.replace(TLS, **change), "spiffe://default/web")  # type: ignore[arg-type]


def test_a_certificate_of_another_identity_is_refused() -> None:
    with pytest.raises(TlsConfigError, match="names spiffe://default/web, the config's identity"):
        build_contexts(TLS, "spiffe://default/backend")


def test_a_leaf_with_an_rsa_key_is_refused() -> None:
    """Mesh leaves are ECDSA P-256: an RSA leaf (even one the mesh CA signed, with the right
    SPIFFE ID) is refused by name before OpenSSL sees it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "web")]))
        .issuer_name(CA.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://default/web")]),
            critical=False,
        )
        .sign(CA.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    rsa_tls = msgspec.structs.replace(
        TLS, cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem=key_pem
    )
    with pytest.raises(TlsConfigError, match="expected an ECDSA key"):
        build_contexts(rsa_tls, "spiffe://default/web")
