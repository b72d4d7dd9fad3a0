"""The sidecar's mTLS contexts, built from the `tls` part of its config.

A config with a different certificate, key or trust bundle gets new contexts; listeners
read the current ones for every new handshake, while connections already open keep the
context (and certificate) they were made with. That is what lets a rotation happen under
live traffic: nothing open is touched.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshfed.dpconfig.model import Tls
from meshfed.pki.leaf import Leaf
from meshfed.pki.spiffe import PkiError, identity_of
from meshfed.pki.tls import client_context, server_context


class TlsConfigError(ValueError):
    """The certificate material in a config is unusable; the message says which part."""


@dataclass(frozen=True)
class TlsContexts:
    server: ssl.SSLContext  # inbound: requires a client certificate from the mesh CA
    client: ssl.SSLContext  # outbound: presents the leaf, verifies the server against the CA
    identity: str  # the leaf's SPIFFE ID
    serial: int  # the leaf's serial number, to tell rotations apart
    not_after: str  # RFC 3339
    source: Tls  # what they were built from


def _certs(pems: str, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pems.encode())
    except ValueError as exc:
        raise TlsConfigError(f"tls.{what}: not a PEM certificate ({exc})") from None
    if not certs:
        raise TlsConfigError(f"tls.{what}: holds no certificate")
    return certs


def _spki(public_key: object) -> bytes:
    assert hasattr(public_key, "public_bytes")
    blob: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return blob


def build_contexts(tls: Tls, identity: str) -> TlsContexts:
    """Contexts for a config's `tls`; refuses a certificate that is not `identity`'s."""
    leaf_cert = _certs(tls.cert_pem, "certPem")[0]
    roots: list[x509.Certificate] = []
    for i, pem in enumerate(tls.ca_pems):
        roots += _certs(pem, f"caPems[{i}]")
    try:
        key = serialization.load_pem_private_key(tls.key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise TlsConfigError(f"tls.keyPem: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsConfigError("tls.keyPem: expected an ECDSA key (mesh leaves are P-256)")
    if _spki(key.public_key()) != _spki(leaf_cert.public_key()):
        raise TlsConfigError("tls.keyPem does not match tls.certPem")
    try:
        named = identity_of(leaf_cert).uri
    except PkiError as exc:
        raise TlsConfigError(f"tls.certPem: {exc}") from None
    if named != identity:
        raise TlsConfigError(f"tls.certPem names {named}, the config's identity is {identity}")
    leaf = Leaf(cert=leaf_cert, key=key, ca_cert=roots[0])
    try:
        server, client = server_context(leaf, roots), client_context(leaf, roots)
    except (ssl.SSLError, PkiError) as exc:
        raise TlsConfigError(f"tls: OpenSSL refused the material: {exc}") from None
    return TlsContexts(
        server=server,
        client=client,
        identity=named,
        serial=leaf_cert.serial_number,
        not_after=tls.expires_at,
        source=tls,
    )
