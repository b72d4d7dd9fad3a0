"""The zone DNS server: UDP and TCP on one address, answering from a swappable `DnsTable`.

The UDP path is the hot one: a datagram goes to `DnsTable.respond()` and the bytes it returns go
straight back, with counters kept as plain integers (a Prometheus `Counter.inc()` takes a lock
per call; the collector below reads the integers at scrape time instead). Nothing a client sends
can stop the server: every failure is logged at debug level and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Final, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zone_cp.dns.answers import DnsTable, Forward, truncate_for_udp
from zone_cp.dns.upstream import Upstream

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5653
DEFAULT_TCP_IDLE_TIMEOUT: Final = 10.0
DEFAULT_MAX_TCP_CONNECTIONS: Final = 1024
_RCODE_NAMES: Final = (
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
)


class DnsStats:
    """Counters of one server, as plain integers (cheap on the hot path)."""

    __slots__ = (
        "dropped",
        "errors",
        "forwarded",
        "queries_tcp",
        "queries_udp",
        "rcodes",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries_udp = 0
        self.queries_tcp = 0
        self.rcodes = [0] * 16  # answers sent, by the 4-bit header rcode
        self.dropped = 0  # packets not answered (unreadable, or responses)
        self.errors = 0  # unexpected exceptions while answering (a bug if ever non-zero)
        self.forwarded = 0
        self.truncated = 0  # UDP answers cut to TC


class DnsStatsCollector(Collector):
    """Exposes `DnsStats` (and the upstream's failures) as Prometheus metrics at scrape time."""

    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._server.stats
        queries = CounterMetricFamily(
            "meshfed_dns_queries", "DNS queries received", labels=["transport"]
        )
        queries.add_metric(["udp"], stats.queries_udp)
        queries.add_metric(["tcp"], stats.queries_tcp)
        yield queries
        answers = CounterMetricFamily(
            "meshfed_dns_responses", "DNS responses sent, by rcode", labels=["rcode"]
        )
        for code, count in enumerate(stats.rcodes):
            if count or code < len(_RCODE_NAMES):
                name = _RCODE_NAMES[code] if code < len(_RCODE_NAMES) else str(code)
                answers.add_metric([name], count)
        yield answers
        yield CounterMetricFamily(
            "meshfed_dns_dropped", "DNS packets dropped without an answer", value=stats.dropped
        )
        yield CounterMetricFamily(
            "meshfed_dns_truncated", "UDP answers truncated (TC)", value=stats.truncated
        )
        yield CounterMetricFamily(
            "meshfed_dns_forwarded", "DNS queries forwarded upstream", value=stats.forwarded
        )
        upstream = self._server.upstream
        failures = CounterMetricFamily(
            "meshfed_dns_upstream_failures",
            "Forwarded queries answered SERVFAIL",
            labels=["reason"],
        )
        failures.add_metric(["timeout"], upstream.timeouts if upstream else 0)
        failures.add_metric(["error"], upstream.failures if upstream else 0)
        yield failures
        yield CounterMetricFamily(
            "meshfed_dns_internal_errors", "Unexpected errors answering", value=stats.errors
        )
        yield GaugeMetricFamily(
            "meshfed_dns_names", "Names in the current table", value=self._server.table.size
        )


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._stats = server.stats
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport, hence the cast.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        stats = self._stats
        stats.queries_udp += 1
        try:
            action = self._server.table.respond(data)
            if type(action) is bytes:
                stats.rcodes[action[3] & 0x0F] += 1
                self._transport.sendto(action, addr)  # type: ignore[union-attr]
            elif type(action) is Forward:
                self._server.spawn_forward(data, addr, action.udp_size, self._transport)
            else:
                stats.dropped += 1
        except Exception:  # never let one packet take the server down
            stats.errors += 1
            log.debug("error answering %d bytes from %s", len(data), addr, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


def _udp_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class DnsServer:
    """UDP + TCP DNS server. Replace `table` (one assignment) to change every answer at once."""

    def __init__(
        self,
        table: DnsTable,
        *,
        upstream: Upstream | None = None,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
        max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS,
    ) -> None:
        self.table = table
        self.upstream = upstream
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.stats = DnsStats()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_connections = 0
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the real port when started with port 0)."""
        if self._address is None:
            raise RuntimeError("DNS server not started")
        return self._address

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Binds UDP and TCP on host:port (port 0: a free port, the same for both)."""
        if self.upstream is not None:
            await self.upstream.start()
        # With port 0 the UDP port the kernel picks may be taken for TCP: try a few.
        attempts = 1 if port else 20
        for attempt in range(attempts):
            udp_sock = _udp_socket(host, port, reuse_port)
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp,
                    host,
                    udp_sock.getsockname()[1],
                    reuse_port=reuse_port or None,
                    backlog=1024,
                )
                break
            except OSError:
                udp_sock.close()
                if attempt == attempts - 1:
                    raise
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=udp_sock
        )
        self._address = (host, int(udp_sock.getsockname()[1]))
        return self._address

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.upstream is not None:
            self.upstream.close()

    def spawn_forward(
        self,
        query: bytes,
        addr: tuple[str, int],
        udp_size: int,
        transport: asyncio.DatagramTransport | None,
    ) -> None:
        task = asyncio.ensure_future(self._forward_udp(query, addr, udp_size, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(
        self,
        query: bytes,
        addr: tuple[str, int],
        udp_size: int,
        transport: asyncio.DatagramTransport | None,
    ) -> None:
        reply = await self._forward(query, tcp=False)
        if len(reply) > udp_size:
            reply = truncate_for_udp(reply, udp_size)
            self.stats.truncated += 1
        if transport is not None and not transport.is_closing():
            self.stats.rcodes[reply[3] & 0x0F] += 1
            transport.sendto(reply, addr)

    async def _forward(self, query: bytes, tcp: bool) -> bytes:
        assert self.upstream is not None, "a forwarding table needs an upstream"
        self.stats.forwarded += 1
        return await self.upstream.resolve(query, tcp=tcp)

    async def _answer_tcp(self, query: bytes) -> bytes | None:
        self.stats.queries_tcp += 1
        action = self.table.respond(query, tcp=True)
        if type(action) is bytes:
            return action
        if type(action) is Forward:
            return await self._forward(query, tcp=True)
        self.stats.dropped += 1
        return None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766 framing: 2-byte length, several queries per connection, answered in order."""
        if self._tcp_connections >= self.max_tcp_connections:
            self.stats.dropped += 1
            writer.close()
            return
        self._tcp_connections += 1
        try:
            while True:
                async with asyncio.timeout(self.tcp_idle_timeout):
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                    query = await reader.readexactly(size)
                try:
                    reply = await self._answer_tcp(query)
                except Exception:
                    self.stats.errors += 1
                    log.debug("error answering over TCP", exc_info=True)
                    reply = None
                if reply is not None:
                    self.stats.rcodes[reply[3] & 0x0F] += 1
                    writer.write(struct.pack(">H", len(reply)) + reply)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # idle, closed by the client, or reset: all normal ends of a connection
        except Exception:
            self.stats.errors += 1
            log.debug("TCP connection failed", exc_info=True)
        finally:
            self._tcp_connections -= 1
            writer.close()
