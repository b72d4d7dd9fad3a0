from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshfed.pki.ca import (
    KeyAlgorithm,
    MeshCA,
    ca_from_secret_data,
    ca_to_secret_data,
    create_mesh_ca,
)
from meshfed.pki.leaf import issue_leaf
from meshfed.pki.spiffe import PkiError, spiffe_uris

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> MeshCA:
    return create_mesh_ca("default", now=NOW)


def test_default_ca_is_an_ecdsa_p256_root_for_the_mesh(ca: MeshCA) -> None:
    cert = ca.cert
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert spiffe_uris(cert) == ["spiffe://default"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "default"
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=3650)


@pytest.mark.parametrize(
    ("algorithm", "bits"), [(KeyAlgorithm.RSA_2048, 2048), (KeyAlgorithm.RSA_4096, 4096)]
)
def test_rsa_ca_with_custom_subject_and_validity(algorithm: KeyAlgorithm, bits: int) -> None:
    ca = create_mesh_ca(
        "payments",
        algorithm=algorithm,
        common_name="Payments root",
        organization="Acme",
        validity=dt.timedelta(days=30),
        now=NOW,
    )
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    assert ca.key.key_size == bits
    subject = ca.cert.subject
    assert subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Payments root"
    assert subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "Acme"
    assert ca.cert.not_valid_after_utc == NOW + dt.timedelta(days=30)
    assert spiffe_uris(ca.cert) == ["spiffe://payments"]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(PkiError, match="trust domain"):
        create_mesh_ca("Not A Mesh")
    with pytest.raises(PkiError, match="positive"):
        create_mesh_ca("m", validity=dt.timedelta(0))


def test_secret_data_is_json_and_round_trips(ca: MeshCA) -> None:
    data = json.loads(json.dumps(ca_to_secret_data(ca)))
    assert set(data) == {"cert", "key"}
    assert base64.b64decode(data["cert"]).startswith(b"-----BEGIN CERTIFICATE-----")
    back = ca_from_secret_data(data)
    assert back.mesh == "default"
    assert back.cert == ca.cert
    assert back.key_pem == ca.key_pem


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _bad_inputs(ca: MeshCA) -> list[tuple[Any, str]]:
    good = ca_to_secret_data(ca)
    other = create_mesh_ca("other")
    leaf = issue_leaf(ca, "web")
    return [
        ("not a dict", "object"),
        ({"cert": good["cert"]}, "key: missing"),
        ({"cert": 5, "key": good["key"]}, "cert: missing or not a string"),
        ({"cert": "%%%", "key": good["key"]}, "cert: not valid base64"),
        ({"cert": _b64(b"hello"), "key": good["key"]}, "cert: not a PEM certificate"),
        ({"cert": good["cert"], "key": _b64(b"nope")}, "key: not an unencrypted PEM"),
        ({"cert": good["cert"], "key": ca_to_secret_data(other)["key"]}, "does not match"),
        ({"cert": _b64(leaf.cert_pem), "key": _b64(leaf.key_pem)}, "not a CA"),
    ]


def test_bad_secret_data_gets_a_clear_error(ca: MeshCA) -> None:
    for data, message in _bad_inputs(ca):
        with pytest.raises(PkiError, match=message):
            ca_from_secret_data(data)
