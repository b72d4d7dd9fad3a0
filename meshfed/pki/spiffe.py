"""SPIFFE identities of a mesh: trust domain = mesh name, one path segment = service name.

Service names come from `kuma.io/service` tag values, which may hold `/` and `:`; SPIFFE path
segments allow only `[A-Za-z0-9._-]`. Any other byte is percent-encoded so that the mapping
stays one-to-one (and every usual Kuma service name comes out exactly as Kuma writes it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by the two functions that read certificates: see spiffe_uris
    from cryptography import x509

SCHEME = "spiffe://"
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SEGMENT_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_PCT_RE = re.compile(r"%([0-9A-F]{2})")
# SPIFFE caps the whole ID at 2048 bytes; anything longer is refused before parsing.
MAX_ID_LENGTH = 2048


class PkiError(ValueError):
    """Bad PKI input (a malformed secret, certificate or identity); the message says what."""


@dataclass(frozen=True, slots=True)
class SpiffeId:
    mesh: str
    service: str | None  # None for the mesh's own ID (the CA's)

    @property
    def uri(self) -> str:
        if self.service is None:
            return SCHEME + self.mesh
        return f"{SCHEME}{self.mesh}/{_encode_segment(self.service)}"

    def __str__(self) -> str:
        return self.uri


def check_mesh(mesh: str) -> str:
    """A mesh name must be a valid SPIFFE trust domain: it is the root of every identity."""
    if not _TRUST_DOMAIN_RE.fullmatch(mesh):
        raise PkiError(f"mesh name {mesh!r} is not a valid SPIFFE trust domain ([a-z0-9._-]+)")
    return mesh


def mesh_id(mesh: str) -> str:
    return SpiffeId(check_mesh(mesh), None).uri


def service_id(mesh: str, service: str) -> str:
    if not service:
        raise PkiError("service name is empty")
    return SpiffeId(check_mesh(mesh), service).uri


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Inverse of `service_id` / `mesh_id`; refuses any other spelling of the same ID."""
    if len(uri) > MAX_ID_LENGTH:
        raise PkiError("SPIFFE ID longer than 2048 bytes")
    if not uri.startswith(SCHEME):
        raise PkiError(f"{uri!r} is not a spiffe:// URI")
    domain, sep, path = uri[len(SCHEME) :].partition("/")
    if not _TRUST_DOMAIN_RE.fullmatch(domain):
        raise PkiError(f"{uri!r}: bad trust domain {domain!r}")
    if not sep:
        return SpiffeId(domain, None)
    try:
        service = _decode_segment(path)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PkiError(f"{uri!r}: bad service segment: {exc}") from None
    parsed = SpiffeId(domain, service)
    if parsed.uri != uri:
        raise PkiError(f"{uri!r} is not in canonical form (expected {parsed.uri!r})")
    return parsed


def spiffe_uris(cert: x509.Certificate) -> list[str]:
    """The spiffe:// URI SANs of a certificate (an X509-SVID has exactly one).

    cryptography is imported here, not at module level: identities are also parsed and
    built where no certificate is ever read (policies, configs), and the library is the
    largest part of a proxy's memory."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(SCHEME)
    ]


def identity_of(cert: x509.Certificate) -> SpiffeId:
    """The single SPIFFE ID a certificate carries; anything else is refused."""
    return single_identity(spiffe_uris(cert))


def single_identity(uri_sans: Sequence[str]) -> SpiffeId:
    """The one SPIFFE ID among a certificate's URI SANs (an X509-SVID has exactly one)."""
    uris = [u for u in uri_sans if u.startswith(SCHEME)]
    if len(uris) != 1:
        raise PkiError(f"certificate carries {len(uris)} spiffe:// URI SANs, expected exactly 1")
    return parse_spiffe_id(uris[0])


def _encode_segment(service: str) -> str:
    raw = service.encode("utf-8")
    # "." and ".." are not allowed as segments even though "." is a safe character.
    if service in (".", ".."):
        return "".join(f"%{b:02X}" for b in raw)
    return "".join(chr(b) if b in _SEGMENT_SAFE else f"%{b:02X}" for b in raw)


def _decode_segment(segment: str) -> str:
    if not segment:
        raise ValueError("empty path segment")
    out = bytearray()
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "%":
            m = _PCT_RE.match(segment, i)
            if m is None:
                raise ValueError("bad percent escape")
            out.append(int(m.group(1), 16))
            i += 3
        elif ord(ch) < 128 and ord(ch) in _SEGMENT_SAFE:
            out.append(ord(ch))
            i += 1
        else:
            raise ValueError(f"character {ch!r} not allowed")
    return out.decode("utf-8")
