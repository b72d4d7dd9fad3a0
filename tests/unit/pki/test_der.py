"""The proxies' DER reader against cryptography's view of real mesh certificates, and its
refusal of damaged input (never any exception but DerError)."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from meshfed.pki.ca import KeyAlgorithm, create_mesh_ca
from meshfed.pki.der import (
    OID_EC_PUBLIC_KEY,
    OID_RSA_ENCRYPTION,
    DerError,
    certificate_facts,
    pem_certificates,
)
from meshfed.pki.leaf import issue_leaf

CA = create_mesh_ca("default")
RSA_CA = create_mesh_ca("other", algorithm=KeyAlgorithm.RSA_2048)
LEAF = issue_leaf(CA, "web", dns_names=["web.mesh"])
LEAF_DER = LEAF.cert.public_bytes(serialization.Encoding.DER)


def _plain_cert(serial: int, sans: list[x509.GeneralName] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_a_mesh_leaf_reads_as_cryptography_reads_it() -> None:
    facts = certificate_facts(LEAF_DER)
    assert facts.serial == LEAF.cert.serial_number
    assert facts.key_algorithm == OID_EC_PUBLIC_KEY
    assert facts.uris == ("spiffe://default/web",)


def test_an_rsa_ca_and_a_critical_san_with_several_uris() -> None:
    assert certificate_facts(
        RSA_CA.cert.public_bytes(serialization.Encoding.DER)
    ).key_algorithm == (OID_RSA_ENCRYPTION)
    sans: list[x509.GeneralName] = [
        x509.DNSName("a.example"),
        x509.UniformResourceIdentifier("spiffe://m/a"),
        x509.UniformResourceIdentifier("https://b"),
    ]
    cert = _plain_cert(2**150 + 7, sans)
    facts = certificate_facts(cert.public_bytes(serialization.Encoding.DER))
    assert facts.serial == 2**150 + 7
    assert facts.uris == ("spiffe://m/a", "https://b")


def test_a_certificate_without_alternative_names_has_no_uris() -> None:
    cert = _plain_cert(1, None)
    assert certificate_facts(cert.public_bytes(serialization.Encoding.DER)).uris == ()


def test_pem_blocks_are_split_and_damaged_ones_refused() -> None:
    text = "junk\n" + LEAF.cert_pem.decode() + "between\n" + CA.cert_pem.decode()
    assert pem_certificates(text) == [
        LEAF_DER,
        CA.cert.public_bytes(serialization.Encoding.DER),
    ]
    assert pem_certificates("no blocks here") == []
    with pytest.raises(DerError):
        pem_certificates("-----BEGIN CERTIFICATE-----\nAAA=A\n-----END CERTIFICATE-----\n")
    with pytest.raises(DerError):  # valid base64 of something that is not a certificate
        pem_certificates("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n")


# -1: all but the last byte (a slice end, so the ids do not depend on the generated
# certificate's length and every xdist worker collects the same tests).
@pytest.mark.parametrize("cut", [0, 1, 2, 3, 10, 100, -1])
def test_truncated_certificates_are_refused(cut: int) -> None:
    with pytest.raises(DerError):
        certificate_facts(LEAF_DER[:cut])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DerError, match="trailing"):
        certificate_facts(LEAF_DER + b"\x00")


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(LEAF_DER) - 1), st.integers(0, 255))
def test_any_single_byte_change_reads_or_is_refused(pos: int, value: int) -> None:
    damaged = bytearray(LEAF_DER)
    damaged[pos] = value
    with contextlib.suppress(DerError):
        certificate_facts(bytes(damaged))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_read_or_are_refused(data: bytes) -> None:
    with contextlib.suppress(DerError):
        certificate_facts(data)
