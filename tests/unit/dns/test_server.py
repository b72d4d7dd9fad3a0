"""The asyncio server in-process, over real loopback sockets: UDP, TCP framing, forwarding."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from prometheus_client import CollectorRegistry, generate_latest

from tests.support import async_wait_until, free_port
from tests.unit.dns.wire import a_records, parse, query
from zone_cp.dns import batchio
from zone_cp.dns.answers import RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, DnsTable
from zone_cp.dns.server import DnsServer, DnsStatsCollector
from zone_cp.dns.upstream import Upstream, parse_address

RECORDS = [("backend.mesh", "127.1.0.1"), ("web.mesh", "127.1.0.2")]
Start = Callable[..., Awaitable[DnsServer]]
UPSTREAM_RECORDS = [("ext.example.com", "10.0.0.1")] + [
    ("big.example.com", f"10.0.1.{i}") for i in range(1, 61)
]


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)


async def udp_ask(addr: tuple[str, int], packet: bytes, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_Client, remote_addr=addr)
    try:
        transport.sendto(packet)
        return await asyncio.wait_for(client.replies.get(), timeout)
    finally:
        transport.close()


async def tcp_ask(addr: tuple[str, int], *packets: bytes, timeout: float = 5.0) -> list[bytes]:
    """Sends all packets on one connection (pipelined), returns the replies in order."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"".join(struct.pack(">H", len(p)) + p for p in packets))
        await writer.drain()
        replies = []
        async with asyncio.timeout(timeout):
            for _ in packets:
                size = struct.unpack(">H", await reader.readexactly(2))[0]
                replies.append(await reader.readexactly(size))
        return replies
    finally:
        writer.close()


UDP_PATHS = [
    pytest.param(
        True,
        id="batched",
        marks=pytest.mark.skipif(not batchio.available(), reason="needs Linux recvmmsg/sendmmsg"),
    ),
    pytest.param(False, id="asyncio"),
]


@pytest.fixture(params=UDP_PATHS)
async def start(request: pytest.FixtureRequest) -> AsyncIterator[Start]:
    """Starts servers with either UDP path; every test below runs against both."""
    servers: list[DnsServer] = []

    async def _start(table: DnsTable, **kwargs: Any) -> DnsServer:
        server = DnsServer(table, udp_batching=request.param, **kwargs)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.close()


async def test_udp_and_tcp_answer(start: Start) -> None:
    server = await start(DnsTable(RECORDS))
    assert server.address is not None
    assert a_records(await udp_ask(server.address, query("backend.mesh"))) == ["127.1.0.1"]
    [reply] = await tcp_ask(server.address, query("web.mesh"))
    assert a_records(reply) == ["127.1.0.2"]


async def test_tcp_carries_several_queries_in_order(
    start: Start,
) -> None:
    server = await start(DnsTable(RECORDS))
    packets = [query(n, qid=i) for i, n in enumerate(["backend.mesh", "nosuch.mesh", "web.mesh"])]
    replies = await tcp_ask(server.address, *packets)
    assert [parse(r).header.id for r in replies] == [0, 1, 2]
    assert a_records(replies[0]) == ["127.1.0.1"]
    assert parse(replies[1]).header.rcode == RCODE_NXDOMAIN
    assert a_records(replies[2]) == ["127.1.0.2"]


async def test_tcp_skips_unanswerable_messages_and_keeps_the_connection(
    start: Start,
) -> None:
    server = await start(DnsTable(RECORDS))
    reader, writer = await asyncio.open_connection(*server.address)
    # An empty message and a 3-byte one get no answer; the query after them does.
    packet = query("web.mesh")
    writer.write(b"\x00\x00" + b"\x00\x03abc" + struct.pack(">H", len(packet)) + packet)
    await writer.drain()
    size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
    assert a_records(await reader.readexactly(size)) == ["127.1.0.2"]
    writer.close()
    assert server.stats.dropped == 2


async def test_idle_tcp_connections_are_closed(
    start: Start,
) -> None:
    server = await start(DnsTable(RECORDS), tcp_idle_timeout=0.2)
    reader, writer = await asyncio.open_connection(*server.address)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF from the server
    writer.close()


async def _held(addr: tuple[str, int], source: str = "127.0.0.1") -> asyncio.StreamReader:
    """An open TCP connection from `source` that was answered once and is now idle."""
    reader, writer = await asyncio.open_connection(*addr, local_addr=(source, 0))
    packet = query("web.mesh")
    writer.write(struct.pack(">H", len(packet)) + packet)
    size = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
    await reader.readexactly(size)
    reader.writer = writer  # type: ignore[attr-defined]  # a dropped writer closes the socket
    return reader


def _close(*readers: asyncio.StreamReader) -> None:
    for reader in readers:
        reader.writer.close()  # type: ignore[attr-defined]


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


