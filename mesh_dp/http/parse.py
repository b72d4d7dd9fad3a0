"""HTTP/1.1 messages as events, parsed by httptools (llhttp). Pure: bytes in, events out.

A parser is fed whatever a connection reads and returns what it completed: a head
(`RequestHead` / `ResponseHead`), body bytes (chunked framing already removed), `END` when
the message is complete, and `Upgraded(rest)` when the connection stops being HTTP (an
Upgrade request, a 101 response): `rest` is what followed the head in the same read.

Requests are parsed strictly (llhttp's defaults: no leniencies), so request smuggling
shapes (Content-Length with Transfer-Encoding, a non-final chunked, bad chunk sizes) are
errors; `ProtocolError` carries the status the sidecar answers with (400, or 431 for a head
above `MAX_HEAD`). Trailers are parsed and dropped.

Responses need the request's method: llhttp cannot be told that a response to HEAD has no
body, so `ResponseParser` ends the message at its head itself and counts any bytes that
follow as `stray` (the connection is then not reused). A body delimited by the end of the
connection ends at `eof()`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import httptools

MAX_HEAD = 64 * 1024  # request line or status line plus headers

# RFC 9110 §7.6.1: the fields a proxy does not forward (headers.py applies the rule).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
    }
)
_CONNECTION_OPTIONS = frozenset({b"keep-alive", b"close", b"upgrade"})
# The fields a head is scanned for (lowercased): hop-by-hop, framing, Expect.
_NOTED = re.compile(
    rb"\r\n(" + b"|".join(sorted(HOP_BY_HOP | {b"content-length", b"expect"})) + rb"):([^\r]*)"
)


def _names_fields(values: list[bytes]) -> bool:
    """A `Connection` field names other fields (not only keep-alive, close, upgrade)."""
    return any(
        t.strip().lower() not in _CONNECTION_OPTIONS for v in values for t in v.split(b",") if t
    )


class Framing(enum.Enum):
    NONE = "none"  # no body
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"
    CLOSE = "close"  # until the connection ends (responses only)


class ProtocolError(Exception):
    """The peer broke HTTP/1.1; `status` is what a server answers (400 or 431)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str  # "1.0" or "1.1"
    headers: Headers
    keep_alive: bool
    upgrade: bool  # an Upgrade request (or CONNECT)
    framing: Framing
    length: int | None = None
    raw: bytes = b""  # the head as received (see `_Parser`), b"" when not known
    hop: tuple[bytes, ...] | None = None  # its hop-by-hop fields' names (None: not known)
    expect: bool | None = None  # it has an Expect field (None: not known)

    def header(self, name: bytes) -> bytes | None:
        return _get(self.headers, name)

    @property
    def expects_continue(self) -> bool:
        if self.expect is False:
            return False
        value = self.header(b"expect")
        return value is not None and value.strip().lower() == b"100-continue"


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: str
    headers: Headers
    keep_alive: bool
    framing: Framing
    length: int | None = None
    raw: bytes = b""
    hop: tuple[bytes, ...] | None = None

    def header(self, name: bytes) -> bytes | None:
        return _get(self.headers, name)


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()


@dataclass(slots=True)
class Upgraded:
    rest: bytes


Event = RequestHead | ResponseHead | bytes | _End | Upgraded


