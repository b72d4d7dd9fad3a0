"""Ingress connect paths the main suite does not reach: endpoints named by hostname, and
callers whose ClientHello is already waiting when the connection is accepted."""

from __future__ import annotations

import asyncio
import socket

from meshfed.dpconfig.model import Endpoint, IngressConfig, IngressService
from tests.unit.zone_ingress.test_server import SNI, Backend, client_hello
from zone_ingress.server import IngressServer


async def serve(*endpoints: Endpoint) -> IngressServer:
    server = IngressServer("127.0.0.1", 0, hello_timeout=2.0, connect_timeout=1.0)
    await server.apply(
        IngressConfig("zone-2", "i", (IngressService("default", "backend", SNI, endpoints),))
    )
    server.start()
    return server


async def test_a_hostname_endpoint_is_resolved_and_its_addresses_tried() -> None:
    """`localhost` may resolve to ::1 first while the instance listens on 127.0.0.1 only:
    every resolved address is an attempt of its own."""
    backend = Backend(b"host|")
    await backend.start()
    server = await serve(Endpoint("localhost", backend.port, "zone-2"))
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(client_hello() + b"after")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"host|"
            writer.close()
        assert server.rejected == {}
    finally:
        await server.drain(0.5)
        backend.stop()


async def test_an_unresolvable_hostname_falls_over_to_the_next_endpoint() -> None:
    backend = Backend(b"next|")
    await backend.start()
    server = await serve(
        Endpoint("no-such-host.invalid", 1, "zone-2"), Endpoint("127.0.0.1", backend.port, "z")
    )
    try:
        for _ in range(2):  # round robin starts once at each endpoint
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(client_hello())
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"next|"
            writer.close()
        assert server.services[("default", "backend")].connect_failures == 1
    finally:
        await server.drain(0.5)
        backend.stop()


async def test_hello_sent_before_the_accept_is_read_at_once() -> None:
    """The caller's whole first flight is queued before the ingress accepts it: the first
    read gets it without waiting for readiness, and the bytes after it are replayed too."""
    backend = Backend(b"b|")
    await backend.start()
    server = await serve(Endpoint("127.0.0.1", backend.port, "zone-2"))
    hello = client_hello()
    loop = asyncio.get_running_loop()
    try:
        # A blocking connect completes in the kernel backlog before the loop gets to accept.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(hello + b"tail")
        sock.setblocking(False)
        got = b""
        while len(got) < 2 + len(hello) + 4:
            got += await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert got == b"b|" + hello + b"tail"
        sock.close()
    finally:
        await server.drain(0.5)
        backend.stop()
