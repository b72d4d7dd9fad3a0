"""The few facts a proxy needs from an X.509 certificate, read from its DER bytes.

A sidecar reads a peer's SPIFFE ID on every inbound connection and checks its own leaf on every
config; `cryptography` would do both, but it is the largest part of a proxy's memory (≈10 MiB
of a 40 MB budget, docs/benchmarks.md). This walks only the fields named below, with explicit
bounds checks, and refuses anything it does not understand with `DerError`. OpenSSL has
already verified the signature and chain of every certificate handed to it here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# DER tags (universal, and the context-specific ones of a TBSCertificate / GeneralName).
_BOOLEAN, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID, _SEQUENCE = 0x01, 0x02, 0x03, 0x04, 0x06, 0x30
_VERSION, _ISSUER_UID, _SUBJECT_UID, _EXTENSIONS = 0xA0, 0x81, 0x82, 0xA3
_URI = 0x86  # GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
# The constructed forms of GeneralName's string choices (rfc822Name, dNSName, URI, iPAddress,
# registeredID): DER never uses them, yet OpenSSL reads a constructed URI as a URI. Skipping
# one would read a different identity than OpenSSL does, so they are refused.
_CONSTRUCTED_STRINGS = frozenset({0xA1, 0xA2, 0xA6, 0xA7, 0xA8})

# Object identifiers as their DER content bytes.
OID_SUBJECT_ALT_NAME = bytes.fromhex("551d11")  # 2.5.29.17
OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
OID_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1

_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]*?)-----END CERTIFICATE-----"
)


class DerError(ValueError):
    """The bytes are not a certificate this reader understands; the message says where."""


@dataclass(frozen=True, slots=True)
class CertFacts:
    serial: int
    key_algorithm: bytes  # the SubjectPublicKeyInfo algorithm OID (content bytes)
    uris: tuple[str, ...]  # every URI subject alternative name, in order


def _tlv(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at `pos`; never reads past `end`."""
    if pos + 2 > end:
        raise DerError(f"{what}: truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"{what}: multi-byte tags are not used in certificates")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise DerError(f"{what}: bad length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if length > end - pos:
        raise DerError(f"{what}: length runs past its container")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _tlv(buf, pos, end, what)
    if got != tag:
        raise DerError(f"{what}: expected tag 0x{tag:02x}, found 0x{got:02x}")
    return start, stop


def certificate_facts(der: bytes) -> CertFacts:
    """Serial number, public key algorithm and URI SANs of one DER certificate."""
    cert_start, cert_end = _expect(der, 0, len(der), _SEQUENCE, "certificate")
    if cert_end != len(der):
        raise DerError("certificate: trailing bytes")
    tbs, tbs_end = _expect(der, cert_start, cert_end, _SEQUENCE, "tbsCertificate")
    pos = tbs
    tag, _, stop = _tlv(der, pos, tbs_end, "version")
    if tag == _VERSION:
        pos = stop
    start, stop = _expect(der, pos, tbs_end, _INTEGER, "serialNumber")
    if start == stop:
        raise DerError("serialNumber: empty")
    serial = int.from_bytes(der[start:stop], "big", signed=True)
    pos = stop
    for what in ("signature", "issuer", "validity", "subject"):
        _, pos = _expect(der, pos, tbs_end, _SEQUENCE, what)
    spki, pos = _expect(der, pos, tbs_end, _SEQUENCE, "subjectPublicKeyInfo")
    alg, _ = _expect(der, spki, pos, _SEQUENCE, "subjectPublicKeyInfo.algorithm")
    oid, oid_end = _expect(der, alg, pos, _OID, "subjectPublicKeyInfo.algorithm.id")
    key_algorithm = der[oid:oid_end]
    uris: tuple[str, ...] = ()
    while pos < tbs_end:
        tag, start, stop = _tlv(der, pos, tbs_end, "tbsCertificate field")
        if tag == _EXTENSIONS:
            uris = _extension_uris(der, start, stop)
        elif tag not in (_ISSUER_UID, _SUBJECT_UID):
            raise DerError(f"tbsCertificate: unexpected tag 0x{tag:02x}")
        pos = stop
    return CertFacts(serial, key_algorithm, uris)


def _extension_uris(der: bytes, start: int, end: int) -> tuple[str, ...]:
    seq, seq_end = _expect(der, start, end, _SEQUENCE, "extensions")
    pos = seq
    while pos < seq_end:
        ext, pos = _expect(der, pos, seq_end, _SEQUENCE, "extension")
        oid, oid_end = _expect(der, ext, pos, _OID, "extension.id")
        tag, value, value_end = _tlv(der, oid_end, pos, "extension")
        if tag == _BOOLEAN:  # critical
            tag, value, value_end = _tlv(der, value_end, pos, "extension.value")
        if tag != _OCTET_STRING:
            raise DerError("extension.value: expected an OCTET STRING")
        if der[oid:oid_end] == OID_SUBJECT_ALT_NAME:
            return _san_uris(der, value, value_end)
    return ()


def _san_uris(der: bytes, start: int, end: int) -> tuple[str, ...]:
    names, names_end = _expect(der, start, end, _SEQUENCE, "subjectAltName")
    uris: list[str] = []
    pos = names
    while pos < names_end:
        tag, value, pos = _tlv(der, pos, names_end, "subjectAltName entry")
        if tag in _CONSTRUCTED_STRINGS:
            raise DerError(f"subjectAltName: constructed form of a string name (0x{tag:02x})")
        if tag == _URI:
            try:
                uris.append(der[value:pos].decode("ascii"))
            except UnicodeDecodeError:
                raise DerError("subjectAltName: a URI that is not ASCII") from None
    return tuple(uris)


def pem_certificates(text: str) -> list[bytes]:
    """The DER bytes of each CERTIFICATE block in `text`; raises DerError on a damaged one."""
    out: list[bytes] = []
    for match in _PEM_CERT_RE.finditer(text):
        try:
            der = base64.b64decode("".join(match.group(1).split()), validate=True)
        except binascii.Error as exc:
            raise DerError(f"bad base64 in a CERTIFICATE block ({exc})") from None
        certificate_facts(der)  # refuse a block that is not a certificate now
        out.append(der)
    return out
