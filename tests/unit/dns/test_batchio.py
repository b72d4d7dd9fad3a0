"""Batched UDP: whole bursts answered correctly, mixed with drops, forwards and oversizes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.unit.dns.wire import a_records, parse, query
from zone_cp.dns import batchio
from zone_cp.dns.answers import RCODE_NXDOMAIN, DnsTable
from zone_cp.dns.server import DnsServer
from zone_cp.dns.upstream import Upstream

pytestmark = pytest.mark.skipif(not batchio.available(), reason="needs Linux recvmmsg")

RECORDS = [("backend.mesh", "127.1.0.1"), ("web.mesh", "127.1.0.2")]
HUGE = [("huge.mesh", f"127.2.{i // 250}.{i % 250 + 1}") for i in range(300)]  # ~4.8 kB


@pytest.fixture
async def servers() -> AsyncIterator[tuple[DnsServer, DnsServer]]:
    upstream = DnsServer(DnsTable([("ext.example.com", "10.0.0.1")], domain="example.com"))
    await upstream.start("127.0.0.1", 0)
    server = DnsServer(
        DnsTable(RECORDS + HUGE, forwarding=True),
        upstream=Upstream(*upstream.address),
        udp_batching=True,
    )
    await server.start("127.0.0.1", 0)
    yield server, upstream
    await server.close()
    await upstream.close()


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(replies) < count:
            replies.append(await loop.sock_recv(sock, 65535))
    return replies


async def test_a_mixed_burst_gets_every_reply_to_the_right_client(
    servers: tuple[DnsServer, DnsServer],
) -> None:
    server, _ = servers
    clients = [client() for _ in range(3)]
    expected: dict[int, dict[int, str]] = {i: {} for i in range(3)}
    qid = 0
    # Sent with plain blocking calls: the event loop (and so the server) does not run until all
    # 150 datagrams sit in the socket queue, so they are read as full batches.
    for n in range(50):
        for c, sock in enumerate(clients):
            qid += 1
            kind = (n + c) % 5
            if kind == 0:
                sock.sendto(b"\xff" * 7, server.address)  # no header: dropped
            elif kind == 1:
                response = bytearray(query("web.mesh", qid=qid))
                response[2] |= 0x80
                sock.sendto(bytes(response), server.address)  # a response: dropped
            elif kind == 2:
                sock.sendto(query("ext.example.com", qid=qid), server.address)  # forwarded
                expected[c][qid] = "10.0.0.1"
            elif kind == 3:
                sock.sendto(query("nosuch.mesh", qid=qid), server.address)
                expected[c][qid] = "NXDOMAIN"
            else:
                sock.sendto(query("backend.mesh", qid=qid), server.address)
                expected[c][qid] = "127.1.0.1"
    try:
        for c, sock in enumerate(clients):
            got: dict[int, str] = {}
            for reply in await receive(sock, len(expected[c])):
                parsed = parse(reply)
                if parsed.header.rcode == RCODE_NXDOMAIN:
                    got[parsed.header.id] = "NXDOMAIN"
                else:
                    got[parsed.header.id] = a_records(reply)[0]
            assert got == expected[c]
        assert server.stats.dropped == 60 and server.stats.forwarded == 30
        assert server.stats.queries_udp == 150 and server.stats.errors == 0
        assert server.batch_reader is not None and server.batch_reader.largest_batch > 10
    finally:
        for sock in clients:
            sock.close()


async def test_reply_larger_than_a_slot_is_still_sent(
    servers: tuple[DnsServer, DnsServer],
) -> None:
    server, _ = servers
    sock = client()
    try:
        sock.sendto(query("huge.mesh", qid=1, edns=65535), server.address)
        sock.sendto(query("backend.mesh", qid=2), server.address)
        replies = {parse(r).header.id: r for r in await receive(sock, 2)}
        assert len(replies[1]) > batchio.DEFAULT_SLOT
        assert len(a_records(replies[1])) == 300
        assert a_records(replies[2]) == ["127.1.0.1"]
    finally:
        sock.close()


async def test_datagram_larger_than_a_slot_is_dropped(
    servers: tuple[DnsServer, DnsServer],
) -> None:
    server, _ = servers
    sock = client()
    try:
        sock.sendto(query("backend.mesh", qid=1) + b"\x00" * 5000, server.address)
        sock.sendto(query("web.mesh", qid=2), server.address)
        [reply] = await receive(sock, 1)
        assert parse(reply).header.id == 2
        assert server.stats.dropped == 1
    finally:
        sock.close()


async def test_ipv6_clients() -> None:
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = DnsServer(DnsTable(RECORDS), udp_batching=True)
    await server.start("::1", 0)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.sendto(query("web.mesh"), server.address)
        [reply] = await receive(sock, 1)
        assert a_records(reply) == ["127.1.0.2"]
    finally:
        sock.close()
        await server.close()
