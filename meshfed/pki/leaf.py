"""Short-lived leaf certificates (X509-SVIDs) for services, their rotation time and verification.

A leaf names exactly one identity, `spiffe://<mesh>/<service>`, is valid for both TLS client
and server use (a sidecar is both), and always has an ECDSA P-256 key: handshakes are cheaper
than with RSA, whatever algorithm the CA uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshfed.pki.ca import CLOCK_SKEW, MeshCA, cert_pem, key_pem, utcnow
from meshfed.pki.spiffe import PkiError, identity_of, service_id
from meshfed.pki.tag_sans import tag_uris

DEFAULT_LEAF_VALIDITY = dt.timedelta(hours=24)
# Rotate when this share of the lifetime has passed, leaving time to retry a failed issue.
ROTATION_FRACTION = 0.8


@dataclass(frozen=True)
class Leaf:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    @property
    def spiffe_id(self) -> str:
        return identity_of(self.cert).uri

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)


def issue_leaf(
    ca: MeshCA,
    service: str,
    *,
    validity: dt.timedelta = DEFAULT_LEAF_VALIDITY,
    dns_names: Sequence[str] = (),
    now: dt.datetime | None = None,
    tags: Iterable[tuple[str, str]] = (),
) -> Leaf:
    """A leaf for `service` in the CA's mesh, backdated by CLOCK_SKEW for slow peer clocks.

    `dns_names` can carry the service's SNI name; nothing here checks hostnames, but tools such
    as `openssl s_client` show them. `tags` become `kuma://<tag>/<value>` URI SANs
    (meshfed/pki/tag_sans.py): the caller passes only tags it vouches for.
    """
    if validity <= dt.timedelta(0):
        raise PkiError("leaf validity must be positive")
    uri = service_id(ca.mesh, service)
    now = now or utcnow()
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    names += [x509.UniformResourceIdentifier(u) for u in tag_uris(tags)]
    names += [x509.DNSName(n) for n in dns_names]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        # An SVID is identified by its SAN alone; an empty subject makes the SAN critical.
        .subject_name(x509.Name([]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return Leaf(cert=cert, key=key, ca_cert=ca.cert)


def rotation_time(cert: x509.Certificate, fraction: float = ROTATION_FRACTION) -> dt.datetime:
    """When a holder of `cert` should have a new one (Kuma-like: most of the lifetime used)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * fraction


def rotation_due(
    cert: x509.Certificate, now: dt.datetime | None = None, fraction: float = ROTATION_FRACTION
) -> bool:
    return (now or utcnow()) >= rotation_time(cert, fraction)


def verify_peer(
    chain: Sequence[x509.Certificate | bytes],
    ca: MeshCA | x509.Certificate,
    now: dt.datetime | None = None,
) -> str:
    """Checks that `chain` (leaf first, DER or parsed) chains to the mesh CA and is valid now.

    Returns the leaf's SPIFFE ID, which must belong to the CA's mesh. The TLS stack does the
    same checks during a handshake; this is for code and tests that hold certificates directly.
    """
    if not chain:
        raise PkiError("empty certificate chain")
    certs = [c if isinstance(c, x509.Certificate) else _load_der(c) for c in chain]
    ca_cert = ca.cert if isinstance(ca, MeshCA) else ca
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca_cert]))
        .time(now or utcnow())
        .build_client_verifier()
    )
    try:
        verifier.verify(certs[0], certs[1:])
    except verification.VerificationError as exc:
        raise PkiError(f"certificate chain does not verify against the mesh CA: {exc}") from None
    peer = identity_of(certs[0])
    trust = identity_of(ca_cert)
    if peer.mesh != trust.mesh or peer.service is None:
        raise PkiError(f"peer identity {peer.uri} is not a service of mesh {trust.mesh!r}")
    return peer.uri


def _load_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PkiError(f"not a DER certificate: {exc}") from None
