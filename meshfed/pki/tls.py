"""ssl.SSLContext objects for mesh mTLS, and reading the peer's SPIFFE ID after a handshake.

Python's ssl module loads key material from files only. The leaf goes through an anonymous
in-memory file (memfd) so private keys never touch a disk; where memfd is missing, a private
temporary directory is used and removed right after loading.

OpenSSL cannot match a URI SAN during the handshake, so "is this the service I wanted" is a
separate step (`check_peer_id`) the caller runs before sending any data.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshfed.pki.leaf import Leaf
from meshfed.pki.spiffe import PkiError, identity_of

SslConnection = ssl.SSLObject | ssl.SSLSocket


class PeerIdentityError(PkiError):
    """The peer's certificate is missing, malformed, or names another identity."""


def server_context(
    leaf: Leaf, trust: x509.Certificate | Sequence[x509.Certificate]
) -> ssl.SSLContext:
    """Server side of mesh mTLS: presents `leaf`, requires a client cert chaining to `trust`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, leaf, trust)
    return ctx


def client_context(
    leaf: Leaf, trust: x509.Certificate | Sequence[x509.Certificate]
) -> ssl.SSLContext:
    """Client side: presents `leaf`, requires a server cert chaining to `trust`.

    No hostname check (mesh peers are named by SPIFFE URI, not DNS): call `check_peer_id`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    _configure(ctx, leaf, trust)
    return ctx


def load_leaf(ctx: ssl.SSLContext, leaf: Leaf) -> None:
    """Installs (or replaces, on rotation) the context's certificate and key.

    Replacing affects only handshakes that start afterwards; open connections keep theirs.
    """
    pem = leaf.cert_pem + leaf.key_pem
    with _pem_path(pem) as path:
        ctx.load_cert_chain(path)


def peer_spiffe_id(conn: SslConnection) -> str:
    """SPIFFE ID of the verified peer of a completed handshake.

    getpeercert() returns {} when the peer cert was not verified, and its dict form does not
    show URI SANs reliably, so the DER form is parsed instead.
    """
    der = conn.getpeercert(binary_form=True)
    if not der:
        raise PeerIdentityError("peer presented no certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PeerIdentityError(f"peer certificate does not parse: {exc}") from None
    try:
        identity = identity_of(cert)
    except PkiError as exc:
        raise PeerIdentityError(f"peer certificate has no usable SPIFFE ID: {exc}") from None
    return identity.uri


def check_peer_id(conn: SslConnection, expected: str) -> str:
    """Refuses a peer whose SPIFFE ID is not `expected` (e.g. a wrong or stale endpoint)."""
    actual = peer_spiffe_id(conn)
    if actual != expected:
        raise PeerIdentityError(f"peer is {actual}, expected {expected}")
    return actual


def _configure(
    ctx: ssl.SSLContext, leaf: Leaf, trust: x509.Certificate | Sequence[x509.Certificate]
) -> None:
    roots = [trust] if isinstance(trust, x509.Certificate) else list(trust)
    if not roots:
        raise PkiError("no trusted CA certificate given")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in roots)
    )
    load_leaf(ctx, leaf)


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
    with tempfile.TemporaryDirectory(prefix="meshfed-leaf-") as tmp:
        path = os.path.join(tmp, "leaf.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        yield path
