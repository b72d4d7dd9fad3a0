"""The sidecar's mTLS contexts, built from the `tls` part of its config.

A config with a different certificate, key or trust bundle gets new contexts; listeners
read the current ones for every new handshake, while connections already open keep the
context (and certificate) they were made with. That is what lets a rotation happen under
live traffic: nothing open is touched.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from meshfed.dpconfig.model import Tls
from meshfed.pki.der import (
    OID_EC_PUBLIC_KEY,
    CertFacts,
    DerError,
    certificate_facts,
    pem_certificates,
)
from meshfed.pki.spiffe import PkiError, single_identity
from meshfed.pki.tls import mtls_context

# An unencrypted PEM private key: PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY").
_KEY_RE = re.compile(
    r"-----BEGIN (EC )?PRIVATE KEY-----[A-Za-z0-9+/=\s]+-----END (EC )?PRIVATE KEY-----"
)


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


def _certs(pems: str, what: str) -> list[bytes]:
    try:
        ders = pem_certificates(pems)
    except DerError as exc:
        raise TlsConfigError(f"tls.{what}: not a PEM certificate ({exc})") from None
    if not ders:
        raise TlsConfigError(f"tls.{what}: not a PEM certificate (no CERTIFICATE block)")
    return ders


def build_contexts(tls: Tls, identity: str) -> TlsContexts:
    """Contexts for a config's `tls`; refuses a certificate that is not `identity`'s.

    Only `ssl` and a small DER reader are used: the sidecar never loads `cryptography`.
    """
    leaf_der = _certs(tls.cert_pem, "certPem")[0]
    roots: list[bytes] = []
    for i, pem in enumerate(tls.ca_pems):
        roots += _certs(pem, f"caPems[{i}]")
    leaf: CertFacts = certificate_facts(leaf_der)
    if _KEY_RE.search(tls.key_pem) is None:
        raise TlsConfigError("tls.keyPem: not an unencrypted PEM private key")
    if leaf.key_algorithm != OID_EC_PUBLIC_KEY:
        raise TlsConfigError("tls.certPem: expected an ECDSA key (mesh leaves are P-256)")
    try:
        named = single_identity(leaf.uris).uri
    except PkiError as exc:
        raise TlsConfigError(f"tls.certPem: {exc}") from None
    if named != identity:
        raise TlsConfigError(f"tls.certPem names {named}, the config's identity is {identity}")
    chain = (tls.cert_pem.rstrip("\n") + "\n" + tls.key_pem).encode()
    try:
        server, client = mtls_context(True, chain, roots), mtls_context(False, chain, roots)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError("tls.keyPem does not match tls.certPem") from None
        if exc.library == "PEM" or "PEM" in str(exc):
            raise TlsConfigError(
                f"tls.keyPem: not an unencrypted PEM private key ({exc})"
            ) from None
        raise TlsConfigError(f"tls: OpenSSL refused the material: {exc}") from None
    except PkiError as exc:
        raise TlsConfigError(f"tls: {exc}") from None
    return TlsContexts(
        server=server,
        client=client,
        identity=named,
        serial=leaf.serial,
        not_after=tls.expires_at,
        source=tls,
    )
