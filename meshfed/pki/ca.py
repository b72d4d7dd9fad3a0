"""The builtin mesh CA: one self-signed root per mesh, carried to zones as Secret data.

The CA is created once on the global and synced to every zone, so all zones share one trust
root and a caller's certificate from zone-1 verifies in zone-2.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from meshfed.pki.spiffe import PkiError, identity_of, mesh_id

# Kuma's builtin CA lives ten years; rotation of the root is a manual, rare event.
DEFAULT_CA_VALIDITY = dt.timedelta(days=3650)
# Peers whose clocks run a little behind must already accept a fresh certificate.
CLOCK_SKEW = dt.timedelta(minutes=1)

CaPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class KeyAlgorithm(enum.StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    RSA_2048 = "rsa-2048"
    RSA_4096 = "rsa-4096"


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: CaPrivateKey) -> bytes:
    """Unencrypted PKCS#8, the form every reader here (ssl, grpc, cryptography) takes."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_key(algorithm: KeyAlgorithm) -> CaPrivateKey:
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    bits = 2048 if algorithm is KeyAlgorithm.RSA_2048 else 4096
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass(frozen=True)
class MeshCA:
    mesh: str
    cert: x509.Certificate
    key: CaPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_mesh_ca(
    mesh: str,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
    common_name: str | None = None,
    organization: str = "meshfed",
    validity: dt.timedelta = DEFAULT_CA_VALIDITY,
    now: dt.datetime | None = None,
) -> MeshCA:
    """A self-signed root for `mesh`, with the URI SAN `spiffe://<mesh>` naming its trust domain."""
    if validity <= dt.timedelta(0):
        raise PkiError("CA validity must be positive")
    uri = mesh_id(mesh)
    now = now or utcnow()
    key = generate_key(algorithm)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Mesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or mesh),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return MeshCA(mesh=mesh, cert=cert, key=key)


def ca_to_secret_data(ca: MeshCA) -> dict[str, str]:
    """JSON-able form of the CA: base64 of the PEM cert and of the PEM (PKCS#8) key.

    Each value is valid as the `data` of one Secret, as Kuma keeps them (its builtin CA uses
    `<mesh>.ca-builtin-cert-<backend>` and `<mesh>.ca-builtin-key-<backend>`).
    """
    return {
        "cert": base64.b64encode(ca.cert_pem).decode("ascii"),
        "key": base64.b64encode(ca.key_pem).decode("ascii"),
    }


def ca_from_secret_data(data: Any) -> MeshCA:
    """Inverse of `ca_to_secret_data`; checks the pair really is a usable mesh CA."""
    if not isinstance(data, dict):
        raise PkiError("CA secret data must be an object with 'cert' and 'key'")
    cert_pem = _b64_field(data, "cert")
    key_pem = _b64_field(data, "key")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError(f"cert: not a PEM certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"key: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"key: unsupported key type {type(key).__name__}")
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PkiError("key does not match the certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise PkiError("cert: not a CA (no basic constraints)") from None
    if not constraints.ca:
        raise PkiError("cert: not a CA (basic constraints ca=false)")
    identity = identity_of(cert)
    if identity.service is not None:
        raise PkiError(f"cert: CA identity {identity.uri} names a service, expected the mesh")
    return MeshCA(mesh=identity.mesh, cert=cert, key=key)


def _b64_field(data: dict[Any, Any], name: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise PkiError(f"{name}: missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise PkiError(f"{name}: not valid base64 ({exc})") from None
