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
from zone_cp.dns.stats import NO_QUESTION, OTHER_QTYPE, DnsStats, answer_slot
from zone_cp.dns.upstream import Upstream

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 5653
DEFAULT_TCP_IDLE_TIMEOUT: Final = 10.0
DEFAULT_MAX_TCP_CONNECTIONS: Final = 1024
# One address may hold a quarter of the connections: when it asks for more, its own oldest
# idle connection is closed, so one client cannot push everyone else's out.
DEFAULT_MAX_TCP_PER_SOURCE: Final = 256
_RCODE_NAMES: Final = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
# Room for bursts while the process is busy elsewhere (the kernel caps it at rmem_max).
_UDP_RCVBUF: Final = 4 * 1024 * 1024

__all__ = ["DEFAULT_PORT", "DnsServer", "DnsStats", "DnsStatsCollector"]


_QTYPE_NAMES: Final = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    41: "OPT",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
    OTHER_QTYPE: "other",
    NO_QUESTION: "none",
}


def _qtype_name(qtype: int) -> str:
    """Mnemonic, else RFC 3597's `TYPE<n>` (`other` above 255, `none`: no question)."""
    return _QTYPE_NAMES.get(qtype) or f"TYPE{qtype}"


def _rcode_name(code: int) -> str:
    return _RCODE_NAMES[code] if code < len(_RCODE_NAMES) else str(code)


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
        by_rcode = [0] * 16
        by_type = CounterMetricFamily(
            "meshfed_dns_answers",
            "DNS responses sent, by question type and rcode",
            labels=["qtype", "rcode"],
        )
        for slot, count in enumerate(stats.answers):
            if count:
                by_rcode[slot & 0x0F] += count
                by_type.add_metric([_qtype_name(slot >> 4), _rcode_name(slot & 0x0F)], count)
        answers = CounterMetricFamily(
            "meshfed_dns_responses", "DNS responses sent, by rcode", labels=["rcode"]
        )
        for code, count in enumerate(by_rcode):
            if code < len(_RCODE_NAMES) or count:
                answers.add_metric([_rcode_name(code)], count)
        yield answers
        yield by_type
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
        yield GaugeMetricFamily(
            "meshfed_dns_tcp_connections",
            "Open DNS-over-TCP connections",
            value=self._server.tcp_connections,
        )
        yield CounterMetricFamily(
            "meshfed_dns_tcp_idle_closed",
            "Idle TCP connections closed to make room for new ones",
            value=stats.tcp_evicted,
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
                stats.answers[answer_slot(action)] += 1
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


class _TcpConn:
    """One DNS-over-TCP connection. While it waits for a query (idle, or mid-query, which a
    slow client could stretch) it is in `DnsServer._tcp_waiting` and may be closed for a new
    connection; while it is answered it is not."""

    __slots__ = ("source", "writer")

    def __init__(self, source: str, writer: asyncio.StreamWriter) -> None:
        self.source = source
        self.writer = writer


class DnsServer:
    """UDP + TCP DNS server. Replace `table` (one assignment) to change every answer at once.

    `udp_batching`: None uses recvmmsg/sendmmsg where available, False forces the asyncio
    datagram transport.

    TCP connections are bounded (RFC 7766 section 6.2 asks servers to manage them): each is
    closed after `tcp_idle_timeout` seconds without a complete query; at most
    `max_tcp_connections` are open, at most `max_tcp_per_source` from one address. A new
    connection is never turned away for idle ones: when a limit is reached the connection
    waiting longest for a query (of that address, for the per-address limit) is closed to make
    room. Only when every connection is busy answering is the new one closed.
    """

    def __init__(
        self,
        table: DnsTable,
        *,
        upstream: Upstream | None = None,
        tcp_idle_timeout: float = DEFAULT_TCP_IDLE_TIMEOUT,
        max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS,
        max_tcp_per_source: int = DEFAULT_MAX_TCP_PER_SOURCE,
        udp_batching: bool | None = None,
    ) -> None:
        if tcp_idle_timeout <= 0 or max_tcp_connections < 1 or max_tcp_per_source < 1:
            raise ValueError("TCP idle timeout and connection limits must be positive")
        self.table = table
        self.upstream = upstream
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.max_tcp_per_source = max_tcp_per_source
        self.udp_batching = batchio.available() if udp_batching is None else udp_batching
        if self.udp_batching and not batchio.available():
            raise ValueError("batched UDP (recvmmsg) is not available on this platform")
        self.stats = DnsStats()
        self._udp_sock: socket.socket | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self.batch_reader: batchio.UdpBatchReader | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Every open TCP connection, by source address; and those waiting for a query, the
        # longest-waiting first (a dict keeps insertion order: re-inserting moves to the end).
        self._tcp_by_source: dict[str, dict[_TcpConn, None]] = {}
        self._tcp_waiting: dict[_TcpConn, None] = {}
        self._tcp_count = 0
        self._address: tuple[str, int] | None = None

    @property
    def tcp_connections(self) -> int:
        """Open DNS-over-TCP connections."""
        return self._tcp_count

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
        self.stats.answers[answer_slot(reply)] += 1
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

    def _admit(self, conn: _TcpConn) -> bool:
        """Makes room for `conn` within the limits (closing idle connections) and registers
        it; False when every connection in the way is busy answering."""
        same = self._tcp_by_source.get(conn.source)
        if same is not None and len(same) >= self.max_tcp_per_source:
            oldest = next((c for c in self._tcp_waiting if c.source == conn.source), None)
            if oldest is None:
                return False
            self._evict(oldest)
        if self._tcp_count >= self.max_tcp_connections:
            oldest = next(iter(self._tcp_waiting), None)
            if oldest is None:
                return False
            self._evict(oldest)
        self._tcp_by_source.setdefault(conn.source, {})[conn] = None
        self._tcp_count += 1
        return True

    def _forget(self, conn: _TcpConn) -> None:
        self._tcp_waiting.pop(conn, None)
        same = self._tcp_by_source.get(conn.source)
        if same is not None and same.pop(conn, 0) is None:
            self._tcp_count -= 1
            if not same:
                del self._tcp_by_source[conn.source]

    def _evict(self, conn: _TcpConn) -> None:
        """Closes an idle connection now; its handler then ends on the closed stream."""
        self._forget(conn)
        self.stats.tcp_evicted += 1
        conn.writer.transport.abort()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766 framing: 2-byte length, several queries per connection, answered in order."""
        peer = writer.get_extra_info("peername")
        conn = _TcpConn(str(peer[0]) if peer else "", writer)
        if not self._admit(conn):
            self.stats.dropped += 1
            writer.transport.abort()
            return
        waiting = self._tcp_waiting
        try:
            while True:
                waiting[conn] = None  # longest-waiting first: a new wait goes to the end
                async with asyncio.timeout(self.tcp_idle_timeout):
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                    query = await reader.readexactly(size)
                if waiting.pop(conn, 0) is not None:
                    return  # closed to make room while the query arrived
                try:
                    reply = await self._answer_tcp(query)
                except Exception:
                    self.stats.errors += 1
                    log.debug("error answering over TCP", exc_info=True)
                    reply = None
                if reply is not None:
                    self.stats.answers[answer_slot(reply)] += 1
                    writer.write(struct.pack(">H", len(reply)) + reply)
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # idle, closed by the client, reset or closed for room: normal ends
        except Exception:
            self.stats.errors += 1
            log.debug("TCP connection failed", exc_info=True)
        finally:
            self._forget(conn)
            writer.close()
