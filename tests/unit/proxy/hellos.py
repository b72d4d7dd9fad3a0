"""ClientHello bytes for tests: real ones from Python's ssl module, and hand-built ones."""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections.abc import Sequence


def real_hello(
    sni: str | None,
    alpn: Sequence[str] = (),
    version: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight of a real TLS client, captured through a memory BIO (no socket)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def records(payload: bytes, sizes: Sequence[int] = (), version: int = 0x0301) -> bytes:
    """Frames handshake-layer `payload` into handshake records of the given sizes (rest last)."""
    out = bytearray()
    pos = 0
    for size in [*sizes, len(payload)]:
        chunk = payload[pos : pos + size]
        if not chunk:
            break
        out += struct.pack("!BHH", 0x16, version, len(chunk)) + chunk
        pos += len(chunk)
    return bytes(out)


def handshake_payload(hello: bytes) -> bytes:
    """Removes record framing from a single-record hello."""
    assert hello[0] == 0x16 and int.from_bytes(hello[3:5], "big") == len(hello) - 5
    return hello[5:]


def u8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def u16(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + u16(body)


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    return ext(0, u16(b"".join(bytes([name_type]) + u16(n) for n in names)))


def alpn_ext(*protocols: bytes) -> bytes:
    return ext(16, u16(b"".join(u8(p) for p in protocols)))


def built_hello(
    extensions: bytes | None,
    *,
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
    trailing: bytes = b"",
    msg_type: int = 1,
) -> bytes:
    """Handshake-layer ClientHello (header included) with exactly the given parts."""
    body = b"\x03\x03" + bytes(32) + u8(session_id) + u16(suites) + u8(compression)
    if extensions is not None:
        body += u16(extensions)
    body += trailing
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body
