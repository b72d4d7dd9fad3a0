"""Incremental, sans-io parser of a TLS ClientHello: feed bytes, get NEED_MORE or the result.

The zone ingress routes on SNI without terminating TLS, so it must read the ClientHello from
bytes it will later replay unchanged to the chosen endpoint. The parser therefore never owns
the bytes: the caller keeps everything it read and sends it all once the parse is done.

The hello may be split across several TLS records (RFC 8446 5.1 allows fragmenting handshake
messages) and across arbitrary TCP reads; both are handled. Every failure raises
`ClientHelloError` with a `kind` suitable as a metrics label, and the parser then stays failed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

# A plaintext TLS record carries at most 2^14 bytes (RFC 8446 5.1).
MAX_RECORD_PAYLOAD: Final = 16384
# Real ClientHellos are well under 2 KiB even with post-quantum key shares; 16 KiB leaves room
# for large session tickets while bounding the memory one unauthenticated peer can hold.
DEFAULT_MAX_HELLO: Final = 16384
# A sane client uses one or two records; dribbling a hello in 1-byte records only costs us.
MAX_RECORDS: Final = 64

_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
_CONTENT_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_NAME_TYPE_HOST = 0
# legacy_version + random + session_id length + cipher_suites length + compression length.
_MIN_HELLO_BODY = 2 + 32 + 1 + 2 + 1


class NeedMore(enum.Enum):
    NEED_MORE = "need_more"


NEED_MORE: Final = NeedMore.NEED_MORE


class ErrorKind(enum.StrEnum):
    NOT_TLS = "not_tls"
    NOT_CLIENT_HELLO = "not_client_hello"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    NO_SNI = "no_sni"


class ClientHelloError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ClientHello:
    sni: str
    alpn: tuple[str, ...]
    # Bytes of the records that carried the hello (headers included) from the first byte fed.
    record_bytes: int


Result = ClientHello | Literal[NeedMore.NEED_MORE]


class ClientHelloParser:
    """Feed the first bytes of a connection; stops at the end of the ClientHello."""

    __slots__ = (
        "_consumed",
        "_error",
        "_handshake",
        "_header",
        "_max_hello",
        "_record_end",
        "_record_left",
        "_records",
        "_result",
    )

    def __init__(self, max_hello: int = DEFAULT_MAX_HELLO) -> None:
        self._max_hello = max_hello
        self._header = bytearray()  # partial record header
        self._record_left = 0  # payload bytes still to come in the current record
        self._record_end = 0  # stream offset just past the current record
        self._records = 0
        self._consumed = 0  # stream bytes looked at so far
        self._handshake = bytearray()  # handshake-layer bytes, record framing removed
        self._result: ClientHello | None = None
        self._error: ClientHelloError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Result:
        """Parses what has arrived; bytes after the hello are ignored (the caller replays them)."""
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result
        try:
            return self._feed(memoryview(data).cast("B"))
        except ClientHelloError as exc:
            self._error = exc
            raise

    def _feed(self, data: memoryview) -> Result:
        pos = 0
        while pos < len(data):
            if self._record_left == 0:
                take = min(_RECORD_HEADER - len(self._header), len(data) - pos)
                self._header += data[pos : pos + take]
                pos += take
                self._consumed += take
                self._check_header()
                if len(self._header) < _RECORD_HEADER:
                    break
                self._start_record()
                continue
            take = min(self._record_left, len(data) - pos)
            self._handshake += data[pos : pos + take]
            pos += take
            self._consumed += take
            self._record_left -= take
            if self._record_left == 0:
                self._header.clear()
            hello_len = self._check_handshake_header()
            if hello_len is not None and len(self._handshake) >= _HANDSHAKE_HEADER + hello_len:
                body = bytes(self._handshake[_HANDSHAKE_HEADER : _HANDSHAKE_HEADER + hello_len])
                sni, alpn = _parse_body(body)
                self._result = ClientHello(sni=sni, alpn=alpn, record_bytes=self._record_end)
                return self._result
        return NEED_MORE

    def _check_header(self) -> None:
        """Validates as soon as bytes arrive, so plain-text garbage fails on its first byte."""
        header = self._header
        first = self._records == 0
        if len(header) >= 1 and header[0] != _CONTENT_HANDSHAKE:
            if first:
                raise ClientHelloError(
                    ErrorKind.NOT_TLS, f"first byte 0x{header[0]:02x} is not a TLS handshake"
                )
            raise ClientHelloError(
                ErrorKind.MALFORMED, f"record of type {header[0]} inside the ClientHello"
            )
        if len(header) >= 2 and header[1] != 3:
            raise ClientHelloError(
                ErrorKind.NOT_TLS if first else ErrorKind.MALFORMED,
                f"record version major {header[1]} is not 3",
            )

    def _start_record(self) -> None:
        length = int.from_bytes(self._header[3:5], "big")
        if length == 0:
            raise ClientHelloError(ErrorKind.MALFORMED, "empty handshake record")
        if length > MAX_RECORD_PAYLOAD:
            raise ClientHelloError(
                ErrorKind.MALFORMED, f"record length {length} exceeds {MAX_RECORD_PAYLOAD}"
            )
        self._records += 1
        if self._records > MAX_RECORDS:
            raise ClientHelloError(
                ErrorKind.TOO_LARGE, f"ClientHello spread over more than {MAX_RECORDS} records"
            )
        self._record_left = length
        self._record_end = self._consumed + length

    def _check_handshake_header(self) -> int | None:
        hs = self._handshake
        if hs and hs[0] != _HANDSHAKE_CLIENT_HELLO:
            raise ClientHelloError(
                ErrorKind.NOT_CLIENT_HELLO, f"handshake message type {hs[0]} is not ClientHello"
            )
        if len(hs) < _HANDSHAKE_HEADER:
            return None
        length = int.from_bytes(hs[1:4], "big")
        if _HANDSHAKE_HEADER + length > self._max_hello:
            raise ClientHelloError(
                ErrorKind.TOO_LARGE,
                f"ClientHello of {_HANDSHAKE_HEADER + length} bytes exceeds {self._max_hello}",
            )
        if length < _MIN_HELLO_BODY:
            raise ClientHelloError(ErrorKind.MALFORMED, f"ClientHello length {length} too short")
        return length


def parse_client_hello(data: bytes, max_hello: int = DEFAULT_MAX_HELLO) -> Result:
    """One-shot form of `ClientHelloParser` for bytes already in hand."""
    return ClientHelloParser(max_hello).feed(data)


class _Reader:
    """Bounds-checked cursor: every read past the end is a MALFORMED error, never IndexError."""

    __slots__ = ("_buf", "_end", "_pos")

    def __init__(self, buf: bytes, start: int = 0, end: int | None = None) -> None:
        self._buf = buf
        self._pos = start
        self._end = len(buf) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise ClientHelloError(ErrorKind.MALFORMED, f"{what} overruns its container")
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def take_all(self) -> bytes:
        return self.take(self.remaining, "")

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, len_size: int, what: str) -> _Reader:
        """A length-prefixed sub-vector, returned as its own reader."""
        n = self.uint(len_size, f"{what} length")
        start = self._pos
        self.take(n, what)
        return _Reader(self._buf, start, start + n)


def _parse_body(body: bytes) -> tuple[str, tuple[str, ...]]:
    r = _Reader(body)
    r.take(2 + 32, "version and random")
    session_id = r.vector(1, "session_id")
    if session_id.remaining > 32:
        raise ClientHelloError(ErrorKind.MALFORMED, "session_id longer than 32 bytes")
    suites = r.vector(2, "cipher_suites")
    if suites.remaining < 2 or suites.remaining % 2:
        raise ClientHelloError(ErrorKind.MALFORMED, "bad cipher_suites length")
    if r.vector(1, "compression_methods").remaining < 1:
        raise ClientHelloError(ErrorKind.MALFORMED, "no compression methods")
    if r.remaining == 0:
        raise ClientHelloError(ErrorKind.NO_SNI, "ClientHello has no extensions")
    extensions = r.vector(2, "extensions")
    if r.remaining:
        raise ClientHelloError(ErrorKind.MALFORMED, "bytes after the extensions")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while extensions.remaining:
        ext_type = extensions.uint(2, "extension type")
        ext = extensions.vector(2, "extension")
        # Duplicates are forbidden (RFC 8446 4.2); a backend would refuse them too, and a
        # second SNI must not let a caller route on one name and be served under another.
        if ext_type in seen:
            raise ClientHelloError(ErrorKind.MALFORMED, f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            sni = _parse_server_name(ext)
        elif ext_type == _EXT_ALPN:
            alpn = _parse_alpn(ext)
    if sni is None:
        raise ClientHelloError(ErrorKind.NO_SNI, "no server_name extension")
    return sni, alpn


def _parse_server_name(ext: _Reader) -> str:
    names = ext.vector(2, "server_name_list")
    if ext.remaining:
        raise ClientHelloError(ErrorKind.MALFORMED, "bytes after server_name_list")
    if names.remaining == 0:
        raise ClientHelloError(ErrorKind.MALFORMED, "empty server_name_list")
    host: str | None = None
    while names.remaining:
        name_type = names.uint(1, "name_type")
        name = names.vector(2, "server name").take_all()
        if name_type != _NAME_TYPE_HOST:
            continue
        if host is not None:
            raise ClientHelloError(ErrorKind.MALFORMED, "more than one host_name")
        if not name or any(b < 0x21 or b > 0x7E for b in name):
            raise ClientHelloError(ErrorKind.MALFORMED, "host_name empty or not printable ASCII")
        host = name.decode("ascii")
    if host is None:
        raise ClientHelloError(ErrorKind.NO_SNI, "server_name has no host_name entry")
    return host


def _parse_alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2, "protocol_name_list")
    if ext.remaining:
        raise ClientHelloError(ErrorKind.MALFORMED, "bytes after protocol_name_list")
    out: list[str] = []
    while protocols.remaining:
        name = protocols.vector(1, "protocol name").take_all()
        if not name:
            raise ClientHelloError(ErrorKind.MALFORMED, "empty ALPN protocol name")
        out.append(name.decode("latin-1"))  # ALPN ids are opaque bytes; latin-1 is lossless
    if not out:
        raise ClientHelloError(ErrorKind.MALFORMED, "empty ALPN protocol list")
    return tuple(out)
