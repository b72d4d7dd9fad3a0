"""One HTTP/1.1 connection as a stream of events (the asyncio edge of `parse`).

The protocol parses in `data_received` and queues the events; the pipeline awaits them with
`next()`. Flow control both ways: reading pauses while more than `HIGH_WATER` body bytes
wait in the queue (a client pipelining or uploading faster than the upstream takes it), and
`drain()` waits while the transport's write buffer is above its high-water mark. After an
Upgrade (`Upgraded` event) the parser is out of the way and reads arrive as raw bytes.
"""

from __future__ import annotations

import asyncio
import collections
import mmap
from collections.abc import Callable
from typing import Protocol, cast

from mesh_dp.http.parse import END, Event, ProtocolError, Upgraded
from mesh_dp.relay import WRITE_HIGH_WATER, WRITE_LOW_WATER, ByteCounter
from meshfed.aio import wait_for

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class Parser(Protocol):
    upgraded: bool

    def feed(self, data: bytes) -> list[Event]: ...

    def eof(self) -> list[Event]: ...


# One read buffer for every connection: a read is copied out of it before anything else
# runs. As a BufferedProtocol, a TLS connection's plaintext is decrypted straight into it
# (the event loop's TLS otherwise allocates 256 KiB per read attempt). Anonymous memory, not
# a bytearray (zero-filled: 256 KiB resident in every sidecar): a page of it becomes
# resident once a read reaches it (decision 188).
_READ = memoryview(mmap.mmap(-1, 256 * 1024))


class Conn(asyncio.BufferedProtocol):
    """`downstream`: the accepted side (its bytes count into `counter` as received)."""

    def __init__(self, parser: Parser | None, *, counter: ByteCounter | None = None) -> None:
        self.parser = parser
        self.counter = counter
        self.transport: asyncio.Transport | None = None
        self.events: collections.deque[Event] = collections.deque()
        self.queued = 0  # body bytes in `events`
        self.error: ProtocolError | None = None
        self.eof = False
        self.lost = False
        self.unsolicited = False  # bytes arrived with no parser: not reusable
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = False
        self.on_lost: list[Callable[[Conn], None]] = []
        self.opened_at = 0.0  # when an upstream connection was opened (maxConnectionDuration)
        # The callback path (fast.py): called instead of waking a waiting coroutine, and
        # when the transport can take writes again.
        self.notify: Callable[[], None] | None = None
        self.writable: Callable[[], None] | None = None
        self.kept: Parser | None = None  # the last response parser, for the next response
        self.peer: str | None = None  # the caller's SPIFFE ID (an inbound's, for access logs)

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self.transport = cast(asyncio.Transport, transport)
        t.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self.counter is not None:
            self.counter.received += len(data)
        parser = self.parser
        if parser is None:
            self.unsolicited = True
            return
        if self.error is not None:
            return
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            self.error = exc
            self._wake()
            return
        for ev in events:
            if isinstance(ev, bytes):
                self.queued += len(ev)
            elif isinstance(ev, Upgraded) and ev.rest:
                self.queued += len(ev.rest)
        self.events.extend(events)
        if self.queued > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        if self.parser is not None and self.error is None:
            try:
                self.events.extend(self.parser.eof())
            except ProtocolError as exc:
                self.error = exc
        self._wake()
        # Keep writing: a client may half-close after its request (TLS cannot half-close).
        return self.transport is None or self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.eof = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        for callback in self.on_lost:
            callback(self)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        if self.writable is not None:
            self.writable()

    @property
    def write_paused(self) -> bool:
        """The transport's write buffer is above its high-water mark."""
        return self._drain is not None and not self._drain.done()

    # --- for the pipeline -----------------------------------------------------------------

    def _wake(self) -> None:
        if self.notify is not None:
            self.notify()
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def ready(self) -> bool:
        """An event (or the end, or an error) is there without waiting."""
        return bool(self.events) or self.eof or self.error is not None

    def in_message(self) -> bool:
        """Bytes of a message came and the message is not complete yet."""
        return bool(getattr(self.parser, "in_message", False))

    async def wait(self) -> None:
        """Until something arrives: bytes (even no whole event), the end, or an error."""
        if self.ready():
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def next(self) -> Event | None:
        """The next event; None at the end of the connection; raises ProtocolError."""
        while not self.events:
            if self.error is not None:
                raise self.error
            if self.eof:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.pop()

    async def next_within(self, timeout: float | None) -> Event | None:
        """`next()` waiting at most `timeout` seconds (None: no limit; TimeoutError). What is
        already there comes back without arming a timer (a timer cannot fire before a
        coroutine that does not suspend has returned, so the result is the same)."""
        if timeout is None or self.ready():
            return await self.next()
        return await wait_for(self.next(), timeout)

    def holds_end(self) -> bool:
        """The END of the message being read is queued: the rest of its body is here."""
        return END in self.events

    def pop(self) -> Event:
        """The next queued event (there must be one), without waiting."""
        ev = self.events.popleft()
        if isinstance(ev, bytes):
            self.queued -= len(ev)
        elif isinstance(ev, Upgraded):
            self.queued -= len(ev.rest)
        if self._read_paused and self.queued < LOW_WATER and self.transport is not None:
            self._read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()
        return ev

    def write(self, data: bytes) -> None:
        t = self.transport
        if data and t is not None and not t.is_closing():
            if self.counter is not None:
                self.counter.sent += len(data)
            t.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ConnectionResetError("connection lost")
        if self._drain is not None and not self._drain.done():
            await self._drain
            if self.lost:
                raise ConnectionResetError("connection lost")

    def expect(self, parser: Parser) -> None:
        """A new message is expected (a response on a pooled connection)."""
        self.parser = parser

    def expect_nothing(self) -> None:
        """Idle in a pool: any byte the upstream sends now makes it unusable."""
        self.parser = None

    def reusable(self) -> bool:
        t = self.transport
        return (
            not self.eof
            and not self.events
            and not self.unsolicited
            and self.error is None
            and t is not None
            and not t.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
