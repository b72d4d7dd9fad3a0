"""Pumps bytes both ways between two connected sockets until both directions end.

Two ways to move a direction's bytes, chosen per direction:
- copy: recv into a buffer, send it on. No setup cost, so short connections (a TLS handshake
  and a few messages) pay only for their syscalls;
- splice (Linux): socket -> pipe -> socket with splice(2); payload pages never enter user
  space, which is what bulk flows want, but each direction needs its own pipe.

`use_splice=None` (the default) starts every direction in copy mode and switches it to splice
the first time one read brings `SPLICE_AFTER` bytes or more: a bulk flow. True splices from the
first byte, False never does. A direction the kernel refuses to splice falls back to copying
without losing what was already in its pipe (`mode` "mixed").

The pump is driven by event-loop callbacks (`Relay`), not tasks: per connection it costs a
few objects and one reader registration per socket, which is what keeps the price of a new
connection low. `pump()` wraps a `Relay` for callers that want to await the end.

Semantics a proxy needs:
- half-close: EOF from one side becomes shutdown(SHUT_WR) on the other, and the opposite
  direction keeps flowing until its own EOF;
- errors: a reset or failed write on either side aborts both sockets with an RST, so neither
  peer mistakes a cut transfer for a complete one;
- `initial` bytes (the ClientHello the ingress already read) go to the server first;
- live per-direction byte counters in `PumpStats`, readable while the pump runs.

The relay owns both sockets once constructed and always closes them when it ends (both
directions finished, an error, or `abort`), after dropping its registrations and pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SPLICE_AVAILABLE: Final = hasattr(os, "splice")
# Pipe capacity per spliced direction; bigger pipes mean fewer syscalls per megabyte on bulk
# flows. Memory is only charged for pages actually in the pipe.
PIPE_SIZE: Final = 1 << 20
COPY_BUFFER: Final = 256 * 1024
# Auto mode: one read this large means a bulk flow, worth a pipe.
SPLICE_AFTER: Final = 64 * 1024
# Reads one direction may do per wakeup before it lets other connections run. Reading again
# until EAGAIN also picks up an EOF that arrived with the data without another wakeup.
_READS_PER_WAKEUP: Final = 16
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
_UNSPLICEABLE: Final = (errno.EINVAL, errno.ENOSYS)
_scratch = threading.local()  # one copy buffer per thread: callbacks of a loop never overlap


@dataclass(slots=True)
class PumpStats:
    client_to_server: int = 0
    server_to_client: int = 0
    # "copy", "splice" (at least one direction spliced), "mixed" (a direction fell back)
    mode: str = ""
    error: str | None = None  # set when the pump ended by aborting (reset, failed write)


def _copy_buffer() -> tuple[bytearray, memoryview]:
    pair: tuple[bytearray, memoryview] | None = getattr(_scratch, "pair", None)
    if pair is None:
        buf = bytearray(COPY_BUFFER)
        pair = _scratch.pair = (buf, memoryview(buf))
    return pair


class Relay:
    """Both directions of one proxied connection, driven by reader/writer callbacks.

    `on_done(relay)` runs once, after both sockets are closed; `stats.error` then says
    whether it ended cleanly.
    """

    __slots__ = (
        "_down",
        "_loop",
        "_on_done",
        "_up",
        "buf",
        "bug",
        "client",
        "done",
        "server",
        "stats",
        "view",
    )

    def __init__(
        self,
        client: socket.socket,
        server: socket.socket,
        *,
        stats: PumpStats | None = None,
        use_splice: bool | None = None,
        on_done: Callable[[Relay], None] | None = None,
    ) -> None:
        for sock in (client, server):
            if isinstance(sock, ssl.SSLSocket):
                raise TypeError("pump moves raw bytes; an SSLSocket would bypass its TLS layer")
        if use_splice and not SPLICE_AVAILABLE:
            raise ValueError("splice(2) is not available on this platform")
        self._loop = asyncio.get_running_loop()
        self.client, self.server = client, server
        self.stats = stats if stats is not None else PumpStats()
        self.stats.mode = "splice" if use_splice else "copy"
        self._on_done = on_done
        self.done = False
        self.bug: BaseException | None = None  # not a network event: pump() re-raises it
        self.buf, self.view = _copy_buffer()
        for sock in (client, server):
            if sock.gettimeout() != 0.0:  # skips a syscall for sockets already non-blocking
                sock.setblocking(False)
        auto = use_splice is None and SPLICE_AVAILABLE
        self._up = _Direction(self, client, server, True, auto)
        self._down = _Direction(self, server, client, False, auto)

    def start(self, initial: bytes = b"", *, client_watched: bool = False) -> None:
        """Sends `initial` to the server, then lets bytes flow both ways.

        `client_watched`: the caller left a reader registered on the client socket (it read
        the initial bytes with it); the relay takes that registration over instead of
        dropping and re-adding it.
        """
        if client_watched:
            self._up.take_reader()
        try:
            if self.stats.mode == "splice":
                self._up.open_pipe()
                self._down.open_pipe()
        except OSError as exc:
            self._fail(self._up, exc)
            return
        if initial:
            self._up.pending = initial
            self._up.on_writable()
        else:
            self._up.want_read()
        if not self.done:
            self._down.want_read()

    def abort(self, reason: str) -> None:
        """Ends now: both peers get an RST."""
        if not self.done:
            self.stats.error = reason
            self._end(reset=True)

    def _finished(self) -> None:
        if self._up.finished and self._down.finished:
            self._end(reset=False)

    def _fail(self, direction: _Direction, exc: OSError) -> None:
        if not self.done:
            self.stats.error = f"{direction.name}: {exc.strerror or exc}"
            self._end(reset=True)

    def _bug(self, exc: BaseException) -> None:
        self.bug = exc
        self.abort(f"internal error: {exc!r}")

    def _end(self, reset: bool) -> None:
        self.done = True
        self._up.release()
        self._down.release()
        _close(self.client, reset)
        _close(self.server, reset)
        if self._on_done is not None:
            self._on_done(self)


class _Direction:
    """One way of a relay: reads `src`, writes `dst`. Exactly one of reading or waiting to
    write is registered while it runs, never both."""

    __slots__ = (
        "auto",
        "dfd",
        "dst",
        "eof",
        "finished",
        "in_pipe",
        "loop",
        "name",
        "pending",
        "pipe_r",
        "pipe_w",
        "reading",
        "relay",
        "sfd",
        "src",
        "stats",
        "upstream",
        "writing",
    )

    def __init__(
        self, relay: Relay, src: socket.socket, dst: socket.socket, upstream: bool, auto: bool
    ) -> None:
        self.relay = relay
        self.loop = relay._loop
        self.stats = relay.stats
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.upstream = upstream
        self.name = "client->server" if upstream else "server->client"
        self.auto = auto
        self.pending = b""  # copy mode: bytes read but not yet written
        self.pipe_r = self.pipe_w = -1  # splice mode when >= 0
        self.in_pipe = 0
        self.reading = self.writing = False
        self.eof = False  # the source ended; the destination is shut once flushed
        self.finished = False  # ... and it is

    # --- registrations ----------------------------------------------------------------

    def take_reader(self) -> None:
        self.loop.add_reader(self.sfd, self.on_readable)  # replaces the previous callback
        self.reading = True

    def want_read(self) -> None:
        if not self.reading:
            self.loop.add_reader(self.sfd, self.on_readable)
            self.reading = True

    def _stop_read(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sfd)
            self.reading = False

    def _want_write(self) -> None:
        if not self.writing:
            self.loop.add_writer(self.dfd, self.on_writable)
            self.writing = True

    def _stop_write(self) -> None:
        if self.writing:
            self.loop.remove_writer(self.dfd)
            self.writing = False

    def open_pipe(self) -> None:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # above pipe-max-size: keep the default size
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.pipe_r, self.pipe_w = read_end, write_end

    def release(self) -> None:
        """Drops registrations and the pipe (the relay closes the sockets)."""
        self._stop_read()
        self._stop_write()
        if self.pipe_r >= 0:
            os.close(self.pipe_r)
            os.close(self.pipe_w)
            self.pipe_r = self.pipe_w = -1

    # --- callbacks --------------------------------------------------------------------

    def on_readable(self) -> None:
        try:
            for _ in range(_READS_PER_WAKEUP):
                if not (self._splice_once() if self.pipe_r >= 0 else self._copy_once()):
                    return
        except OSError as exc:
            self.relay._fail(self, exc)
        except Exception as exc:  # a bug: end the connection, surface the error
            self.relay._bug(exc)

    def on_writable(self) -> None:
        try:
            if not self._flush():
                self._stop_read()
                self._want_write()
                return
            self._stop_write()
            if not self.eof:
                self.want_read()
        except OSError as exc:
            self.relay._fail(self, exc)
        except Exception as exc:
            self.relay._bug(exc)

    # --- moving bytes -----------------------------------------------------------------

    def _copy_once(self) -> bool:
        """One read and its write; True when reading again may find more."""
        buf, view = self.relay.buf, self.relay.view
        try:
            n = self.src.recv_into(buf)
        except BlockingIOError:
            return False
        if n == 0:
            self._eof()
            return False
        try:
            m = self.dst.send(view[:n])
        except BlockingIOError:
            m = 0
        self._count(m)
        if m < n:
            self.pending = bytes(view[m:n])
            self._stop_read()
            self._want_write()
            return False
        if self.auto and n >= SPLICE_AFTER:
            self._switch_to_splice()
        return True

    def _splice_once(self) -> bool:
        try:
            n = os.splice(self.sfd, self.pipe_w, PIPE_SIZE, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in _UNSPLICEABLE:
                self._fall_back()
                return True
            raise
        if n == 0:
            self._eof()
            return False
        self.in_pipe = n
        if not self._flush():
            self._stop_read()
            self._want_write()
            return False
        return True

    def _flush(self) -> bool:
        """Writes what this direction holds; False when the destination is full."""
        while self.in_pipe:
            try:
                m = os.splice(self.pipe_r, self.dfd, self.in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno not in _UNSPLICEABLE:
                    raise
                self._fall_back()
                break
            self.in_pipe -= m
            self._count(m)
        while self.pending:
            try:
                m = self.dst.send(self.pending)
            except BlockingIOError:
                return False
            self._count(m)
            self.pending = self.pending[m:]
        if self.eof and not self.finished:
            self._shutdown_dst()
        return True

    def _eof(self) -> None:
        self._stop_read()
        self.eof = True
        if self.in_pipe or self.pending:
            self._want_write()  # the flush shuts the destination down once it is empty
            return
        self._shutdown_dst()

    def _shutdown_dst(self) -> None:
        relay = self.relay
        other = relay._down if self.upstream else relay._up
        # When the other way is over too, the relay closes both sockets next, and close()
        # sends the FIN itself (nothing is left unread: the other way read up to its EOF).
        if not other.finished:
            # (try/except: contextlib.suppress costs three calls on a per-connection path)
            try:  # noqa: SIM105
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone: its reset shows up on the other direction's read
        self._stop_write()
        self.finished = True
        self.relay._finished()

    def _switch_to_splice(self) -> None:
        try:
            self.open_pipe()
        except OSError:  # out of descriptors: keep copying
            self.auto = False
            return
        self.auto = False
        if self.stats.mode == "copy":
            self.stats.mode = "splice"

    def _fall_back(self) -> None:
        """The kernel refuses to splice these descriptors: keep what is in the pipe, copy."""
        self.pending = _drain(self.pipe_r, self.in_pipe)
        self.in_pipe = 0
        os.close(self.pipe_r)
        os.close(self.pipe_w)
        self.pipe_r = self.pipe_w = -1
        self.auto = False
        self.stats.mode = "mixed"

    def _count(self, n: int) -> None:
        if self.upstream:
            self.stats.client_to_server += n
        else:
            self.stats.server_to_client += n


async def pump(
    client: socket.socket,
    server: socket.socket,
    *,
    initial: bytes = b"",
    stats: PumpStats | None = None,
    use_splice: bool | None = None,
) -> PumpStats:
    """Runs until both directions hit EOF or one fails; returns the (same) stats object.
    Cancelling it aborts both sockets."""
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_done(_: Relay) -> None:
        if not ended.done():
            ended.set_result(None)

    relay = Relay(client, server, stats=stats, use_splice=use_splice, on_done=on_done)
    relay.start(initial)
    try:
        await ended
    except asyncio.CancelledError:
        relay.abort("cancelled")
        raise
    if relay.bug is not None:
        raise relay.bug
    return relay.stats


def _drain(read_end: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(read_end, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _close(sock: socket.socket, reset: bool) -> None:
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()
