"""The two Secrets of a builtin mesh CA must stay a pair: a key that matches its certificate.

Kuma's names: `<mesh>.ca-builtin-cert-<backend>` (base64 of the PEM certificate) and
`<mesh>.ca-builtin-key-<backend>` (base64 of the PEM private key). A write of one that is not
valid PEM, or that does not match the other as stored, would leave every zone unable to
issue certificates (or issuing ones nobody trusts); the API refuses it, naming `data`.
Pure code: the caller reads the counterpart from its store.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CERT_MARK = ".ca-builtin-cert-"
KEY_MARK = ".ca-builtin-key-"


class Part(enum.StrEnum):
    CERT = "cert"
    KEY = "key"


@dataclass(frozen=True)
class CaSecret:
    """A Secret's place in a mesh CA: which half, of which backend."""

    mesh: str
    part: Part
    backend: str

    @property
    def counterpart(self) -> str:
        mark = KEY_MARK if self.part is Part.CERT else CERT_MARK
        return f"{self.mesh}{mark}{self.backend}"


def ca_secret(mesh: str, name: str) -> CaSecret | None:
    """The CA half a Secret named `name` in `mesh` is, or None for any other Secret."""
    for part, mark in ((Part.CERT, CERT_MARK), (Part.KEY, KEY_MARK)):
        prefix = f"{mesh}{mark}"
        if name.startswith(prefix) and len(name) > len(prefix):
            return CaSecret(mesh, part, name[len(prefix) :])
    return None


def _decode(data: str) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _public_der(part: Part, pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a PEM certificate or private key; ValueError if not one."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if part is Part.CERT:
        return x509.load_pem_x509_certificate(pem).public_key().public_bytes(*spki)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:  # encrypted: no password to give
        raise ValueError(str(exc)) from None
    return key.public_key().public_bytes(*spki)


_WHAT = {Part.CERT: "a PEM certificate", Part.KEY: "an unencrypted PEM private key"}


def check_ca_secret(secret: CaSecret, data: str, counterpart_data: str | None) -> str | None:
    """Why writing `data` (base64) as `secret` is refused, or None when it may be written.
    `counterpart_data` is the other half as stored (None when absent: nothing to match)."""
    pem = _decode(data)
    if pem is None:
        return "must be base64-encoded (standard alphabet)"
    try:
        mine = _public_der(secret.part, pem)
    except ValueError:
        return f"must be the base64 of {_WHAT[secret.part]} (the mesh CA's {secret.part})"
    if counterpart_data is None:
        return None
    other_pem = _decode(counterpart_data)
    other_part = Part.KEY if secret.part is Part.CERT else Part.CERT
    try:
        other = _public_der(other_part, other_pem) if other_pem is not None else None
    except ValueError:
        other = None
    if other is None:
        return None  # the stored half is unusable: a valid one may replace it
    if mine != other:
        return (
            f"this {secret.part} does not match the mesh CA's {other_part} stored in Secret "
            f"{secret.counterpart!r}: replace both (delete them, the global makes a new pair) "
            "or write the matching one"
        )
    return None
