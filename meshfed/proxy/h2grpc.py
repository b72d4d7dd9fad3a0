"""One gRPC bidirectional-streaming call over HTTP/2, for the proxies' config stream.

The proxies make exactly one kind of gRPC call (DataplaneConfig.Stream, plaintext, no
compression), and grpcio costs a sidecar ~10 MiB of resident memory against a 40 MB budget
(docs/benchmarks.md); the pure-Python `h2` state machine costs ~1.6 MiB. The call's protocol
state (framing, status, flow control, GOAWAY, the send bound) is the sans-io
`meshfed.proxy.h2state.CallState`; this module is its asyncio driver: one connection per
call, a receive task, a send task that writes only as fast as the peer reads, and keepalive
pings (as the control planes' grpcio: every 15 s, 10 s to answer) so a silent peer is
noticed. Errors surface as `RpcError` with the gRPC status name, like grpcio's, and never as
h2 or socket exceptions. The control planes keep grpcio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

from meshfed.aio import wait_for
from meshfed.proxy.h2state import (
    MAX_UNSENT,
    STATUS_NAMES,
    WINDOW,
    CallFailed,
    CallState,
    Event,
    GrpcMessages,
    MessageReceived,
    PingAcked,
    RpcError,
    frame,
    split_target,
    status_name,
)

__all__ = [
    "STATUS_NAMES",
    "WINDOW",
    "BidiCall",
    "GrpcMessages",
    "RpcError",
    "frame",
    "split_target",
    "status_name",
]

READ_CHUNK = 64 * 1024
CLOSE_GRACE = 1.0  # seconds for our last frames to leave before the socket is dropped


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
        max_unsent: int = MAX_UNSENT,
    ) -> None:
        """`metadata`: extra request headers (lower-case names), e.g. `authorization`."""
        self._state = CallState(
            target, path, max_message=max_message, metadata=metadata, max_unsent=max_unsent
        )
        self.target = target
        self.path = path
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self.connect_timeout = connect_timeout
        self._inbox: deque[bytes] = deque()
        self._changed = asyncio.Event()  # something a reader or writer waits for happened
        self._to_send = asyncio.Event()
        self._ping_acked = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.pings_acked = 0

    @property
    def draining(self) -> bool:
        """The server said it is going away (gracefully): this call may still finish."""
        return self._state.draining

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
        self._state.start()
        self._tasks = [
            asyncio.create_task(self._receive(reader)),
            asyncio.create_task(self._send(writer)),
            asyncio.create_task(self._keepalive()),
        ]
        self._after()

    async def write(self, message: bytes) -> None:
        """Returns once the whole message is queued for the socket; a write cancelled before
        that leaves the stream intact or fails the call (never half a message on it)."""
        ticket = self._state.send_message(message)
        self._after()
        try:
            while not self._state.sent(ticket):
                self._check()
                self._changed.clear()
                await self._changed.wait()
        except asyncio.CancelledError:
            self._state.cancel(ticket)
            self._after()
            raise

    async def read(self) -> bytes | None:
        while not self._inbox:
            if self._state.error is not None:
                raise self._state.error
            if self._state.ended:
                return None
            self._changed.clear()
            await self._changed.wait()
        message = self._inbox.popleft()
        self._state.consumed(len(message))
        self._after()
        return message

    async def close(self) -> None:
        self._state.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._changed.set()
        writer = self._writer
        if writer is None:
            return
        if self._state.stuck:
            writer.transport.abort()
            return
        with contextlib.suppress(Exception):
            if not writer.is_closing():
                writer.write(self._state.data_to_send())
        writer.close()
        try:
            await wait_for(writer.wait_closed(), CLOSE_GRACE)
        except TimeoutError:  # the peer does not take our last frames: drop the connection
            writer.transport.abort()
        except OSError:
            pass

    # -- internals ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._state.error is not None:
            raise self._state.error
        if self._state.ended:
            raise RpcError("CANCELLED", "the call has ended")

    def _after(self, events: list[Event] | None = None) -> None:
        """Acts on what the state did: queue messages, count pings, drop a failed connection,
        wake the sender, readers and writers."""
        for event in [*(events or ()), *self._state.take_events()]:
            if isinstance(event, MessageReceived):
                self._inbox.append(event.data)
            elif isinstance(event, PingAcked):
                self.pings_acked += 1
                self._ping_acked.set()
            elif isinstance(event, CallFailed) and self._writer is not None:
                if self._state.stuck:
                    self._writer.transport.abort()
                else:
                    self._to_send.set()  # what h2 queued (a GOAWAY, a reset) goes first
        if self._state.unsent:
            self._to_send.set()
        self._changed.set()

    def _fail(self, error: RpcError) -> None:
        self._state.fail(error)
        self._after()
        if self._writer is not None:
            self._writer.close()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while self._state.error is None:
                try:
                    data = await reader.read(READ_CHUNK)
                except OSError as exc:
                    self._fail(RpcError("UNAVAILABLE", f"connection to {self.target} lost: {exc}"))
                    return
                if not data:
                    self._fail(RpcError("UNAVAILABLE", f"{self.target} closed the connection"))
                    return
                self._after(self._state.receive(data))
        finally:
            self._changed.set()

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        """Writes what the state has, no faster than the peer reads (drain)."""
        try:
            while True:
                data = self._state.data_to_send()
                if not data:
                    if self._state.error is not None:
                        writer.close()  # a failed call: its last frames are written
                        return
                    self._to_send.clear()
                    await self._to_send.wait()
                    continue
                if writer.is_closing():
                    return
                writer.write(data)
                self._changed.set()  # more of a message may have gone to h2
                await writer.drain()
        except OSError as exc:
            self._fail(RpcError("UNAVAILABLE", f"connection to {self.target} lost: {exc}"))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            self._ping_acked.clear()
            self._state.ping()
            self._after()
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
