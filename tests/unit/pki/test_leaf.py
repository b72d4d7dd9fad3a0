from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshfed.pki.ca import KeyAlgorithm, MeshCA, create_mesh_ca
from meshfed.pki.leaf import issue_leaf, rotation_due, rotation_time, verify_peer
from meshfed.pki.spiffe import PkiError, spiffe_uris

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def ca() -> MeshCA:
    return create_mesh_ca("default", now=NOW - dt.timedelta(days=1))


@pytest.fixture(scope="module")
def rsa_ca() -> MeshCA:
    return create_mesh_ca(
        "default", algorithm=KeyAlgorithm.RSA_2048, now=NOW - dt.timedelta(days=1)
    )


def test_leaf_is_a_short_lived_ecdsa_svid(ca: MeshCA) -> None:
    leaf = issue_leaf(ca, "backend", dns_names=["backend.default.sni.mesh"], now=NOW)
    cert = leaf.cert
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    assert leaf.spiffe_id == "spiffe://default/backend"
    assert spiffe_uris(cert) == ["spiffe://default/backend"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty
    assert san.value.get_values_for_type(x509.DNSName) == ["backend.default.sni.mesh"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_before_utc == NOW - MINUTE
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=24)
    cert.verify_directly_issued_by(ca.cert)


def test_validity_is_configurable_and_capped_by_the_ca(ca: MeshCA) -> None:
    short = issue_leaf(ca, "web", validity=dt.timedelta(seconds=10), now=NOW)
    assert short.cert.not_valid_after_utc == NOW + dt.timedelta(seconds=10)
    longer_than_ca = issue_leaf(ca, "web", validity=dt.timedelta(days=100000), now=NOW)
    assert longer_than_ca.cert.not_valid_after_utc == ca.cert.not_valid_after_utc
    with pytest.raises(PkiError, match="positive"):
        issue_leaf(ca, "web", validity=dt.timedelta(seconds=-1))


def test_rsa_ca_still_issues_ecdsa_leaves(rsa_ca: MeshCA) -> None:
    leaf = issue_leaf(rsa_ca, "web", now=NOW)
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    assert verify_peer([leaf.cert], rsa_ca, now=NOW) == "spiffe://default/web"


def test_rotation_is_due_at_80_percent_of_the_lifetime(ca: MeshCA) -> None:
    leaf = issue_leaf(ca, "web", validity=dt.timedelta(hours=10) - MINUTE, now=NOW)
    # Lifetime is 10 h including the one-minute backdating: due 8 h after not_before.
    due = NOW - MINUTE + dt.timedelta(hours=8)
    assert rotation_time(leaf.cert) == due
    assert not rotation_due(leaf.cert, due - dt.timedelta(seconds=1))
    assert rotation_due(leaf.cert, due)
    assert rotation_time(leaf.cert, fraction=0.5) == NOW - MINUTE + dt.timedelta(hours=5)
    with pytest.raises(ValueError, match="fraction"):
        rotation_time(leaf.cert, fraction=0)


def test_verify_peer_accepts_a_valid_chain_in_der_or_parsed_form(ca: MeshCA) -> None:
    leaf = issue_leaf(ca, "web", now=NOW)
    assert verify_peer([leaf.cert], ca, now=NOW) == "spiffe://default/web"
    der = leaf.cert.public_bytes(Encoding.DER)
    assert verify_peer([der], ca.cert, now=NOW + dt.timedelta(hours=1)) == "spiffe://default/web"


def test_verify_peer_refuses_another_ca_expired_and_not_yet_valid(ca: MeshCA) -> None:
    leaf = issue_leaf(ca, "web", validity=dt.timedelta(hours=1), now=NOW)
    other = create_mesh_ca("default", now=NOW - dt.timedelta(days=1))
    with pytest.raises(PkiError, match="does not verify"):
        verify_peer([leaf.cert], other, now=NOW)
    with pytest.raises(PkiError, match="does not verify"):
        verify_peer([leaf.cert], ca, now=NOW + dt.timedelta(hours=2))
    with pytest.raises(PkiError, match="does not verify"):
        verify_peer([leaf.cert], ca, now=NOW - dt.timedelta(minutes=5))
    with pytest.raises(PkiError, match="empty"):
        verify_peer([], ca)
    with pytest.raises(PkiError, match="DER"):
        verify_peer([b"garbage"], ca)


def test_verify_peer_refuses_the_ca_itself_as_a_peer(ca: MeshCA) -> None:
    with pytest.raises(PkiError):
        verify_peer([ca.cert], ca, now=NOW)


def test_verify_peer_refuses_an_identity_outside_the_cas_mesh(ca: MeshCA) -> None:
    # The same key material under another mesh name signs a foreign identity.
    impostor = MeshCA(mesh="other", cert=ca.cert, key=ca.key)
    leaf = issue_leaf(impostor, "web", now=NOW)
    with pytest.raises(PkiError, match="not a service of mesh 'default'"):
        verify_peer([leaf.cert], ca, now=NOW)