async def test_a_new_connection_closes_the_longest_idle_one_at_the_limit(start: Start) -> None:
    server = await start(DnsTable(RECORDS), max_tcp_connections=3)
    held = [await _held(server.address) for _ in range(3)]
    assert server.tcp_connections == 3
    # The limit never turns a new query away: the longest-idle connection makes room.
    [reply] = await tcp_ask(server.address, query("backend.mesh"))
    assert a_records(reply) == ["127.1.0.1"]
    assert await _closed(held[0])
    assert server.stats.tcp_evicted == 1
    assert not held[1].at_eof() and not held[2].at_eof()
    assert server.tcp_connections <= 3
    _close(*held)


async def test_one_address_cannot_push_out_the_others(start: Start) -> None:
    server = await start(DnsTable(RECORDS), max_tcp_connections=100, max_tcp_per_source=2)
    other = await _held(server.address, "127.0.0.2")
    mine = [await _held(server.address, "127.0.0.3") for _ in range(2)]
    for _ in range(5):  # past its own limit, an address closes its own oldest idle ones
        mine.append(await _held(server.address, "127.0.0.3"))
    assert all([await _closed(r) for r in mine[:5]])
    assert not other.at_eof() and not mine[5].at_eof() and not mine[6].at_eof()
    assert server.tcp_connections == 3
    assert server.stats.tcp_evicted == 5
    _close(other, *mine)


async def test_a_connection_is_closed_when_every_other_is_busy(start: Start) -> None:
    server = await start(DnsTable(RECORDS), max_tcp_connections=1)
    # Stand in for a connection being answered (not waiting for a query: not closable).
    _reader, writer = await asyncio.open_connection(*server.address)
    await async_wait_until(_is(lambda: server.tcp_connections == 1), timeout=5)
    server._tcp_waiting.clear()
    reader2, writer2 = await asyncio.open_connection(*server.address)
    assert await _closed(reader2)
    assert server.stats.dropped == 1
    writer.close()
    writer2.close()


def _is(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


async def test_table_swap_takes_effect_on_the_next_query(
    start: Start,
) -> None:
    server = await start(DnsTable(RECORDS))
    assert a_records(await udp_ask(server.address, query("backend.mesh"))) == ["127.1.0.1"]
    server.table = DnsTable([("backend.mesh", "127.1.0.77")])
    assert a_records(await udp_ask(server.address, query("backend.mesh"))) == ["127.1.0.77"]
    assert parse(await udp_ask(server.address, query("web.mesh"))).header.rcode == RCODE_NXDOMAIN


async def test_garbage_is_survived_and_counted(
    start: Start,
) -> None:
    server = await start(DnsTable(RECORDS))
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_Client, remote_addr=server.address)
    for junk in (b"\x01", b"\xff" * 11, b"\x00\x01\x81\x00" + b"\x00" * 20):
        transport.sendto(junk)
    transport.sendto(query("backend.mesh", qid=4242))
    reply = await asyncio.wait_for(client.replies.get(), 5)
    transport.close()
    assert parse(reply).header.id == 4242
    assert server.stats.dropped == 3 and server.stats.errors == 0


async def test_metrics_collector(start: Start) -> None:
    server = await start(DnsTable(RECORDS))
    await udp_ask(server.address, query("backend.mesh"))
    await udp_ask(server.address, query("nosuch.mesh"))
    await udp_ask(server.address, query("example.com"))
    await tcp_ask(server.address, query("web.mesh"))
    registry = CollectorRegistry()
    registry.register(DnsStatsCollector(server))
    text = generate_latest(registry).decode()
    assert 'meshfed_dns_queries_total{transport="udp"} 3.0' in text
    assert 'meshfed_dns_queries_total{transport="tcp"} 1.0' in text
    assert 'meshfed_dns_responses_total{rcode="NOERROR"} 2.0' in text
    assert 'meshfed_dns_responses_total{rcode="NXDOMAIN"} 1.0' in text
    assert 'meshfed_dns_responses_total{rcode="REFUSED"} 1.0' in text
    assert "meshfed_dns_names 2.0" in text
    assert 'meshfed_dns_answers_total{qtype="A",rcode="NOERROR"} 2.0' in text
    assert 'meshfed_dns_answers_total{qtype="A",rcode="NXDOMAIN"} 1.0' in text


async def test_answers_are_counted_by_question_type(start: Start) -> None:
    server = await start(DnsTable(RECORDS))
    await udp_ask(server.address, query("backend.mesh", qtype="AAAA"))
    await udp_ask(server.address, query("backend.mesh", qtype="SRV"))
    await udp_ask(server.address, query("backend.mesh", qtype=4000))
    await udp_ask(server.address, b"\x00\x07\x01\x00\x00\x02" + b"\x00" * 6)  # two questions
    registry = CollectorRegistry()
    registry.register(DnsStatsCollector(server))
    text = generate_latest(registry).decode()
    for qtype in ("AAAA", "SRV", "other"):
        assert f'meshfed_dns_answers_total{{qtype="{qtype}",rcode="NOERROR"}} 1.0' in text, qtype
    assert 'meshfed_dns_answers_total{qtype="none",rcode="FORMERR"} 1.0' in text


