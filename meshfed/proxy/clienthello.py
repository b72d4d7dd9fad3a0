"""Incremental, sans-io parser of a TLS ClientHello: feed bytes, get NEED_MORE or the result.

The zone ingress routes on SNI without terminating TLS, so it must read the ClientHello from
bytes it will later replay unchanged to the chosen endpoint. The parser therefore never owns
the bytes: the caller keeps everything it read and sends it all once the parse is done.

The hello may be split across several TLS records (RFC 8446 5.1 allows fragmenting handshake
messages) and across arbitrary TCP reads; both are handled. Every failure raises
`ClientHelloError` with a `kind` suitable as a metrics label, and the parser then stays failed.

The parser runs on every ingress connection, so the body is walked flat, with integer offsets
into the received bytes: per-field reader objects made a typical OpenSSL hello cost ~36 us, about
a fifth of the ingress's CPU per connection; the flat walk takes ~8 us
(benchmarks/clienthello_parse.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

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
# host_name bytes allowed in an SNI: printable ASCII without space.
_PRINTABLE_ASCII = bytes(range(0x21, 0x7F))


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
        self._header = bytearray()  # partial record header, only while split across reads
        self._record_left = 0  # payload bytes still to come in the current record
        self._record_end = 0  # stream offset just past the current record
        self._records = 0
        self._consumed = 0  # stream bytes looked at so far
        # Handshake-layer bytes, record framing removed; stays empty while each read holds the
        # whole hello, which is then parsed where it lies.
        self._handshake = bytearray()
        self._result: ClientHello | None = None
        self._error: ClientHelloError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Result:
        """Parses what has arrived; bytes after the hello are ignored (the caller replays them)."""
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result
        try:
            return self._feed(data if type(data) is bytes else bytes(data))
        except ClientHelloError as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> Result:
        pos = 0
        end = len(data)
        while pos < end:
            if self._record_left == 0:
                header = self._header
                if header or end - pos < _RECORD_HEADER:
                    # A header split across reads: gather it, checking each byte as it comes.
                    take = min(_RECORD_HEADER - len(header), end - pos)
                    header += data[pos : pos + take]
                    pos += take
                    self._consumed += take
                    if header[0] != _CONTENT_HANDSHAKE or (len(header) > 1 and header[1] != 3):
                        self._bad_header(header[0], header[1] if len(header) > 1 else 3)
                    if len(header) < _RECORD_HEADER:
                        break
                    length = (header[3] << 8) | header[4]
                    header.clear()
                else:
                    if data[pos] != _CONTENT_HANDSHAKE or data[pos + 1] != 3:
                        self._bad_header(data[pos], data[pos + 1])
                    length = (data[pos + 3] << 8) | data[pos + 4]
                    pos += _RECORD_HEADER
                    self._consumed += _RECORD_HEADER
                self._start_record(length)
                continue
            take = min(self._record_left, end - pos)
            hs = self._handshake
            buf: bytes | bytearray
            if hs:
                hs += data[pos : pos + take]
                buf, start, avail = hs, 0, len(hs)
            else:
                buf, start, avail = data, pos, take
            pos += take
            self._consumed += take
            self._record_left -= take
            hello_len = self._hello_length(buf, start, avail)
            if hello_len is not None and avail >= _HANDSHAKE_HEADER + hello_len:
                body = start + _HANDSHAKE_HEADER
                sni, alpn = _parse_body(buf, body, body + hello_len)
                self._result = ClientHello(sni=sni, alpn=alpn, record_bytes=self._record_end)
                return self._result
            if buf is data:
                hs += data[start:pos]
        return NEED_MORE

    def _bad_header(self, content_type: int, major: int) -> NoReturn:
        """Fails on the first wrong byte, so plain-text garbage fails on its first byte."""
        first = self._records == 0
        if content_type != _CONTENT_HANDSHAKE:
            if first:
                raise ClientHelloError(
                    ErrorKind.NOT_TLS, f"first byte 0x{content_type:02x} is not a TLS handshake"
                )
            raise ClientHelloError(
                ErrorKind.MALFORMED, f"record of type {content_type} inside the ClientHello"
            )
        raise ClientHelloError(
            ErrorKind.NOT_TLS if first else ErrorKind.MALFORMED,
            f"record version major {major} is not 3",
        )

    def _start_record(self, length: int) -> None:
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

    def _hello_length(self, buf: bytes | bytearray, start: int, avail: int) -> int | None:
        """Checks the handshake header at `buf[start]` (`avail` >= 1 bytes of it are there)."""
        if buf[start] != _HANDSHAKE_CLIENT_HELLO:
            raise ClientHelloError(
                ErrorKind.NOT_CLIENT_HELLO,
                f"handshake message type {buf[start]} is not ClientHello",
            )
        if avail < _HANDSHAKE_HEADER:
            return None
        length = (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3]
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


# The body walks below read `buf[pos:end]` with plain offsets. Each length read is preceded by a
# check that its bytes lie before `end`, and each vector's end is checked against its
# container's before anything inside it is read, so no index ever leaves the container.


def _overrun(what: str) -> ClientHelloError:
    return ClientHelloError(ErrorKind.MALFORMED, f"{what} overruns its container")


def _malformed(detail: str) -> ClientHelloError:
    return ClientHelloError(ErrorKind.MALFORMED, detail)


def _parse_body(buf: bytes | bytearray, pos: int, end: int) -> tuple[str, tuple[str, ...]]:
    """`buf[pos:end]` is the ClientHello body, at least `_MIN_HELLO_BODY` bytes long."""
    n = buf[pos + 34]  # after legacy_version and random: fixed size, within the minimum
    pos += 35 + n
    if pos > end:
        raise _overrun("session_id")
    if n > 32:
        raise _malformed("session_id longer than 32 bytes")
    if pos + 2 > end:
        raise _overrun("cipher_suites length")
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2 + n
    if pos > end:
        raise _overrun("cipher_suites")
    if n < 2 or n % 2:
        raise _malformed("bad cipher_suites length")
    if pos >= end:
        raise _overrun("compression_methods length")
    n = buf[pos]
    pos += 1 + n
    if pos > end:
        raise _overrun("compression_methods")
    if n < 1:
        raise _malformed("no compression methods")
    if pos == end:
        raise ClientHelloError(ErrorKind.NO_SNI, "ClientHello has no extensions")
    if pos + 2 > end:
        raise _overrun("extensions length")
    exts_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    pos += 2
    if exts_end > end:
        raise _overrun("extensions")
    if exts_end < end:
        raise _malformed("bytes after the extensions")
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while pos < exts_end:
        if pos + 4 > exts_end:
            raise _overrun("extension type" if pos + 2 > exts_end else "extension length")
        ext_type = (buf[pos] << 8) | buf[pos + 1]
        start = pos + 4
        pos = start + ((buf[pos + 2] << 8) | buf[pos + 3])
        if pos > exts_end:
            raise _overrun("extension")
        # Duplicates are forbidden (RFC 8446 4.2); a backend would refuse them too, and a
        # second SNI must not let a caller route on one name and be served under another.
        if ext_type in seen:
            raise _malformed(f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type == _EXT_SERVER_NAME:
            sni = _parse_server_name(buf, start, pos)
        elif ext_type == _EXT_ALPN:
            alpn = _parse_alpn(buf, start, pos)
    if sni is None:
        raise ClientHelloError(ErrorKind.NO_SNI, "no server_name extension")
    return sni, alpn


def _parse_server_name(buf: bytes | bytearray, pos: int, end: int) -> str:
    if pos + 2 > end:
        raise _overrun("server_name_list length")
    list_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    pos += 2
    if list_end > end:
        raise _overrun("server_name_list")
    if list_end < end:
        raise _malformed("bytes after server_name_list")
    if pos == list_end:
        raise _malformed("empty server_name_list")
    host: str | None = None
    while pos < list_end:
        name_type = buf[pos]
        if pos + 3 > list_end:
            raise _overrun("server name length")
        start = pos + 3
        pos = start + ((buf[pos + 1] << 8) | buf[pos + 2])
        if pos > list_end:
            raise _overrun("server name")
        if name_type != _NAME_TYPE_HOST:
            continue
        if host is not None:
            raise _malformed("more than one host_name")
        name = buf[start:pos]
        # translate() deletes the printable bytes in C: anything left is not printable.
        if not name or name.translate(None, _PRINTABLE_ASCII):
            raise _malformed("host_name empty or not printable ASCII")
        host = name.decode("ascii")
    if host is None:
        raise ClientHelloError(ErrorKind.NO_SNI, "server_name has no host_name entry")
    return host


def _parse_alpn(buf: bytes | bytearray, pos: int, end: int) -> tuple[str, ...]:
    if pos + 2 > end:
        raise _overrun("protocol_name_list length")
    list_end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    pos += 2
    if list_end > end:
        raise _overrun("protocol_name_list")
    if list_end < end:
        raise _malformed("bytes after protocol_name_list")
    out: list[str] = []
    while pos < list_end:
        start = pos + 1
        pos = start + buf[pos]
        if pos > list_end:
            raise _overrun("protocol name")
        if pos == start:
            raise _malformed("empty ALPN protocol name")
        out.append(buf[start:pos].decode("latin-1"))  # ALPN ids are opaque; latin-1 is lossless
    if not out:
        raise _malformed("empty ALPN protocol list")
    return tuple(out)
