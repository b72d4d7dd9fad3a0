"""The ingress data path in-process over loopback: ClientHello read in pieces and replayed
unchanged, refusals, failover and draining. The backends are plain TCP servers that record
what they get: the ingress never looks past the ClientHello, so no TLS server is needed."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService
from meshfed.dpconfig.sni import encode_sni
from tests.support import async_wait_until, free_port
from zone_ingress.server import IngressServer

SNI = encode_sni("backend", "default")


def client_hello(sni: str = SNI) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


class Backend:
    """Records everything received, answers with its name, echoes after that."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.received = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.name)
        while chunk := await reader.read(65536):
            self.received += chunk
            writer.write(chunk)
        writer.close()

    def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@contextlib.asynccontextmanager
async def ingress(*backends: Backend, hello_timeout: float = 2.0) -> AsyncIterator[IngressServer]:
    endpoints = tuple(Endpoint("127.0.0.1", b.port, "zone-2") for b in backends)
    server = IngressServer("127.0.0.1", 0, hello_timeout=hello_timeout, connect_timeout=1.0)
    await server.apply(
        IngressConfig(
            "zone-2", "i", (IngressService("default", "backend", SNI, endpoints),)
        ).stamped()
    )
    server.start()
    try:
        yield server
    finally:
        await server.drain(0.1)


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [Backend(b"one|"), Backend(b"two|")]
    for b in started:
        await b.start()
    yield started
    for b in started:
        with contextlib.suppress(AssertionError):
            b.stop()


async def test_hello_in_pieces_is_routed_and_replayed_unchanged(backends: list[Backend]) -> None:
    hello = client_hello()
    async with ingress(*backends) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for i in range(0, len(hello), 7):  # dribbled, but well within the timeout
            writer.write(hello[i : i + 7])
            await writer.drain()
        writer.write(b"after the hello")
        assert await reader.readexactly(4) == b"one|"
        echoed = await reader.readexactly(len(hello) + 15)
        assert echoed == hello + b"after the hello"
        writer.close()
        assert backends[0].received == hello + b"after the hello"
        stats = server.services[("default", "backend")]

        async def finished() -> bool:
            return stats.active == 0

        await async_wait_until(finished, what="the connection to end")
        assert stats.bytes_in() == len(hello) + 15
        assert stats.bytes_out() == 4 + len(hello) + 15


async def test_refusals_are_counted(backends: list[Backend]) -> None:
    async with ingress(*backends, hello_timeout=0.3) as server:
        for data in (b"GET / HTTP/1.1\r\n\r\n", client_hello("example.com"), client_hello()[:20]):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(data)
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        assert server.rejected == {"not_tls": 1, "unknown_sni": 1, "timeout": 1}
        assert not backends[0].received and not backends[1].received


async def test_a_dead_instance_is_skipped_and_none_left_is_refused(
    backends: list[Backend],
) -> None:
    backends[0].stop()
    async with ingress(*backends) as server:
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(client_hello())
            assert await reader.readexactly(4) == b"two|"
            writer.close()
        backends[1].stop()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(client_hello())
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert server.rejected == {"no_endpoint": 1}
        assert server.services[("default", "backend")].connect_failures == 3


async def test_drain_waits_for_open_connections_then_cuts(backends: list[Backend]) -> None:
    server = IngressServer("127.0.0.1", free_port(), hello_timeout=1.0)
    await server.apply(
        IngressConfig(
            "zone-2",
            "i",
            (
                IngressService(
                    "default", "backend", SNI, (Endpoint("127.0.0.1", backends[0].port, "z"),)
                ),
            ),
        )
    )
    server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(client_hello())
    assert await reader.readexactly(4) == b"one|"
    drain = asyncio.create_task(server.drain(0.3))
    await asyncio.sleep(0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    assert await drain == 1  # still open at the deadline: cut
    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 1)
    writer.close()
