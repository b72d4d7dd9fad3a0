"""The state of one gRPC bidirectional-streaming call over HTTP/2, without I/O (sans-io).

Bytes from the peer go in (`receive`), events come out (a message, the call's end, its
failure, a ping answered, the peer draining the connection), and the bytes to write are taken
with `data_to_send`. It owns everything but the socket: the h2 connection, gRPC's
length-prefixed message framing, the status in trailers (or a trailers-only answer), HTTP/2
flow control both ways, GOAWAY, and a bound on what waits to be written.
`meshfed.proxy.h2grpc.BidiCall` drives it over asyncio; tests drive it directly.

Two behaviours h2 alone would get wrong:
- A graceful GOAWAY (NO_ERROR, our stream at or below its last stream id) lets the open call
  finish, as RFC 9113 section 6.8 allows: h2 treats any received GOAWAY as the end of the
  connection (it refuses every later frame and drops queued data), so GOAWAY frames are taken
  out of the byte stream before h2 sees them and handled here.
- A peer that keeps sending frames h2 answers on its own (PING, SETTINGS) while it does not
  read would grow the bytes waiting to be written without bound: past `max_unsent` the call
  fails (`stuck`) and the driver drops the connection. The call's own DATA is only handed to
  h2 while less than `SEND_MARK` waits, so it never counts towards that bound on its own.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

# grpc status codes by number (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
# HTTP status -> gRPC status when a response is not gRPC at all (the gRPC HTTP/2 spec).
_HTTP_TO_GRPC = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
WINDOW = 1 << 20  # receive window per stream and connection: a large config in few round trips
SEND_MARK = 64 * 1024  # our DATA goes to h2 only while less than this waits to be written
MAX_UNSENT = 1 << 20  # more than this waiting to be written: the peer does not read
_FRAME_HEADER = 9
_GOAWAY = 0x7
_MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE we announce (h2's default, never raised here)


class RpcError(Exception):
    """The call failed; `code` is the gRPC status name (UNAVAILABLE, INVALID_ARGUMENT, ...)."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def status_name(value: str | None) -> str:
    try:
        return STATUS_NAMES[int(value or "")]
    except (ValueError, IndexError):
        return "UNKNOWN"


def split_target(target: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); RpcError(INVALID_ARGUMENT) otherwise."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RpcError("INVALID_ARGUMENT", f"control plane address {target!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


class GrpcMessages:
    """Splits a gRPC data stream into messages (1-byte compressed flag, 4-byte length, body).

    Pure: fed with DATA payloads in order, returns the complete messages so far."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 5:
            if self._buf[0] != 0:
                raise RpcError("INTERNAL", "compressed message, but no compression was agreed")
            size = int.from_bytes(self._buf[1:5], "big")
            if size > self.max_message:
                raise RpcError(
                    "RESOURCE_EXHAUSTED",
                    f"message of {size} bytes is larger than the limit of {self.max_message}",
                )
            if len(self._buf) < 5 + size:
                break
            out.append(bytes(self._buf[5 : 5 + size]))
            del self._buf[: 5 + size]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageReceived:
    data: bytes


@dataclass(frozen=True)
class CallEnded:
    """The server ended the call with status OK."""


@dataclass(frozen=True)
class CallFailed:
    error: RpcError


@dataclass(frozen=True)
class PingAcked:
    pass


@dataclass(frozen=True)
class Draining:
    """A graceful GOAWAY: this call may finish, no new call may use the connection."""

    last_stream_id: int


Event = MessageReceived | CallEnded | CallFailed | PingAcked | Draining


@dataclass(frozen=True)
class _GoAway:
    last_stream_id: int
    error_code: int


class _GoAwaySplitter:
    """Cuts GOAWAY frames out of the server's byte stream (everything else goes to h2 as is,
    in order). A frame longer than we allow, or a malformed GOAWAY, goes to h2 too, which
    raises the protocol error it deserves."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes | _GoAway]:
        self._buf += data
        out: list[bytes | _GoAway] = []
        start = 0  # first byte not yet handed out
        pos = 0
        buf = self._buf
        while len(buf) - pos >= _FRAME_HEADER:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            if length > _MAX_FRAME:
                pos = len(buf)  # h2 refuses it (FRAME_SIZE_ERROR): no point waiting for it
                break
            end = pos + _FRAME_HEADER + length
            if len(buf) < end:
                break
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            if buf[pos + 3] == _GOAWAY and length >= 8 and stream == 0:
                if pos > start:
                    out.append(bytes(buf[start:pos]))
                body = pos + _FRAME_HEADER
                last = int.from_bytes(buf[body : body + 4], "big") & 0x7FFFFFFF
                out.append(_GoAway(last, int.from_bytes(buf[body + 4 : body + 8], "big")))
                start = end
            pos = end
        if pos > start:
            out.append(bytes(buf[start:pos]))
        del self._buf[:pos]
        return out


def _code_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


