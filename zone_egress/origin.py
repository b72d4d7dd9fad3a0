"""TLS origination toward an external service: the client context a MeshExternalService's
`tls` asks for, and the subjectAltNames check after the handshake.

Kuma's verification modes (https://kuma.io/docs/latest/networking/meshexternalservice/):

- `Secured` (default): the chain must lead to `caCert` (the system's trust store without
  one), and the name must match: the `subjectAltNames` matchers when given (any one, Exact or
  Prefix, against the certificate's DNS and URI names), else `serverName` (or the endpoint's
  host name) as a host name check.
- `SkipSAN`: the chain is verified, no name is checked.
- `SkipAll`: nothing is verified (Kuma's "insecure, for testing only").

`SkipCA` is refused by the API (meshfed/resources/models/external.py). Only `ssl` is used.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from typing import Final

from meshfed.dpconfig.egress import OriginTls, SanMatch
from meshfed.pki.der import DerError, certificate_facts
from meshfed.pki.tls import SslConnection, load_chain_pem

_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


class OriginError(ValueError):
    """The TLS settings or material of an external service are unusable; says which."""


def client_context(tls: OriginTls) -> ssl.SSLContext:
    """The context the egress dials an external service's endpoints with."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.min_version in _VERSIONS:
        ctx.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version in _VERSIONS:
        ctx.maximum_version = _VERSIONS[tls.max_version]
    if not tls.allow_renegotiation:
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    if tls.mode == "SkipAll":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = tls.mode == "Secured" and not tls.subject_alt_names
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            if tls.ca_pem:
                ctx.load_verify_locations(cadata=tls.ca_pem)
            else:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (ssl.SSLError, ValueError) as exc:
            raise OriginError(f"caCert is not a usable PEM certificate: {exc}") from None
    if tls.client_cert_pem:
        chain = (tls.client_cert_pem.rstrip("\n") + "\n" + tls.client_key_pem).encode()
        try:
            load_chain_pem(ctx, chain)
        except (ssl.SSLError, OSError) as exc:
            raise OriginError(f"clientCert/clientKey are not a usable pair: {exc}") from None
    return ctx


def server_name(tls: OriginTls, address: str) -> str | None:
    """The SNI to send: `serverName`, else the endpoint's host name (none for an IP or a
    unix socket)."""
    if tls.server_name:
        return tls.server_name
    if address.startswith("unix://") or _is_ip(address):
        return None
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def peer_names(conn: SslConnection) -> list[str]:
    """The DNS and URI subject alternative names of the peer's verified certificate."""
    cert = conn.getpeercert() or {}
    names: list[str] = []
    for entry in cert.get("subjectAltName", ()):
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "DNS":
            names.append(str(entry[1]))
    der = conn.getpeercert(binary_form=True)
    if der:
        with contextlib.suppress(DerError):
            names += certificate_facts(der).uris
    return names


def san_problem(tls: OriginTls, conn: SslConnection) -> str | None:
    """Why the peer fails the `subjectAltNames` matchers (None: it passes, or none apply)."""
    if tls.mode != "Secured" or not tls.subject_alt_names:
        return None
    names = peer_names(conn)
    if any(_matches(m, n) for m in tls.subject_alt_names for n in names):
        return None
    wanted = ", ".join(f"{m.type} {m.value}" for m in tls.subject_alt_names)
    return f"the certificate names {', '.join(names) or 'nothing'}; wanted {wanted}"


def _matches(m: SanMatch, name: str) -> bool:
    return name == m.value if m.type == "Exact" else name.startswith(m.value)
