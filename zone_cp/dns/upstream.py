"""Forwarding of non-`.mesh` queries to an upstream resolver.

Queries go out over UDP on one connected socket, each with a fresh random ID so replies from
different clients cannot be confused and a spoofed reply has to guess it. A truncated upstream
reply is retried over TCP when the client itself asked over TCP (otherwise the client gets TC
and comes back over TCP). Timeouts become SERVFAIL: the client always hears back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Final

from meshfed.aio import wait_for
from zone_cp.dns.answers import RCODE_SERVFAIL, error_reply

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 2.0
# Leaves room in the 16-bit ID space so picking a free ID stays cheap.
MAX_IN_FLIGHT: Final = 8192


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port` → (host, port); ValueError with the reason."""
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"address {text!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"address {text!r}: expected ':' after ']'")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"address {text!r}: missing host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"address {text!r}: port must be 1-65535")
    return host, int(port_text)


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, pending: dict[int, asyncio.Future[bytes]]) -> None:
        self._pending = pending

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or not data[2] & 0x80:
            return
        future = self._pending.pop((data[0] << 8) | data[1], None)
        if future is not None and not future.done():
            future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (upstream down) cannot be tied to one query; those queries time out.
        log.debug("upstream socket error: %s", exc)


class Upstream:
    """An upstream resolver reached over UDP, with TCP for answers too large for UDP."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.timeouts = 0
        self.failures = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UpstreamProtocol(self._pending), remote_addr=(self.host, self.port)
        )
        self._transport = transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    async def resolve(self, query: bytes, tcp: bool = False) -> bytes:
        """The upstream's reply with the client's ID restored; SERVFAIL when it fails."""
        try:
            reply = await self._udp(query)
            if tcp and reply[2] & 0x02:
                reply = await self._tcp(query)
        except TimeoutError:
            self.timeouts += 1
            log.debug("upstream %s:%d timed out", self.host, self.port)
            return error_reply(query, RCODE_SERVFAIL)
        except (OSError, asyncio.IncompleteReadError, ConnectionError, RuntimeError) as exc:
            self.failures += 1
            log.debug("upstream %s:%d failed: %s", self.host, self.port, exc)
            return error_reply(query, RCODE_SERVFAIL)
        # Restore the client's ID; RA is ours to state, since we recurse on its behalf.
        return query[:2] + bytes((reply[2], reply[3] | 0x80)) + reply[4:]

    async def _udp(self, query: bytes) -> bytes:
        transport = self._transport
        if transport is None:
            raise RuntimeError("upstream not started")
        if len(self._pending) >= MAX_IN_FLIGHT:
            raise RuntimeError("too many queries in flight upstream")
        qid = random.getrandbits(16)
        while qid in self._pending:
            qid = random.getrandbits(16)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[qid] = future
        try:
            transport.sendto(struct.pack(">H", qid) + query[2:])
            return await wait_for(future, self.timeout)
        finally:
            if self._pending.get(qid) is future:
                del self._pending[qid]

    async def _tcp(self, query: bytes) -> bytes:
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(struct.pack(">H", len(query)) + query)
                await writer.drain()
                while True:
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                    reply = await reader.readexactly(size)
                    if reply[:2] == query[:2] and len(reply) >= 12:
                        return reply
            finally:
                writer.close()
