"""A mesh CA's key and certificate Secrets stay a matching pair (the pure check)."""

from __future__ import annotations

import base64

from meshfed.pki.ca import create_mesh_ca
from meshfed.pki.ca_secrets import CaSecret, Part, ca_secret, check_ca_secret


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CA = create_mesh_ca("default")
OTHER = create_mesh_ca("default")


def test_which_secrets_are_ca_halves() -> None:
    assert ca_secret("default", "default.ca-builtin-key-ca-1") == CaSecret(
        "default", Part.KEY, "ca-1"
    )
    half = ca_secret("default", "default.ca-builtin-cert-ca-1")
    assert half is not None and half.counterpart == "default.ca-builtin-key-ca-1"
    assert ca_secret("default", "other.ca-builtin-key-ca-1") is None  # another mesh's name
    assert ca_secret("default", "default.ca-builtin-key-") is None
    assert ca_secret("default", "s1") is None


def test_pairs_and_malformed_halves() -> None:
    key, cert = CaSecret("default", Part.KEY, "ca-1"), CaSecret("default", Part.CERT, "ca-1")
    assert check_ca_secret(key, b64(CA.key_pem), b64(CA.cert_pem)) is None
    assert check_ca_secret(cert, b64(CA.cert_pem), b64(CA.key_pem)) is None
    assert check_ca_secret(key, b64(CA.key_pem), None) is None  # nothing stored to match
    mismatch = check_ca_secret(key, b64(OTHER.key_pem), b64(CA.cert_pem))
    assert mismatch is not None and "does not match" in mismatch
    assert "default.ca-builtin-cert-ca-1" in mismatch
    assert "does not match" in (check_ca_secret(cert, b64(OTHER.cert_pem), b64(CA.key_pem)) or "")
    assert "PEM private key" in (check_ca_secret(key, b64(b"not a key"), None) or "")
    assert "PEM certificate" in (check_ca_secret(cert, b64(CA.key_pem), None) or "")
    assert "base64" in (check_ca_secret(cert, "!!", None) or "")
    # A stored half that is itself unusable does not block a valid replacement.
    assert check_ca_secret(key, b64(CA.key_pem), b64(b"junk")) is None
