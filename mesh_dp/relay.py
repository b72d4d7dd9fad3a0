"""Moving bytes both ways between two asyncio transports, TLS on either side.

The splice pump (meshfed.proxy.pump) cannot run where the sidecar terminates or originates
TLS: the bytes must pass through OpenSSL in user space. The relay therefore works at the
protocol layer, with no per-connection task and no StreamReader in between: each side's
`data_received` writes straight into the other side's transport, and flow control links
the two (when one side's write buffer passes its high-water mark it pauses reading from the
other side). The event loop's own TLS (uvloop's when installed) reads up to 256 KiB a time.

A `Side` may exist before it is linked (the accepted connection waits for its upstream): it
holds its reading paused and keeps anything already delivered, and `link` replays it.

Half-close: a plain TCP EOF becomes `write_eof` on a plain peer, and the other direction
keeps flowing until it ends too. A TLS transport cannot be half-closed by the event loop
(close_notify ends the whole TLS session), so an EOF on either side of a TLS link closes the
link once pending bytes are written. HTTP/1.1 and HTTP/2 clients do not half-close, so this
only matters for raw TCP protocols that do.

`idle_timeout` closes a link after that many seconds without a byte either way (0: never).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

WRITE_HIGH_WATER = 1 << 20  # bytes buffered for one side before the other stops reading
WRITE_LOW_WATER = 256 * 1024


class ByteCounter:
    """Totals one listener adds its links' bytes to (`downstream`: the accepted side)."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0  # from the downstream (accepted) side
        self.sent = 0  # to the downstream side


class Side(asyncio.Protocol):
    """One end of a relayed connection."""

    def __init__(self, downstream: bool, counter: ByteCounter | None = None) -> None:
        self.downstream = downstream
        self.counter = counter
        self.transport: asyncio.Transport | None = None
        self.tls = False
        self.link: Link | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.lost = False
        self.peer: str | None = None  # the caller's SPIFFE ID (an inbound's, for access logs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but implement it.
        t = self.transport = cast(asyncio.Transport, transport)
        self.tls = t.get_extra_info("sslcontext") is not None
        t.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        if self.link is None:
            t.pause_reading()  # nothing to send the bytes to yet

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link is None:
            self.pending.append(data)
            self.pause_reading()
            return
        link.forward(self, data)

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.link is None:
            return not self.tls  # keep a plain side open for the answer; TLS cannot
        return self.link.eof_from(self)

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.other(self).pause_reading()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.other(self).resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.link is not None:
            self.link.side_lost(self, exc)

    def close(self, abort: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if abort:
            self.transport.abort()
        else:
            self.transport.close()


class Link:
    """Two linked sides: bytes flow both ways until both end, one fails, or idleness.

    `on_close(link, reason)` runs once, when both transports are gone.
    """

    __slots__ = (
        "_done",
        "_idle_handle",
        "_idle_timeout",
        "_loop",
        "a",
        "b",
        "last_activity",
        "on_close",
        "reason",
        "received",
        "sent",
        "started",
    )

    def __init__(
        self,
        a: Side,
        b: Side,
        *,
        idle_timeout: float = 0.0,
        on_close: Callable[[Link, str], None] | None = None,
    ) -> None:
        self.a, self.b = a, b
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._idle_handle: asyncio.TimerHandle | None = None
        self._done = False
        self.on_close = on_close
        self.reason = ""
        self.last_activity = time.monotonic()
        self.started = time.time()  # wall clock, for access logs
        self.received = self.sent = 0  # bytes from / to side `a` (for access logs)
        a.link = b.link = self

    def start(self) -> None:
        """Replays what either side received before linking, then lets bytes flow."""
        for side in (self.a, self.b):
            pending, side.pending = side.pending, []
            for chunk in pending:
                self.forward(side, chunk)
        for side in (self.a, self.b):
            if side.lost:
                self.side_lost(side, None)
                return
        for side in (self.a, self.b):
            if side.eof and not self.eof_from(side):
                return
        self.a.resume_reading()
        self.b.resume_reading()
        if self._idle_timeout > 0:
            self._idle_handle = self._loop.call_later(self._idle_timeout, self._check_idle)

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def forward(self, side: Side, data: bytes) -> None:
        self.last_activity = time.monotonic()
        peer = self.b if side is self.a else self.a
        if side is self.a:
            self.received += len(data)
        else:
            self.sent += len(data)
        counter = side.counter or peer.counter
        if counter is not None:
            if side.downstream:
                counter.received += len(data)
            else:
                counter.sent += len(data)
        transport = peer.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def eof_from(self, side: Side) -> bool:
        """Returns what `eof_received` should: True keeps the side's write half open."""
        peer = self.other(side)
        if side.tls or peer.tls or peer.transport is None:
            self.close("end of stream")  # flushes, then closes (TLS: close_notify)
            return False
        if peer.transport.can_write_eof() and not peer.transport.is_closing():
            peer.transport.write_eof()
        if peer.eof:
            self.close("both sides finished")
            return False
        return True

    def side_lost(self, side: Side, exc: Exception | None) -> None:
        if exc is not None:
            self.close(f"connection lost: {describe(exc)}", abort=True)
        else:
            self.close("closed")
        if self.a.lost and self.b.lost and not self._done:
            self._done = True
            if self._idle_handle is not None:
                self._idle_handle.cancel()
            if self.on_close is not None:
                self.on_close(self, self.reason)

    def close(self, reason: str, abort: bool = False) -> None:
        """Closes both sides (abort: with a reset, dropping unsent bytes)."""
        if not self.reason:
            self.reason = reason
        self.a.close(abort)
        self.b.close(abort)

    def set_idle_timeout(self, seconds: float) -> None:
        """A new idleTimeout for an open link (a config changed the policy)."""
        self._idle_timeout = seconds
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if seconds > 0 and not self._done:
            self._idle_handle = self._loop.call_later(0, self._check_idle)

    def _check_idle(self) -> None:
        if self._done:
            return
        idle = time.monotonic() - self.last_activity
        if idle >= self._idle_timeout:
            self.close(f"idle for {idle:.1f}s")
            return
        self._idle_handle = self._loop.call_later(self._idle_timeout - idle, self._check_idle)


def describe(exc: BaseException) -> str:
    """A short reason for logs and metrics: the error class and message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
