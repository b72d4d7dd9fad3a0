"""Batched UDP for the DNS hot path: recvmmsg/sendmmsg through ctypes (Linux only).

Why: with an asyncio datagram transport most of a query's user-space CPU goes to the transport,
not to answering: a Python (host, port) tuple and string per client address, a callback per
datagram, the GIL released and taken around every send. Here the kernel fills up to `batch`
slots per recvmmsg call, client addresses never become Python objects (each reply goes back
through the very header its query arrived in), and the replies leave in one sendmmsg. In the
benchmark (docs/benchmarks.md) this is what lifts one process past dnsmasq.

Layout: one buffer of `batch` slots of `slot` bytes; slot i owns iovec i, sockaddr i and
mmsghdr i. A reply is written over its query in the same slot. When some queries of a batch
get no reply (dropped, forwarded), the headers of the answered ones are moved down so the
batch stays contiguous for sendmmsg, and the pristine headers are copied back afterwards.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import sys
from collections.abc import Callable
from typing import Final, Protocol

from zone_cp.dns.answers import Action, Forward
from zone_cp.dns.stats import DnsStats, answer_slot

log = logging.getLogger(__name__)

MSG_DONTWAIT: Final = 0x40
MSG_TRUNC: Final = 0x20
DEFAULT_BATCH: Final = 64
DEFAULT_SLOT: Final = 4096
# Batches read per wakeup before yielding to the event loop (TCP, timers, signals).
MAX_BATCHES_PER_WAKEUP: Final = 8


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_NAMELEN: Final = 28  # sizeof(struct sockaddr_in6): room for either family
_HDR: Final = ctypes.sizeof(_Mmsghdr)
_IOV: Final = ctypes.sizeof(_Iovec)


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


def _layout_ok() -> bool:
    """The 8-byte views below assume the LP64 Linux layout of these structs."""
    return (
        ctypes.sizeof(ctypes.c_void_p) == 8
        and _HDR == 64
        and _IOV == 16
        and _Msghdr.msg_iov.offset == 16
        and _Msghdr.msg_namelen.offset == 8
        and _Msghdr.msg_flags.offset == 48
        and _Mmsghdr.msg_len.offset == 56
    )


_LIBC: Final = _load_libc() if _layout_ok() else None


def available() -> bool:
    """Whether batched UDP can be used here (Linux, 64-bit, libc with recvmmsg)."""
    return _LIBC is not None


class Responder(Protocol):
    """What the batch reader needs from the server."""

    def respond_udp(self) -> Callable[[bytes], Action]: ...

    def forward_udp(self, query: bytes, addr: tuple[str, int], udp_size: int) -> None: ...


class UdpBatchReader:
    """Reads, answers and replies to whole batches of datagrams on one non-blocking socket."""

    def __init__(
        self,
        sock: socket.socket,
        server: Responder,
        stats: DnsStats,
        batch: int = DEFAULT_BATCH,
        slot: int = DEFAULT_SLOT,
    ) -> None:
        if _LIBC is None:
            raise RuntimeError("batched UDP needs Linux recvmmsg/sendmmsg")
        self._recvmmsg = _LIBC.recvmmsg
        self._sendmmsg = _LIBC.sendmmsg
        self._sock = sock
        self._fd = sock.fileno()
        self._server = server
        self._stats = stats
        self._batch = batch
        self._slot = slot

        self._bufs = (ctypes.c_char * (batch * slot))()
        self._names = (ctypes.c_char * (batch * _NAMELEN))()
        self._iovs = (_Iovec * batch)()
        self._msgs = (_Mmsghdr * batch)()
        buf_addr = ctypes.addressof(self._bufs)
        name_addr = ctypes.addressof(self._names)
        for i in range(batch):
            self._iovs[i].iov_base = buf_addr + i * slot
            self._iovs[i].iov_len = slot
            hdr = self._msgs[i].msg_hdr
            hdr.msg_name = name_addr + i * _NAMELEN
            hdr.msg_namelen = _NAMELEN
            hdr.msg_iov = ctypes.addressof(self._iovs) + i * _IOV
            hdr.msg_iovlen = 1
        self._msgs_addr = ctypes.addressof(self._msgs)
        # Views for per-packet access without ctypes attribute overhead.
        self._buf_view = memoryview(self._bufs).cast("B")
        self._name_view = memoryview(self._names).cast("B")
        self._msg_u32 = memoryview(self._msgs).cast("B").cast("I")
        self._msg_u64 = memoryview(self._msgs).cast("B").cast("Q")
        self._iov_u64 = memoryview(self._iovs).cast("B").cast("Q")
        self._msgs_bytes = memoryview(self._msgs).cast("B")
        self._iovs_bytes = memoryview(self._iovs).cast("B")
        self._msgs_template = bytes(self._msgs_bytes)
        self._iovs_template = bytes(self._iovs_bytes)
        self.largest_batch = 0  # observability: how much batching the load produced
        # Per slot: (index, buffer offset, u32 index of msg_flags, of msg_len, u64 of iov_len).
        self._slots = tuple(
            (i, i * slot, i * 16 + 12, i * 16 + 14, i * 2 + 1) for i in range(batch)
        )

    def on_readable(self) -> None:
        """Event-loop reader callback: drain a bounded number of batches."""
        for _ in range(MAX_BATCHES_PER_WAKEUP):
            count = self._recvmmsg(self._fd, self._msgs_addr, self._batch, MSG_DONTWAIT, None)
            if count < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                # ICMP errors from earlier sends surface here once; the queue is still fine.
                log.debug("recvmmsg: %s", errno.errorcode.get(err, err))
                continue
            if count == 0:
                return
            if count > self.largest_batch:
                self.largest_batch = count
            try:
                self._answer_batch(count)
            except Exception:  # never let one batch take the server down
                self._stats.errors += 1
                log.debug("error answering a UDP batch", exc_info=True)
                self._restore()
            if count < self._batch:
                return

    def _answer_batch(self, count: int) -> None:
        stats = self._stats
        stats.queries_udp += count
        respond = self._server.respond_udp()  # once per batch: table swaps apply per batch
        bufs = self._buf_view
        u32 = self._msg_u32
        iov = self._iov_u64
        answers = stats.answers
        slot = self._slot
        sent = 0
        for i, base, flags_at, len_at, iov_len_at in self._slots[:count]:
            if u32[flags_at] & MSG_TRUNC:  # the query did not fit in a slot
                stats.dropped += 1
                continue
            query = bytes(bufs[base : base + u32[len_at]])
            action = respond(query)
            if type(action) is bytes:
                answers[answer_slot(action)] += 1
                size = len(action)
                if size > slot:
                    self._send_one(action, i)
                    continue
                bufs[base : base + size] = action
                iov[iov_len_at] = size
                if sent != i:
                    self._move_header(i, sent)
                sent += 1
            elif type(action) is Forward:
                self._server.forward_udp(query, self._address(i), action.udp_size)
            else:
                stats.dropped += 1
        if sent:
            self._send_batch(sent)
        self._restore()

    def _move_header(self, src: int, dst: int) -> None:
        """Points header `dst` at the address and iovec of slot `src` (compaction)."""
        u64 = self._msg_u64
        u32 = self._msg_u32
        u64[dst * 8] = u64[src * 8]  # msg_name
        u32[dst * 16 + 2] = u32[src * 16 + 2]  # msg_namelen, as the kernel set it
        u64[dst * 8 + 2] = u64[src * 8 + 2]  # msg_iov

    def _send_batch(self, count: int) -> None:
        done = 0
        while done < count:
            n = self._sendmmsg(self._fd, self._msgs_addr + done * _HDR, count - done, MSG_DONTWAIT)
            if n <= 0:
                err = ctypes.get_errno()
                if n < 0 and err == errno.EINTR:
                    continue
                # Send buffer full or a send error: the rest are lost, like any UDP reply.
                self._stats.send_failures += count - done
                log.debug("sendmmsg: %s", errno.errorcode.get(err, err))
                return
            done += n

    def _restore(self) -> None:
        self._msgs_bytes[:] = self._msgs_template
        self._iovs_bytes[:] = self._iovs_template

    def _address(self, i: int) -> tuple[str, int]:
        """The client address of slot i as a Python tuple (only for the rare paths)."""
        name = bytes(self._name_view[i * _NAMELEN : (i + 1) * _NAMELEN])
        family = int.from_bytes(name[:2], sys.byteorder)
        port = int.from_bytes(name[2:4], "big")
        if family == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, name[8:24]), port
        return socket.inet_ntop(socket.AF_INET, name[4:8]), port

    def _send_one(self, reply: bytes, i: int) -> None:
        try:
            self._sock.sendto(reply, self._address(i))
        except OSError as exc:
            self._stats.send_failures += 1
            log.debug("sendto: %s", exc)
