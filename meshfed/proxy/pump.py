"""Pumps bytes both ways between two connected sockets until both directions end.

On Linux each direction moves data with splice(2) through its own pipe: socket -> pipe ->
socket, so payload pages never cross into user space. Elsewhere, or for sockets the kernel
cannot splice, a copy loop with a large buffer does the same job.

Semantics a proxy needs:
- half-close: EOF from one side becomes shutdown(SHUT_WR) on the other, and the opposite
  direction keeps flowing until its own EOF;
- errors: a reset or failed write on either side aborts both sockets with an RST, so neither
  peer mistakes a cut transfer for a complete one;
- `initial` bytes (the ClientHello the ingress already read) go to the server first;
- live per-direction byte counters in `PumpStats`, readable while the pump runs.

The pump owns both sockets once its arguments are accepted and always closes them before
returning, also when it is cancelled.
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
from dataclasses import dataclass
from typing import Final

SPLICE_AVAILABLE: Final = hasattr(os, "splice")
# Pipe capacity per direction; bigger pipes mean fewer syscalls per megabyte on bulk flows.
# Memory is only charged for pages actually in the pipe.
PIPE_SIZE: Final = 1 << 20
COPY_BUFFER: Final = 256 * 1024
_SPLICE_FLAGS: Final = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class PumpStats:
    client_to_server: int = 0
    server_to_client: int = 0
    mode: str = ""  # "splice" or "copy"; "mixed" if one direction fell back
    error: str | None = None  # set when the pump ended by aborting (reset, failed write)


class _SpliceUnsupported(Exception):
    """splice(2) refused these file descriptors; `pending` is what was already in the pipe."""

    def __init__(self, pending: bytes) -> None:
        super().__init__("splice not supported")
        self.pending = pending


async def pump(
    client: socket.socket,
    server: socket.socket,
    *,
    initial: bytes = b"",
    stats: PumpStats | None = None,
    use_splice: bool | None = None,
) -> PumpStats:
    """Runs until both directions hit EOF or one fails; returns the (same) stats object."""
    for sock in (client, server):
        if isinstance(sock, ssl.SSLSocket):
            raise TypeError("pump moves raw bytes; an SSLSocket would bypass its TLS layer")
    if use_splice and not SPLICE_AVAILABLE:
        raise ValueError("splice(2) is not available on this platform")
    splice = SPLICE_AVAILABLE if use_splice is None else use_splice
    stats = stats if stats is not None else PumpStats()
    stats.mode = "splice" if splice else "copy"
    loop = asyncio.get_running_loop()
    client.setblocking(False)
    server.setblocking(False)
    tasks: list[asyncio.Task[None]] = []
    abort = True
    try:
        if initial:
            await loop.sock_sendall(server, initial)
            stats.client_to_server += len(initial)
        tasks = [
            asyncio.create_task(_direction(loop, client, server, stats, True, splice)),
            asyncio.create_task(_direction(loop, server, client, stats, False, splice)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failures = [e for t in tasks if t.done() and (e := t.exception()) is not None]
        for failure in failures:
            if not isinstance(failure, OSError):
                raise failure  # a bug, not a network event: do not hide it in stats
        if failures:
            stats.error = "; ".join(str(f) for f in failures)
        else:
            abort = False
    except OSError as exc:
        stats.error = f"sending initial bytes: {exc}"
    finally:
        for task in tasks:
            task.cancel()
        # Waiting lets each direction drop its reader/writer and pipe before the fds close.
        await asyncio.gather(*tasks, return_exceptions=True)
        _close(client, abort)
        _close(server, abort)
    return stats


async def _direction(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    stats: PumpStats,
    upstream: bool,
    splice: bool,
) -> None:
    name = "client->server" if upstream else "server->client"
    try:
        if splice:
            try:
                await _splice_loop(loop, src, dst, stats, upstream)
                _shutdown_write(dst)
                return
            except _SpliceUnsupported as exc:
                stats.mode = "mixed"
                if exc.pending:
                    await loop.sock_sendall(dst, exc.pending)
                    _count(stats, upstream, len(exc.pending))
        await _copy_loop(loop, src, dst, stats, upstream)
        _shutdown_write(dst)
    except OSError as exc:
        raise OSError(exc.errno, f"{name}: {exc.strerror or exc}") from exc


async def _splice_loop(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    stats: PumpStats,
    upstream: bool,
) -> None:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # above pipe-max-size: keep the default size
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        sfd, dfd = src.fileno(), dst.fileno()
        in_pipe = 0
        while True:
            if in_pipe == 0:
                try:
                    n = os.splice(sfd, write_end, PIPE_SIZE, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    await _ready(loop, sfd, write=False)
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.ENOSYS):
                        raise _SpliceUnsupported(b"") from None
                    raise
                if n == 0:
                    return  # EOF
                in_pipe = n
            try:
                m = os.splice(read_end, dfd, in_pipe, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await _ready(loop, dfd, write=True)
                continue
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS):
                    raise _SpliceUnsupported(_drain(read_end, in_pipe)) from None
                raise
            in_pipe -= m
            _count(stats, upstream, m)
    finally:
        os.close(read_end)
        os.close(write_end)


async def _copy_loop(
    loop: asyncio.AbstractEventLoop,
    src: socket.socket,
    dst: socket.socket,
    stats: PumpStats,
    upstream: bool,
) -> None:
    buf = bytearray(COPY_BUFFER)
    view = memoryview(buf)
    while True:
        n = await loop.sock_recv_into(src, buf)
        if n == 0:
            return
        await loop.sock_sendall(dst, view[:n])
        _count(stats, upstream, n)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    """Waits until `fd` is readable (or writable); the registration never outlives the wait."""
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await waiter
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _count(stats: PumpStats, upstream: bool, n: int) -> None:
    if upstream:
        stats.client_to_server += n
    else:
        stats.server_to_client += n


def _drain(read_end: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(read_end, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _shutdown_write(sock: socket.socket) -> None:
    # The peer may already be gone; its reset shows up on the other direction's read.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def _close(sock: socket.socket, reset: bool) -> None:
    if reset:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()
