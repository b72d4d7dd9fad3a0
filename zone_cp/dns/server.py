"""The zone DNS server: UDP and TCP on one address, answering from a swappable `DnsTable`.

UDP is the hot path. On Linux it reads and answers whole batches with recvmmsg/sendmmsg
(batchio.py); elsewhere, or when disabled, an asyncio datagram transport does the same one
datagram at a time. Either way the bytes `DnsTable.respond()` returns go straight back, and the
counters are plain integers read by the Prometheus collector at scrape time. Nothing a client
sends can stop the server: every failure is logged at debug level and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Final, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from zone_cp.dns import batchio
from zone_cp.dns.answers import Action, DnsTable, Forward, truncate_for_udp
from zone_cp.dns.stats import DnsStats
from zone_cp.dns.upstream import Upstream

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5653
DEFAULT_TCP_IDLE_TIMEOUT: Final = 10.0
DEFAULT_MAX_TCP_CONNECTIONS: Final = 1024
_RCODE_NAMES: Final = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
# Room for bursts while the process is busy elsewhere (the kernel caps it at rmem_max).
_UDP_RCVBUF: Final = 4 * 1024 * 1024

__all__ = ["DEFAULT_PORT", "DnsServer", "DnsStats", "DnsStatsCollector"]


class DnsStatsCollector(Collector):
    """Exposes a server's `DnsStats` (and its upstream's failures) as Prometheus metrics."""

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
            if code < len(_RCODE_NAMES):
                answers.add_metric([_RCODE_NAMES[code]], count)
            elif count:
                answers.add_metric([str(code)], count)
        yield answers
        yield CounterMetricFamily(
            "meshfed_dns_dropped", "DNS packets dropped without an answer", value=stats.dropped
        )
        yield CounterMetricFamily(
            "meshfed_dns_truncated", "Forwarded UDP answers truncated (TC)", value=stats.truncated
        )
        yield CounterMetricFamily(
            "meshfed_dns_send_failures", "UDP replies not sent", value=stats.send_failures
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
    """The portable UDP path: one datagram per callback."""

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
                self._server.forward_udp(data, addr, action.udp_size)
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
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DnsServer:
    """UDP + TCP DNS server. Replace `table` (one assignment) to change every answer at once.

    `udp_batching`: None uses recvmmsg/sendmmsg where available, False forces the asyncio
    datagram transport.
    """

    def __init__(
        self,
        table: DnsTable,
        *,
        upstream: Upstream | None = None,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
        max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS,
        udp_batching: bool | None = None,
    ) -> None:
        self.table = table
        self.upstream = upstream
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.udp_batching = batchio.available() if udp_batching is None else udp_batching
        if self.udp_batching and not batchio.available():
            raise ValueError("batched UDP (recvmmsg) is not available on this platform")
        self.stats = DnsStats()
        self._udp_sock: socket.socket | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self.batch_reader: batchio.UdpBatchReader | None = None
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
                    if self.upstream is not None:
                        self.upstream.close()
                    raise
        loop = asyncio.get_running_loop()
        self._udp_sock = udp_sock
        if self.udp_batching:
            self.batch_reader = batchio.UdpBatchReader(udp_sock, self, self.stats)
            loop.add_reader(udp_sock.fileno(), self.batch_reader.on_readable)
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=udp_sock
            )
            self._udp_transport = transport
        self._address = (host, int(udp_sock.getsockname()[1]))
        return self._address

    async def close(self) -> None:
        if self._udp_transport is not None:
            self._udp_transport.close()
            self._udp_transport = None
        elif self._udp_sock is not None:
            asyncio.get_running_loop().remove_reader(self._udp_sock.fileno())
            self._udp_sock.close()
        self._udp_sock = None
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

    # --- UDP ------------------------------------------------------------------------------------

    def respond_udp(self) -> Callable[[bytes], Action]:
        return self.table.respond

    def forward_udp(self, query: bytes, addr: tuple[str, int], udp_size: int) -> None:
        """Answers `query` from the upstream in the background, then replies to `addr`."""
        task = asyncio.ensure_future(self._forward_udp(query, addr, udp_size))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(self, query: bytes, addr: tuple[str, int], udp_size: int) -> None:
        reply = await self._forward(query, tcp=False)
        if len(reply) > udp_size:
            reply = truncate_for_udp(reply, udp_size)
            self.stats.truncated += 1
        self.stats.rcodes[reply[3] & 0x0F] += 1
        if self._udp_transport is not None:
            self._udp_transport.sendto(reply, addr)
        elif self._udp_sock is not None:
            try:
                self._udp_sock.sendto(reply, addr)
            except OSError as exc:
                self.stats.send_failures += 1
                log.debug("sendto %s: %s", addr, exc)

    async def _forward(self, query: bytes, tcp: bool) -> bytes:
        assert self.upstream is not None, "a forwarding table needs an upstream"
        self.stats.forwarded += 1
        return await self.upstream.resolve(query, tcp=tcp)

    # --- TCP ------------------------------------------------------------------------------------

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