class CallState:
    """One call on its own HTTP/2 connection, as a state machine.

    `start()` queues the connection preface and the request headers; `send_message` queues a
    message (it goes out as the peer's windows allow); `receive` takes the peer's bytes and
    returns what happened; `consumed` tells how much the application has read (the peer's
    window follows it); `data_to_send` gives what to write now. After a `CallFailed` event
    the call is over; `stuck` says the connection should be dropped rather than closed."""

    def __init__(
        self,
        target: str,
        path: str,
        *,
        max_message: int,
        metadata: Sequence[tuple[str, str]] = (),
        max_unsent: int = MAX_UNSENT,
    ) -> None:
        """`metadata`: extra request headers (lower-case names), e.g. `authorization`."""
        for name, value in metadata:
            if name != name.lower() or name.startswith(":") or not _header_safe(name + value):
                raise ValueError(f"invalid gRPC metadata {name!r}")
        self.target = target
        self.path = path
        self.metadata = tuple(metadata)
        self.max_unsent = max_unsent
        self.error: RpcError | None = None
        self.ended = False  # trailers with status OK arrived
        self.draining = False  # a graceful GOAWAY arrived
        self.stuck = False  # failed because the peer does not read what we send
        self.stream_id = 0
        self._messages = GrpcMessages(max_message)
        self._frames = _GoAwaySplitter()
        self._queued = 0  # bytes of complete messages received, not consumed yet
        self._unacked = 0  # received DATA bytes not yet given back to the peer's windows
        # (start offset, framed message or its rest) not yet in h2
        self._outbox: deque[tuple[int, memoryview]] = deque()
        self._handed = 0  # bytes of framed messages handed to h2 so far
        self._queued_out = 0  # bytes of framed messages ever queued
        self._out = bytearray()  # bytes to write
        self._events: list[Event] = []
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )

    @property
    def over(self) -> bool:
        return self.error is not None or self.ended

    @property
    def unsent(self) -> int:
        """Bytes waiting to be written (not counting messages not yet handed to h2)."""
        return len(self._out)

    def start(self) -> None:
        conn = self._conn
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(WINDOW - 65535)
        self.stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            self.stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", self.path),
                (":authority", self.target),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "meshfed-h2grpc"),
                *self.metadata,
            ],
        )
        self._collect()

    # -- sending ----------------------------------------------------------------------------

    def send_message(self, message: bytes) -> int:
        """Queues one message; returns its ticket for `sent` and `cancel`. RpcError when the
        call is over."""
        self._check()
        data = frame(message)
        self._outbox.append((self._queued_out, memoryview(data)))
        self._queued_out += len(data)
        self._pump()
        return self._queued_out

    def sent(self, ticket: int) -> bool:
        """The message of `ticket` is all in h2's hands (bytes to write, in order)."""
        return self._handed >= ticket

    def cancel(self, ticket: int) -> None:
        """The writer of `ticket` gave up: unsent and last, the message is dropped; half sent
        (or with later messages queued behind it), the stream is reset: a peer cannot find the
        next message after half of one."""
        if self.sent(ticket) or self.over:
            return
        start, rest = self._outbox[-1]
        if ticket == self._queued_out and len(rest) == ticket - start:
            self._outbox.pop()
            self._queued_out = start
            return
        with contextlib.suppress(h2.exceptions.H2Error):
            self._conn.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
        self._collect()
        self.fail(RpcError("CANCELLED", "a write was cancelled in the middle of a message"))

    def ping(self) -> None:
        if self.over:
            return
        self._conn.ping(os.urandom(8))
        self._collect()

    def data_to_send(self) -> bytes:
        """Everything to write now (then more of the queued messages, if the windows allow)."""
        data = bytes(self._out)
        self._out.clear()
        self._pump()
        return data

    def close(self) -> None:
        """Closing from our side: CANCELLED unless the call is over; a GOAWAY to write."""
        if not self.over:
            self.error = RpcError("CANCELLED", "the call was closed")
        with contextlib.suppress(h2.exceptions.H2Error):
            self._conn.close_connection()
        self._collect()

    def fail(self, error: RpcError) -> None:
        """Records the call's failure (the first one; none once the call ended OK)."""
        if not self.over:
            self.error = error
            self._events.append(CallFailed(error))

    # -- receiving --------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        if self.error is None:
            try:
                for part in self._frames.feed(data):
                    if isinstance(part, _GoAway):
                        self._goaway(part)
                    else:
                        for event in self._conn.receive_data(part):
                            self._handle(event)
            except h2.exceptions.ProtocolError as exc:
                self.fail(RpcError("INTERNAL", f"HTTP/2 protocol error from {self.target}: {exc}"))
            except RpcError as exc:
                self.fail(exc)
            except Exception as exc:  # e.g. a header h2 cannot decode: still the peer's fault
                self.fail(RpcError("INTERNAL", f"bad response from {self.target}: {exc!r}"))
            self._collect()
        events, self._events = self._events, []
        return events

    def consumed(self, size: int) -> None:
        """The application read a message of `size` bytes."""
        self._queued -= size
        self._give_back_window()
        self._collect()

    def take_events(self) -> list[Event]:
        """Events from calls other than `receive` (a failure from `cancel`, `consumed` or a
        full send buffer)."""
        events, self._events = self._events, []
        return events

    # -- internals --------------------------------------------------------------------------

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.ended:
            raise RpcError("CANCELLED", "the call has ended")

    def _pump(self) -> None:
        """Hands queued message bytes to h2 as far as the windows and SEND_MARK allow."""
        while self._outbox and not self.over and len(self._out) < SEND_MARK:
            window = min(
                self._conn.local_flow_control_window(self.stream_id),
                self._conn.max_outbound_frame_size,
                SEND_MARK,
            )
            if window <= 0:
                break
            start, head = self._outbox[0]
            chunk = bytes(head[:window])
            self._conn.send_data(self.stream_id, chunk)
            self._handed += len(chunk)
            if len(chunk) == len(head):
                self._outbox.popleft()
            else:
                self._outbox[0] = (start, head[len(chunk) :])
            self._collect()

    def _collect(self) -> None:
        self._out += self._conn.data_to_send()
        if len(self._out) > self.max_unsent and not self.stuck:
            self.stuck = True
            self.fail(
                RpcError(
                    "UNAVAILABLE",
                    f"{self.target} does not read what we send ({len(self._out)} bytes "
                    f"waiting, over the limit of {self.max_unsent})",
                )
            )

    def _give_back_window(self) -> None:
        """Window updates follow what the application reads: while complete messages worth
        half a window wait unread, the peer's window is not replenished, so a control plane
        cannot queue unbounded data in a proxy that is busy (a partial message is bounded by
        max_message on its own, and must not hold the window back, or it could not finish)."""
        if self._unacked and self._queued < WINDOW // 2 and self.error is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._conn.acknowledge_received_data(self._unacked, self.stream_id)
            self._unacked = 0

    def _goaway(self, goaway: _GoAway) -> None:
        graceful = goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
        if graceful and goaway.last_stream_id >= self.stream_id:
            if not self.draining:
                self.draining = True
                self._events.append(Draining(goaway.last_stream_id))
            return
        code = _code_name(goaway.error_code)
        raise RpcError("UNAVAILABLE", f"{self.target} closed the connection (GOAWAY, {code})")

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._response(dict(_text_headers(event.headers)))
        elif isinstance(event, h2.events.DataReceived):
            self._unacked += event.flow_controlled_length or 0
            messages = self._messages.feed(event.data or b"")
            self._queued += sum(len(m) for m in messages)
            self._events.extend(MessageReceived(m) for m in messages)
            self._give_back_window()
        elif isinstance(event, h2.events.TrailersReceived):
            self._trailers(dict(_text_headers(event.headers)))
        elif isinstance(event, h2.events.StreamEnded):
            if not self.over:
                raise RpcError("INTERNAL", "the server ended the call without a status")
        elif isinstance(event, h2.events.StreamReset):
            # gRPC's mapping: a refused stream never started, so trying again may work.
            refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            raise RpcError(
                "UNAVAILABLE" if refused else "CANCELLED",
                f"the server reset the call (HTTP/2 code {event.error_code})",
            )
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._pump()
        elif isinstance(event, h2.events.PingAckReceived):
            self._events.append(PingAcked())

    def _response(self, headers: dict[str, str]) -> None:
        status = headers.get(":status", "")
        if "grpc-status" in headers:  # trailers-only: the call failed before any message
            self._trailers(headers)
            return
        if status != "200":
            known = status.isascii() and status.isdigit()
            code = _HTTP_TO_GRPC.get(int(status) if known else 0, "UNKNOWN")
            raise RpcError(code, f"{self.target} answered HTTP {status}, not gRPC")
        if not headers.get("content-type", "").startswith("application/grpc"):
            raise RpcError("UNKNOWN", f"{self.target} answered {headers.get('content-type')!r}")

    def _trailers(self, headers: dict[str, str]) -> None:
        code = status_name(headers.get("grpc-status"))
        message = urllib.parse.unquote(headers.get("grpc-message", ""))
        if self._messages.pending:
            raise RpcError("INTERNAL", "the call ended inside a message")
        if code != "OK":
            raise RpcError(code, message)
        if not self.over:
            self.ended = True
            self._events.append(CallEnded())


def _header_safe(text: str) -> bool:
    """Printable ASCII only: what gRPC allows in a text metadata value (no CR/LF smuggling)."""
    return all(" " <= c <= "~" for c in text)


def _text_headers(headers: object) -> list[tuple[str, str]]:
    """h2 gives str pairs with header_encoding set; typed loosely upstream."""
    out: list[tuple[str, str]] = []
    for name, value in headers or []:  # type: ignore[attr-defined]
        n = name.decode() if isinstance(name, bytes) else str(name)
        v = value.decode() if isinstance(value, bytes) else str(value)
        out.append((n, v))
    return out
