"""One gRPC bidirectional-streaming call over HTTP/2, for the proxies' config stream.

The proxies make exactly one kind of gRPC call (DataplaneConfig.Stream, plaintext, no
compression), and grpcio costs a sidecar ~10 MiB of resident memory against a 40 MB budget
(docs/benchmarks.md); the pure-Python `h2` state machine costs ~1.6 MiB. This module speaks
the gRPC-over-HTTP/2 wire format (length-prefixed messages, status in trailers) on one
connection per call, with HTTP/2 flow control both ways and keepalive pings (as the control
planes' grpcio: every 15 s, 10 s to answer) so a silent peer is noticed. Errors surface as
`RpcError` with the gRPC status name, like grpcio's, and never as h2 or socket exceptions.
The control planes keep grpcio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
from collections import deque
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from meshfed.aio import wait_for

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
READ_CHUNK = 64 * 1024


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


class BidiCall:
    """A streaming call on its own HTTP/2 connection. `read()` returns None once the server
    ends the call with status OK and raises RpcError for anything else."""

    def __init__(
        self,
        target: str,
        path: str,
        *,
        max_message: int,
        keepalive: float = 15.0,
        keepalive_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`metadata`: extra request headers (lower-case names), e.g. `authorization`."""
        for name, value in metadata:
            if name != name.lower() or name.startswith(":") or not _header_safe(name + value):
                raise ValueError(f"invalid gRPC metadata {name!r}")
        self.target = target
        self.path = path
        self.metadata = tuple(metadata)
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.connect_timeout = connect_timeout
        self._messages = GrpcMessages(max_message)
        self._inbox: deque[bytes] = deque()
        self._queued = 0  # bytes of complete messages in _inbox, not read yet
        self._unacked = 0  # received DATA bytes not yet given back to the peer's windows
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._ended = False  # trailers with status OK arrived
        self._error: RpcError | None = None
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._stream_id = 0
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ping_acked = asyncio.Event()
        self.pings_acked = 0

    async def start(self) -> None:
        host, port = split_target(self.target)
        try:
            reader, writer = await wait_for(
                asyncio.open_connection(host, port), self.connect_timeout
            )
        except TimeoutError:
            raise RpcError("UNAVAILABLE", f"connecting to {self.target} timed out") from None
        except (OSError, UnicodeError) as exc:  # UnicodeError: a host IDNA cannot encode
            raise RpcError("UNAVAILABLE", f"cannot connect to {self.target}: {exc}") from None
        self._writer = writer
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
        self._stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            self._stream_id,
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
        self._flush()
        self._tasks = [
            asyncio.create_task(self._receive(reader)),
            asyncio.create_task(self._keepalive()),
        ]

    async def write(self, message: bytes) -> None:
        data = frame(message)
        total = len(data)
        while data:
            self._check()
            window = min(
                self._conn.local_flow_control_window(self._stream_id),
                self._conn.max_outbound_frame_size,
            )
            if window <= 0:
                self._writable.clear()
                try:
                    await self._writable.wait()
                except asyncio.CancelledError:
                    if len(data) < total:  # half a message is on the wire: the call is lost
                        self._abandon()
                    raise
                continue
            self._conn.send_data(self._stream_id, data[:window])
            data = data[window:]
            self._flush()
        assert self._writer is not None
        try:
            await self._writer.drain()
        except OSError as exc:
            self._fail(RpcError("UNAVAILABLE", f"connection to {self.target} lost: {exc}"))
            self._check()

    async def read(self) -> bytes | None:
        while not self._inbox:
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            self._readable.clear()
            await self._readable.wait()
        message = self._inbox.popleft()
        self._queued -= len(message)
        self._give_back_window()
        self._flush()
        return message

    async def close(self) -> None:
        if self._error is None and not self._ended:
            self._error = RpcError("CANCELLED", "the call was closed")
        self._readable.set()
        self._writable.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._conn.close_connection()
                self._flush()
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    # -- internals ---------------------------------------------------------------------------

    def _give_back_window(self) -> None:
        """Window updates follow what the application reads: while complete messages worth
        half a window wait unread, the peer's window is not replenished, so a control plane
        cannot queue unbounded data in a proxy that is busy (a partial message is bounded by
        max_message on its own, and must not hold the window back, or it could not finish)."""
        if self._unacked and self._queued < WINDOW // 2 and self._error is None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self._conn.acknowledge_received_data(self._unacked, self._stream_id)
            self._unacked = 0

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._ended:
            raise RpcError("CANCELLED", "the call has ended")

    def _abandon(self) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self._conn.reset_stream(self._stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        self._fail(RpcError("CANCELLED", "a write was cancelled in the middle of a message"))

    def _fail(self, error: RpcError) -> None:
        if self._error is None and not self._ended:
            self._error = error
        self._readable.set()
        self._writable.set()
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while self._error is None:
                try:
                    data = await reader.read(READ_CHUNK)
                except OSError as exc:
                    self._fail(RpcError("UNAVAILABLE", f"connection to {self.target} lost: {exc}"))
                    return
                if not data:
                    self._fail(RpcError("UNAVAILABLE", f"{self.target} closed the connection"))
                    return
                try:
                    events = self._conn.receive_data(data)
                    for event in events:
                        self._handle(event)
                except h2.exceptions.ProtocolError as exc:
                    if self._conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                        # A GOAWAY followed by more frames in the same read: h2 raises on
                        # the frames after it, dropping the GOAWAY's event.
                        error = f"{self.target} closed the connection (GOAWAY)"
                        self._fail(RpcError("UNAVAILABLE", error))
                    else:
                        error = f"HTTP/2 protocol error from {self.target}: {exc}"
                        self._fail(RpcError("INTERNAL", error))
                except RpcError as exc:
                    self._fail(exc)
                except Exception as exc:  # e.g. a header h2 cannot decode: still the peer's fault
                    self._fail(RpcError("INTERNAL", f"bad response from {self.target}: {exc!r}"))
                self._flush()
        finally:
            self._readable.set()
            self._writable.set()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._response(dict(_text_headers(event.headers)))
        elif isinstance(event, h2.events.DataReceived):
            self._unacked += event.flow_controlled_length or 0
            messages = self._messages.feed(event.data or b"")
            self._inbox.extend(messages)
            self._queued += sum(len(m) for m in messages)
            self._give_back_window()
            self._readable.set()
        elif isinstance(event, h2.events.TrailersReceived):
            self._trailers(dict(_text_headers(event.headers)))
        elif isinstance(event, h2.events.StreamEnded):
            if not self._ended and self._error is None:
                raise RpcError("INTERNAL", "the server ended the call without a status")
        elif isinstance(event, h2.events.StreamReset):
            # gRPC's mapping: a refused stream never started, so trying again may work.
            refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
            raise RpcError(
                "UNAVAILABLE" if refused else "CANCELLED",
                f"the server reset the call (HTTP/2 code {event.error_code})",
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise RpcError(
                "UNAVAILABLE",
                f"{self.target} closed the connection (GOAWAY, HTTP/2 code {event.error_code})",
            )
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._writable.set()
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings_acked += 1
            self._ping_acked.set()

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
        self._ended = True
        self._readable.set()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            self._ping_acked.clear()
            self._conn.ping(os.urandom(8))
            self._flush()
            try:
                await wait_for(self._ping_acked.wait(), self.keepalive_timeout)
            except TimeoutError:
                self._fail(
                    RpcError(
                        "UNAVAILABLE",
                        f"{self.target} did not answer a keepalive ping within "
                        f"{self.keepalive_timeout:g}s",
                    )
                )
                return


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
