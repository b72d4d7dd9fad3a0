"""The protocol-level relay between two transports, over real loopback sockets in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from mesh_dp.relay import ByteCounter, Link, Side


@dataclass
class Relay:
    port: int
    counter: ByteCounter
    closed: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


async def echo_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to EOF, then answers with everything it read and closes (needs half-close)."""
    data = await reader.read()
    writer.write(b"got:" + data)
    await writer.drain()
    writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    writer.close()


@asynccontextmanager
async def relay_to(
    handler: object, *, idle: float = 0.0, connect_delay: float = 0.0
) -> AsyncIterator[Relay]:
    loop = asyncio.get_running_loop()
    upstream_server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    up_port = upstream_server.sockets[0].getsockname()[1]
    relay = Relay(0, ByteCounter())
    tasks: set[asyncio.Task[None]] = set()

    async def connect(client: Side) -> None:
        await asyncio.sleep(connect_delay)
        upstream = Side(downstream=False)
        await loop.create_connection(lambda: upstream, "127.0.0.1", up_port)
        link = Link(
            client,
            upstream,
            idle_timeout=idle,
            on_close=lambda _link, reason: relay.closed.append(reason),
        )
        relay.links.append(link)
        link.start()

    def accepted() -> Side:
        side = Side(downstream=True, counter=relay.counter)
        task = asyncio.ensure_future(connect(side))
        tasks.add(task)
        return side

    server = await loop.create_server(accepted, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        server.close()
        upstream_server.close()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_bytes_pass_both_ways_unchanged_and_are_counted() -> None:
    payload = os.urandom(3 * 1024 * 1024)
    async with relay_to(echo) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()

        sender = asyncio.create_task(send())
        got = await reader.readexactly(len(payload))
        await sender
        assert got == payload
        writer.close()
        await writer.wait_closed()
        await wait_for(lambda: relay.closed)
    assert relay.counter.received == len(payload) == relay.counter.sent


async def test_half_close_reaches_the_other_side() -> None:
    async with relay_to(echo_then_close) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"request")
        writer.write_eof()
        assert await reader.read() == b"got:request"
        writer.close()
        await wait_for(lambda: relay.closed)


async def test_bytes_sent_before_the_upstream_exists_are_delivered() -> None:
    async with relay_to(echo, connect_delay=0.2) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"early bytes")
        assert await reader.readexactly(11) == b"early bytes"
        writer.close()


async def test_idle_timeout_closes_quiet_links_only() -> None:
    async with relay_to(echo, idle=0.3) as relay:
        quiet_r, quiet_w = await asyncio.open_connection("127.0.0.1", relay.port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", relay.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < 0.8:
            busy_w.write(b"x")
            assert await busy_r.readexactly(1) == b"x"
            await asyncio.sleep(0.05)
        assert await asyncio.wait_for(quiet_r.read(), 1) == b""
        assert any(r.startswith("idle for") for r in relay.closed)
        busy_w.write(b"y")
        assert await busy_r.readexactly(1) == b"y"
        # A new idle timeout applies to an open link right away.
        for link in relay.links:
            link.set_idle_timeout(0.05)
        assert await asyncio.wait_for(busy_r.read(), 1) == b""
        quiet_w.close()
        busy_w.close()


async def test_a_reset_on_one_side_resets_the_other() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with linger 0: an RST, not a FIN

    async with relay_to(reset) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"!")
        with suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        await wait_for(lambda: relay.closed)
        assert relay.closed[0].startswith("connection lost: ConnectionResetError")
        writer.close()


async def test_an_upstream_eof_is_passed_on_and_the_link_ends_with_the_client() -> None:
    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        writer.write(b"bye")
        writer.close()

    async with relay_to(answer_and_close) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"!")
        assert await reader.read() == b"bye"
        assert relay.closed == []  # half-closed: the client may still send
        writer.close()
        await wait_for(lambda: relay.closed)
        assert relay.closed == ["both sides finished"] or relay.closed == ["closed"]


async def wait_for(predicate: object, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