def _get(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _framing(te: bytes | None, cl: bytes | None, response: bool) -> tuple[Framing, int | None]:
    """The body's framing from the first Transfer-Encoding and Content-Length fields."""
    if te is not None:
        last = te.split(b",")[-1].strip().lower()
        if last == b"chunked":
            return Framing.CHUNKED, None
        if not response:  # llhttp refuses these requests already; kept for safety
            raise ProtocolError("Transfer-Encoding without a final chunked")
        return Framing.CLOSE, None
    if cl is not None:
        try:
            length = int(cl.strip())
        except ValueError:
            raise ProtocolError("bad Content-Length") from None
        if length < 0:
            raise ProtocolError("bad Content-Length")
        return (Framing.LENGTH if length else Framing.NONE), length
    return (Framing.CLOSE if response else Framing.NONE), None


class _Parser:
    """What requests and responses share: header collection with a size cap, events.

    A message whose first byte is the first byte of a read (the usual case: one message
    per read) keeps its head's bytes as received (`raw`), and the positions of its
    hop-by-hop fields (`hop`), so a proxy can forward the head without rebuilding it
    (headers.py); `hop` is None when a `Connection` field names other fields."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.upgraded = False  # after a 101 or CONNECT: the bytes are no longer HTTP
        self._headers: Headers = []
        self._size = 0
        self._in_message = False
        self._data = b""  # what is being fed
        self._fresh = False  # nothing of `_data` was consumed yet
        self._raw_src: bytes | None = None  # the read the message began at the start of
        self._in_head = False  # a head began and has not ended
        self._head_fed = 0  # bytes read since it began (an upper bound of its size)
        self._line = 0  # the size of the request or status line
        self._expect: bool | None = None  # the head has an Expect field (None: not known)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = []
        self._size = 0
        self._in_message = True
        self._raw_src = self._data if self._fresh else None
        self._fresh = False
        self._in_head = True
        self._head_fed = 0
        self._line = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))  # sizes are checked per read (_parse)

    def header_value(self, name: bytes) -> bytes | None:
        return _get(self._headers, name)

    def _head_done(self) -> tuple[Framing, int | None, bytes, tuple[bytes, ...] | None]:
        """At the end of a head: its size checked, its framing, and (when the message began
        at the start of this read) its bytes as received with its hop-by-hop field names.
        The fields that matter are found in the received bytes by C-level searches rather
        than field by field."""
        self._in_head = False
        data = self._data
        headers = self._headers
        response = isinstance(self, ResponseParser)
        end = data.find(b"\r\n\r\n") if self._raw_src is data else -1
        if end < 0 or data[:1] in (b"\r", b"\n"):
            size = sum(len(n) + len(v) + 4 for n, v in headers) + self._line
            if size > MAX_HEAD:
                raise ProtocolError(f"message head larger than {MAX_HEAD} bytes", 431)
            te, cl = _get(headers, b"transfer-encoding"), _get(headers, b"content-length")
            self._expect = None
            return (*_framing(te, cl, response), b"", None)
        raw = data[: end + 4]
        if len(raw) > MAX_HEAD:
            raise ProtocolError(f"message head larger than {MAX_HEAD} bytes", 431)
        fields: dict[bytes, bytes] = {}
        for name, value in _NOTED.findall(raw.lower()):
            fields[name] = value if name not in fields else fields[name] + b"," + value
        hop: tuple[bytes, ...] | None = tuple(n for n in fields if n in HOP_BY_HOP)
        te, cl = fields.get(b"transfer-encoding"), fields.get(b"content-length")
        if cl is not None and b"," in cl:
            cl = cl.split(b",", 1)[0]  # the first one, as `_get` reads it
        connection = fields.get(b"connection")
        if (
            connection is not None
            and connection.strip() not in _CONNECTION_OPTIONS
            and (_names_fields([connection]))
        ):
            hop = None  # it names other fields: headers.py's general rule
        self._expect = b"expect" in fields
        return (*_framing(te, cl, response), raw if hop is not None else b"", hop)

    def on_body(self, body: bytes) -> None:
        self._fresh = False
        self.events.append(body)

    def on_message_complete(self) -> None:
        self._fresh = False
        self._in_message = False
        self.events.append(END)

    @property
    def in_message(self) -> bool:
        """The first byte of a message came, its end has not (requestHeadersTimeout)."""
        return self._in_message

    def _take(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    def _parse(
        self,
        parser: httptools.HttpRequestParser | httptools.HttpResponseParser,
        data: bytes,
        what: str,
    ) -> list[Event]:
        """Feeds httptools; an Upgrade hands the rest of `data` over as raw bytes."""
        self._data = data
        self._fresh = True
        try:
            parser.feed_data(data)
            if self._in_head:
                self._head_fed += len(data)
                if self._head_fed > MAX_HEAD:
                    raise ProtocolError(f"message head larger than {MAX_HEAD} bytes", 431)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            self.events.append(Upgraded(data[int(exc.args[0]) :]))
        except httptools.HttpParserCallbackError as exc:
            raise _callback_error(exc) from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(f"malformed HTTP{what}: {exc}") from None
        finally:
            self._data = b""
        return self._take()


def _callback_error(exc: httptools.HttpParserError) -> ProtocolError:
    cause = exc.__context__
    if isinstance(cause, ProtocolError):
        return cause
    return ProtocolError(f"malformed HTTP: {exc}")


class RequestParser(_Parser):
    """Requests of one connection, in order (pipelined ones too)."""

    def __init__(self) -> None:
        super().__init__()
        self._url = b""
        self._p = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._line += len(url)
        self._url += url

    def on_headers_complete(self) -> None:
        p = self._p
        framing, length, raw, hop = self._head_done()
        self.events.append(
            RequestHead(
                method=p.get_method(),
                target=self._url,
                version=p.get_http_version(),
                headers=self._headers,
                keep_alive=p.should_keep_alive(),
                upgrade=p.should_upgrade(),
                framing=framing,
                length=length,
                raw=raw,
                hop=hop,
                expect=self._expect,
            )
        )

    def feed(self, data: bytes) -> list[Event]:
        """The events `data` completes; raises ProtocolError (the events before it are lost:
        the connection ends with the error)."""
        if self.upgraded:
            return [data]
        return self._parse(self._p, data, "")

    def eof(self) -> list[Event]:
        """The connection ended: fine between requests, an error inside one."""
        if self._in_message and not self.upgraded:
            raise ProtocolError("connection closed inside a request")
        return []


@dataclass(slots=True)
class _ResponseState:
    head: ResponseHead | None = None
    done: bool = False
    stray: int = 0
    skip_body: bool = False


class ResponseParser(_Parser):
    """The response(s) to one request: any 1xx, then the final one."""

    def __init__(self, method: bytes) -> None:
        super().__init__()
        self._method = method
        self._status = b""
        self._p = httptools.HttpResponseParser(self)
        self.state = _ResponseState()

    def reset(self, method: bytes) -> bool:
        """Readies this parser for the next response on its connection, instead of a new
        one; False when the last response did not end cleanly (then use a new parser)."""
        st = self.state
        if not st.done or st.stray or self.upgraded or self._in_message:
            return False
        if self._method == b"HEAD" or method == b"HEAD":
            return False  # llhttp still waits for the body the HEAD response announced
        self._method = method
        self.state = _ResponseState()
        return True

    @property
    def stray(self) -> int:
        """Bytes that followed the response (a server bug): the connection is not reused."""
        return self.state.stray

    @property
    def done(self) -> bool:
        return self.state.done

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._status = b""

    def on_status(self, status: bytes) -> None:
        self._line += len(status)
        self._status += status

    def on_headers_complete(self) -> None:
        p = self._p
        status = p.get_status_code()
        no_body = status < 200 or status in (204, 304) or self._method == b"HEAD"
        framing, length, raw, hop = self._head_done()
        if no_body:
            framing, length = Framing.NONE, None
            cl = self.header_value(b"content-length")
            if cl is not None and cl.strip().isdigit():
                length = int(cl.strip())
        head = ResponseHead(
            status=status,
            reason=self._status,
            version=p.get_http_version(),
            headers=self._headers,
            keep_alive=p.should_keep_alive(),
            framing=framing,
            length=length,
            raw=raw,
            hop=hop,
        )
        self.events.append(head)
        if status >= 200:
            self.state.head = head
        if self._method == b"HEAD" and status >= 200:
            # llhttp would wait for Content-Length bytes: end the message here.
            self.state.skip_body = True
            self.events.append(END)
            self.state.done = True

    def on_body(self, body: bytes) -> None:
        self._fresh = False
        if self.state.skip_body or self.state.done:
            self.state.stray += len(body)
            return
        self.events.append(body)

    def on_message_complete(self) -> None:
        self._fresh = False
        self._in_message = False
        if self.state.skip_body:
            self.state.skip_body = False
            return
        if self.state.done:
            return
        self.events.append(END)
        if self.state.head is not None:
            self.state.done = True

    def feed(self, data: bytes) -> list[Event]:
        if self.upgraded:
            return [data]
        if self.state.done and not self.state.skip_body:
            self.state.stray += len(data)
            return []
        return self._parse(self._p, data, " response")

    def eof(self) -> list[Event]:
        """The upstream closed: ends a body delimited by the close; an error mid-message."""
        if self.upgraded or self.state.done:
            return []
        head = self.state.head
        if head is not None and head.framing is Framing.CLOSE:
            self.state.done = True
            return [END]
        if self._in_message or head is not None:
            raise ProtocolError("upstream closed the connection inside a response")
        return []
