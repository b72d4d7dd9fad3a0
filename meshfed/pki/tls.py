"""ssl.SSLContext objects for mesh mTLS, and reading the peer's SPIFFE ID after a handshake.

Python's ssl module loads key material from files only. The leaf goes through an anonymous
in-memory file (memfd) so private keys never touch a disk; where memfd is missing, a private
temporary directory is used and removed right after loading.

OpenSSL cannot match a URI SAN during the handshake, so "is this the service I wanted" is a
separate step (`check_peer_id`) the caller runs before sending any data.

Proxies build their contexts from PEM and DER bytes (`mtls_context`) and read peers with the
small DER reader in `meshfed.pki.der`; `cryptography` is imported only by the helpers that take
its objects (`server_context`, `client_context`, `load_leaf`), which control planes and tests use.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from meshfed.pki.der import DerError, certificate_facts
from meshfed.pki.spiffe import PkiError, single_identity

if TYPE_CHECKING:
    from cryptography import x509

    from meshfed.pki.leaf import Leaf

SslConnection = ssl.SSLObject | ssl.SSLSocket


class PeerIdentityError(PkiError):
    """The peer's certificate is missing, malformed, or names another identity."""


def mtls_context(server: bool, chain_pem: bytes, trust_der: Sequence[bytes]) -> ssl.SSLContext:
    """A mesh mTLS context (server or client side): presents the leaf and key in `chain_pem`,
    requires a peer certificate chaining to one of `trust_der`.

    The client side does no hostname check (mesh peers are named by SPIFFE URI, not DNS): call
    `check_peer_id`. OpenSSL refuses a key that does not match the certificate (ssl.SSLError).
    """
    if not trust_der:
        raise PkiError("no trusted CA certificate given")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if not server:
        ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=b"".join(trust_der))
    load_chain_pem(ctx, chain_pem)
    return ctx


def server_context(
    leaf: Leaf, trust: x509.Certificate | Sequence[x509.Certificate]
) -> ssl.SSLContext:
    """Server side of mesh mTLS: presents `leaf`, requires a client cert chaining to `trust`."""
    return mtls_context(True, _chain(leaf), _trust_der(trust))


def client_context(
    leaf: Leaf, trust: x509.Certificate | Sequence[x509.Certificate]
) -> ssl.SSLContext:
    """Client side: presents `leaf`, requires a server cert chaining to `trust`; no hostname
    check (call `check_peer_id`)."""
    return mtls_context(False, _chain(leaf), _trust_der(trust))


def load_leaf(ctx: ssl.SSLContext, leaf: Leaf) -> None:
    """Installs (or replaces, on rotation) the context's certificate and key.

    Replacing affects only handshakes that start afterwards; open connections keep theirs.
    """
    load_chain_pem(ctx, _chain(leaf))


def load_chain_pem(ctx: ssl.SSLContext, chain_pem: bytes) -> None:
    """`load_leaf` from PEM bytes (certificate, then key)."""
    with _pem_path(chain_pem) as path:
        ctx.load_cert_chain(path)


def _chain(leaf: Leaf) -> bytes:
    return leaf.cert_pem + leaf.key_pem


def _trust_der(trust: x509.Certificate | Sequence[x509.Certificate]) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    roots = [trust] if isinstance(trust, x509.Certificate) else list(trust)
    return [c.public_bytes(serialization.Encoding.DER) for c in roots]


def peer_spiffe_id(conn: SslConnection) -> str:
    """SPIFFE ID of the verified peer of a completed handshake.

    getpeercert() returns {} when the peer cert was not verified, and its dict form does not
    show URI SANs reliably, so the DER form is parsed instead.
    """
    return peer_identity_of(peer_uris(conn))


def peer_uris(conn: SslConnection) -> tuple[str, ...]:
    """Every URI SAN of the verified peer certificate (its SPIFFE ID, its `kuma://` tags)."""
    der = conn.getpeercert(binary_form=True)
    if not der:
        raise PeerIdentityError("peer presented no certificate")
    try:
        return certificate_facts(der).uris
    except DerError as exc:
        raise PeerIdentityError(f"peer certificate does not parse: {exc}") from None


def peer_identity_of(uris: Sequence[str]) -> str:
    """The SPIFFE ID among a peer certificate's URI SANs (`peer_uris`)."""
    try:
        identity = single_identity(uris)
    except PkiError as exc:
        raise PeerIdentityError(f"peer certificate has no usable SPIFFE ID: {exc}") from None
    return identity.uri


def check_peer_id(conn: SslConnection, expected: str) -> str:
    """Refuses a peer whose SPIFFE ID is not `expected` (e.g. a wrong or stale endpoint)."""
    actual = peer_spiffe_id(conn)
    if actual != expected:
        raise PeerIdentityError(f"peer is {actual}, expected {expected}")
    return actual


@contextlib.contextmanager
def _pem_path(pem: bytes) -> Iterator[str]:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("meshfed-leaf", os.MFD_CLOEXEC)
        try:
            view = memoryview(pem)
            while view:
                view = view[os.write(fd, view) :]
            # Opening /proc/self/fd/N gives a fresh file description that reads from offset 0.
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    import tempfile  # only here: with shutil, bz2 and lzma ~0.7 MiB in every sidecar

    with tempfile.TemporaryDirectory(prefix="meshfed-leaf-") as tmp:
        path = os.path.join(tmp, "leaf.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        yield path
