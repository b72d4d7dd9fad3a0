"""A private CA for a control plane's TLS port, and the server certificates it issues.

The global's KDS port is served over TLS with a certificate from a CA the global makes on its
first start (unless the operator brings a certificate): zones pin that CA. Unlike the mesh CA
this one names hosts, not SPIFFE identities: the certificate carries DNS and IP SANs, and a
zone checks the name it dials against them as any TLS client does. ECDSA P-256 throughout.
Pure code (no store, no files).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshfed.pki.ca import CLOCK_SKEW, cert_pem, key_pem, utcnow
from meshfed.pki.spiffe import PkiError

DEFAULT_TLS_CA_VALIDITY = dt.timedelta(days=3650)
DEFAULT_SERVER_VALIDITY = dt.timedelta(days=30)
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})
_MAX_NAMES = 100


@dataclass(frozen=True)
class TlsPair:
    """A certificate and its private key (a CA or a server)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


def create_tls_ca(
    common_name: str,
    *,
    validity: dt.timedelta = DEFAULT_TLS_CA_VALIDITY,
    now: dt.datetime | None = None,
) -> TlsPair:
    """A self-signed root that may sign server certificates only (path length 0)."""
    if validity <= dt.timedelta(0):
        raise PkiError("CA validity must be positive")
    now = now or utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return TlsPair(cert, key)


def load_pair(cert_pem: bytes, key_pem: bytes) -> TlsPair:
    """A pair from PEM; PkiError unless the key is P-256 and matches the certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None
    key = _load_key(key_pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise PkiError("the key is not an ECDSA P-256 key")
    if not _matches(key, cert):
        raise PkiError("the key does not match the certificate")
    return TlsPair(cert, key)


def check_chain(chain_pem: bytes, key_pem: bytes) -> x509.Certificate:
    """The leaf of a PEM chain whose key (any type TLS takes) matches it; PkiError otherwise.
    For an operator's own certificate."""
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate: {exc}") from None
    if not _matches(_load_key(key_pem), certs[0]):
        raise PkiError("the key does not match the (first) certificate")
    return certs[0]


def _load_key(key_pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"not an unencrypted PEM private key: {exc}") from None


def _matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)


def issue_server_cert(
    ca: TlsPair,
    names: Sequence[str],
    *,
    validity: dt.timedelta = DEFAULT_SERVER_VALIDITY,
    now: dt.datetime | None = None,
) -> TlsPair:
    """A server certificate for `names` (host names and IP addresses), signed by `ca`."""
    if validity <= dt.timedelta(0):
        raise PkiError("server certificate validity must be positive")
    sans = san_entries(names)
    if not sans:
        raise PkiError("a server certificate needs at least one name")
    now = now or utcnow()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return TlsPair(cert, key)


def san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    """DNS or IP SAN entries for `names`, deduplicated in order; PkiError names a bad one."""
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip().strip("[]")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _is_dns_name(name):
            raise PkiError(f"{raw!r} is neither a host name nor an IP address")
        out.append(x509.DNSName(name.lower()))
    if len(out) > _MAX_NAMES:
        raise PkiError(f"at most {_MAX_NAMES} names in one certificate")
    return out


def server_names(bind_host: str, hostname: str, extra: Sequence[str] = ()) -> list[str]:
    """The names a server certificate covers: loopback, this host's name, the bind address
    when it is not a wildcard, and the operator's extras."""
    names = ["localhost", "127.0.0.1", "::1"]
    if hostname and _is_dns_name(hostname):
        names.append(hostname)
    if bind_host.strip("[]") not in WILDCARD_HOSTS:
        names.append(bind_host.strip("[]"))
    names += list(extra)
    return list(dict.fromkeys(names))


def _is_dns_name(name: str) -> bool:
    if len(name) > 253:
        return False
    labels = name.rstrip(".").split(".")
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    ) or (name.startswith("*.") and _is_dns_name(name[2:]))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