# --- forwarding -------------------------------------------------------------------------------


async def test_forwarding_to_an_upstream(start: Start) -> None:
    upstream = await start(DnsTable(UPSTREAM_RECORDS, domain="example.com"))
    server = await start(DnsTable(RECORDS, forwarding=True), upstream=Upstream(*upstream.address))
    reply = await udp_ask(server.address, query("EXT.example.com", qid=321))
    assert parse(reply).header.id == 321 and a_records(reply) == ["10.0.0.1"]
    assert parse(reply).q.qname.label == (b"EXT", b"example", b"com")
    assert a_records(await udp_ask(server.address, query("backend.mesh"))) == ["127.1.0.1"]
    # The upstream refuses what is not its domain; that answer comes back as is.
    refused = await udp_ask(server.address, query("other.org"))
    assert parse(refused).header.rcode == RCODE_REFUSED
    assert server.stats.forwarded == 2 and upstream.stats.queries_udp == 2


async def test_truncated_upstream_answer_makes_the_client_retry_over_tcp(
    start: Start,
) -> None:
    upstream = await start(DnsTable(UPSTREAM_RECORDS, domain="example.com"))
    server = await start(DnsTable(RECORDS, forwarding=True), upstream=Upstream(*upstream.address))
    over_udp = parse(await udp_ask(server.address, query("big.example.com")))
    assert over_udp.header.tc == 1 and over_udp.rr == []
    [over_tcp] = await tcp_ask(server.address, query("big.example.com", qid=77))
    assert parse(over_tcp).header.id == 77 and len(a_records(over_tcp)) == 60
    assert upstream.stats.queries_tcp == 1  # the server asked the upstream over TCP


class _SloppyUpstream(asyncio.DatagramProtocol):
    """An upstream that ignores the client's size limit (some do): always 60 A records."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = DNSRecord.parse(data)
        reply = request.reply()
        for i in range(60):
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(f"10.0.2.{i}"), ttl=5))
        self.transport.sendto(bytes(reply.pack()), addr)  # type: ignore[attr-defined]


async def test_oversized_upstream_answer_is_truncated_for_the_client(
    start: Start,
) -> None:
    loop = asyncio.get_running_loop()
    sloppy, _ = await loop.create_datagram_endpoint(_SloppyUpstream, local_addr=("127.0.0.1", 0))
    try:
        host, port = sloppy.get_extra_info("sockname")[:2]
        server = await start(DnsTable(RECORDS, forwarding=True), upstream=Upstream(host, port))
        small = await udp_ask(server.address, query("x.org", qid=5))
        assert len(small) <= 512 and parse(small).header.tc == 1 and parse(small).header.id == 5
        large = await udp_ask(server.address, query("x.org", edns=4096))
        assert len(a_records(large)) == 60
        assert server.stats.truncated == 1
    finally:
        sloppy.close()


async def test_silent_upstream_gives_servfail(
    start: Start,
) -> None:
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        host, port = silent.get_extra_info("sockname")[:2]
        upstream = Upstream(host, port, timeout=0.2)
        server = await start(DnsTable(RECORDS, forwarding=True), upstream=upstream)
        reply = parse(await udp_ask(server.address, query("example.com", qid=9, edns=1232)))
        assert reply.header.rcode == RCODE_SERVFAIL and reply.header.id == 9
        assert str(reply.q.qname) == "example.com."
        [over_tcp] = await tcp_ask(server.address, query("example.com"))
        assert parse(over_tcp).header.rcode == RCODE_SERVFAIL
        assert upstream.timeouts == 2
    finally:
        silent.close()


async def test_upstream_refusing_connections_gives_servfail(
    start: Start,
) -> None:
    # Nothing listens on this port: ICMP errors or timeouts, either way SERVFAIL, quickly.
    upstream = Upstream("127.0.0.1", free_port(), timeout=0.3)
    server = await start(DnsTable(RECORDS, forwarding=True), upstream=upstream)
    reply = parse(await udp_ask(server.address, query("example.com")))
    assert reply.header.rcode == RCODE_SERVFAIL


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:53", 5653) == ("127.0.0.1", 53)
    assert parse_address("127.0.0.1", 5653) == ("127.0.0.1", 5653)
    assert parse_address("[::1]:54", 53) == ("::1", 54)
    assert parse_address("[::1]", 53) == ("::1", 53)
    for bad in ("", ":53", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1", "[::1]x"):
        with pytest.raises(ValueError):
            parse_address(bad, 53)
