"""meshfed/pki/der.py as peer_spiffe_id uses it: SAN encodings OpenSSL accepts are read as
OpenSSL reads them. Certificates are signed by a real mesh CA and checked by a real OpenSSL
handshake (memory BIOs), so "OpenSSL accepts it" is observed, not assumed."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from meshfed.pki.ca import MeshCA, create_mesh_ca
from meshfed.pki.der import DerError, certificate_facts
from meshfed.pki.leaf import issue_leaf
from meshfed.pki.tls import PeerIdentityError, mtls_context, peer_spiffe_id

CA: MeshCA = create_mesh_ca("m")


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def leaf_with_raw_san(general_names: bytes) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A CA-signed leaf whose subjectAltName value is `SEQUENCE { general_names }` as given."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, tlv(0x30, general_names)
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")]))
        .issuer_name(CA.cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(CA.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER), key


def client_sees(server_der: bytes, server_key: ec.EllipticCurvePrivateKey) -> ssl.SSLObject:
    """A completed mesh mTLS handshake; returns the client end, which verified the server."""
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    client_leaf = issue_leaf(CA, "client")
    trust = [CA.cert.public_bytes(serialization.Encoding.DER)]
    server_chain = ssl.DER_cert_to_PEM_cert(server_der).encode() + key_pem
    server = mtls_context(True, server_chain, trust).wrap_bio(
        s_in := ssl.MemoryBIO(), s_out := ssl.MemoryBIO(), server_side=True
    )
    client = mtls_context(False, client_leaf.cert_pem + client_leaf.key_pem, trust).wrap_bio(
        c_in := ssl.MemoryBIO(), c_out := ssl.MemoryBIO(), server_side=False
    )
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client
    raise AssertionError("the handshake did not complete")


def san_seen_by_openssl(end: ssl.SSLObject) -> object:
    cert = end.getpeercert()
    assert cert is not None, "the handshake is complete"
    return cert.get("subjectAltName")


def test_a_constructed_uri_san_is_not_skipped() -> None:
    evil = tlv(0xA6, tlv(0x16, b"spiffe://m/admin"))  # [6] constructed { IA5String }
    plain = tlv(0x86, b"spiffe://m/web")
    der, key = leaf_with_raw_san(evil + plain)
    client = client_sees(der, key)  # OpenSSL verified and accepted the certificate
    assert san_seen_by_openssl(client) == (("URI", "spiffe://m/admin"), ("URI", "spiffe://m/web"))
    try:
        uris = certificate_facts(der).uris
    except DerError:
        uris = None  # refusing what it does not understand is fine
    assert uris in (None, ("spiffe://m/admin", "spiffe://m/web"))
    with pytest.raises(PeerIdentityError):
        peer_spiffe_id(client)


def test_the_ordinary_form_reads_the_same_as_openssl() -> None:
    """Control for the test above: the helpers agree with OpenSSL on a plain SAN."""
    der, key = leaf_with_raw_san(tlv(0x86, b"spiffe://m/web"))
    client = client_sees(der, key)
    assert san_seen_by_openssl(client) == (("URI", "spiffe://m/web"),)
    assert certificate_facts(der).uris == ("spiffe://m/web",)
    assert peer_spiffe_id(client) == "spiffe://m/web"
