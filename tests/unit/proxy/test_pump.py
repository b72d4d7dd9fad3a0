"""The byte pump over real loopback TCP sockets, in splice mode and in copy mode."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from meshfed.proxy.pump import SPLICE_AVAILABLE, PumpStats, pump
from tests.support import async_wait_until

MiB = 1 << 20
PEER_TIMEOUT = 60.0
MODES = [
    pytest.param(
        True, id="splice", marks=pytest.mark.skipif(not SPLICE_AVAILABLE, reason="no splice")
    ),
    pytest.param(False, id="copy"),
]


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    a.settimeout(PEER_TIMEOUT)
    b.settimeout(PEER_TIMEOUT)
    return a, b


@dataclass
class Rig:
    """client peer <-> (proxy_client ... pump ... proxy_server) <-> server peer"""

    client: socket.socket
    proxy_client: socket.socket
    proxy_server: socket.socket
    server: socket.socket

    def close_peers(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    client, proxy_client = tcp_pair()
    proxy_server, server = tcp_pair()
    r = Rig(client, proxy_client, proxy_server, server)
    yield r
    for sock in (client, proxy_client, proxy_server, server):
        sock.close()


def send_and_shut(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    buf = bytearray(MiB)
    while n := sock.recv_into(buf):
        out += buf[:n]
    return bytes(out)


def in_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    return asyncio.ensure_future(asyncio.to_thread(fn, *args))


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("use_splice", MODES)
async def test_64_mib_each_way_arrive_intact_after_the_initial_bytes(
    rig: Rig, use_splice: bool
) -> None:
    rnd = random.Random(7)
    up, down = rnd.randbytes(64 * MiB), rnd.randbytes(64 * MiB)
    hello = b"\x16\x03\x01 pretend ClientHello"
    peers = [
        in_thread(send_and_shut, rig.client, up),
        in_thread(recv_all, rig.server),
        in_thread(send_and_shut, rig.server, down),
        in_thread(recv_all, rig.client),
    ]
    stats = await pump(rig.proxy_client, rig.proxy_server, initial=hello, use_splice=use_splice)
    _, at_server, _, at_client = await asyncio.gather(*peers)
    assert at_server == hello + up
    assert at_client == down
    assert stats == PumpStats(
        client_to_server=len(hello) + len(up),
        server_to_client=len(down),
        mode="splice" if use_splice else "copy",
        error=None,
    )
    assert rig.proxy_client.fileno() == -1 and rig.proxy_server.fileno() == -1


@pytest.mark.parametrize("use_splice", MODES)
async def test_half_close_request_then_response(rig: Rig, use_splice: bool) -> None:
    """The client's EOF reaches the server while the response still flows back."""
    request, response = b"GET / HTTP/1.0\r\n\r\n", b"x" * (3 * MiB + 17)

    def server() -> bytes:
        got = recv_all(rig.server)  # returns only once the client's FIN came through
        send_and_shut(rig.server, response)
        return got

    def client() -> bytes:
        send_and_shut(rig.client, request)
        return recv_all(rig.client)

    peers = [in_thread(server), in_thread(client)]
    stats = await pump(rig.proxy_client, rig.proxy_server, use_splice=use_splice)
    assert await asyncio.gather(*peers) == [request, response]
    assert (stats.client_to_server, stats.server_to_client, stats.error) == (
        len(request),
        len(response),
        None,
    )


@pytest.mark.parametrize("use_splice", MODES)
async def test_server_closes_first_and_the_client_keeps_sending(rig: Rig, use_splice: bool) -> None:
    def client() -> bytes:
        assert recv_all(rig.client) == b"bye"  # EOF from the server arrived first
        send_and_shut(rig.client, b"still talking" * 1000)
        return b"ok"

    def server() -> bytes:
        send_and_shut(rig.server, b"bye")
        return recv_all(rig.server)

    peers = [in_thread(client), in_thread(server)]
    stats = await pump(rig.proxy_client, rig.proxy_server, use_splice=use_splice)
    assert await asyncio.gather(*peers) == [b"ok", b"still talking" * 1000]
    assert stats.error is None


@pytest.mark.parametrize("use_splice", MODES)
@pytest.mark.parametrize("who", ["server", "client"])
async def test_a_reset_aborts_both_sides(rig: Rig, use_splice: bool, who: str) -> None:
    resetter, other = (rig.server, rig.client) if who == "server" else (rig.client, rig.server)
    task = asyncio.create_task(pump(rig.proxy_client, rig.proxy_server, use_splice=use_splice))
    await asyncio.to_thread(other.sendall, b"a" * 100_000)
    await asyncio.to_thread(resetter.recv, 10)  # bytes flow: the pump is running
    reset(resetter)
    stats = await asyncio.wait_for(task, PEER_TIMEOUT)
    assert stats.error is not None and "reset" in stats.error.lower()
    # The other peer learns about it as a reset too, not as a clean end of stream.
    with pytest.raises(ConnectionResetError):
        await asyncio.to_thread(recv_all, other)


@pytest.mark.parametrize("use_splice", MODES)
async def test_counters_are_live_and_cancel_closes_everything(rig: Rig, use_splice: bool) -> None:
    fds_before = open_fds()
    stats = PumpStats()
    task = asyncio.create_task(
        pump(rig.proxy_client, rig.proxy_server, stats=stats, use_splice=use_splice)
    )
    await asyncio.to_thread(rig.client.sendall, b"u" * MiB)
    await asyncio.to_thread(rig.server.sendall, b"d" * 1000)

    async def moved() -> bool:
        return stats.client_to_server == MiB and stats.server_to_client == 1000

    await async_wait_until(moved, timeout=PEER_TIMEOUT, what="bytes counted while running")
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.proxy_client.fileno() == -1 and rig.proxy_server.fileno() == -1
    # Everything the pump opened (pipes, registrations) is gone; the peers are told by RST.
    assert open_fds() == fds_before - 2
    with pytest.raises(ConnectionResetError):
        await asyncio.to_thread(recv_all, rig.client)


@pytest.mark.parametrize("use_splice", MODES)
async def test_many_concurrent_pumps(use_splice: bool) -> None:
    loop = asyncio.get_running_loop()
    fds_before = set(os.listdir("/proc/self/fd"))

    async def peer(sock: socket.socket, payload: bytes) -> bytes:
        sock.setblocking(False)

        async def send() -> None:
            await loop.sock_sendall(sock, payload)
            sock.shutdown(socket.SHUT_WR)

        async def recv() -> bytes:
            out = bytearray()
            while chunk := await loop.sock_recv(sock, 65536):
                out += chunk
            return bytes(out)

        try:
            _, got = await asyncio.gather(send(), recv())
        finally:
            sock.close()
        return got

    async def one(i: int) -> None:
        client, proxy_client = tcp_pair()
        proxy_server, server = tcp_pair()
        up, down = random.Random(i).randbytes(96 * 1024 + i), bytes([i % 256]) * (64 * 1024)
        results = await asyncio.gather(
            pump(proxy_client, proxy_server, use_splice=use_splice),
            peer(client, up),
            peer(server, down),
        )
        stats, at_client, at_server = results
        assert (at_server, at_client) == (up, down)
        assert (stats.client_to_server, stats.server_to_client) == (len(up), len(down))

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), PEER_TIMEOUT)
    # Nothing the pumps opened is left. (Compared as sets: something of an earlier test may
    # close its own descriptors meanwhile, which a count would read as a mismatch.)
    assert set(os.listdir("/proc/self/fd")) - fds_before == set()


async def test_falls_back_to_copying_when_the_kernel_refuses_splice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some socket types cannot be spliced; bytes already in the pipe must not be lost."""
    if not SPLICE_AVAILABLE:
        pytest.skip("no splice")
    real_splice = os.splice
    refuse_fd = rig.proxy_server.fileno()

    def splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if dst == refuse_fd:  # reading into the pipe works, writing out to the server fails
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_splice(src, dst, count, *args, **kwargs)

    monkeypatch.setattr(os, "splice", splice)
    data = random.Random(3).randbytes(5 * MiB)
    peers = [
        in_thread(send_and_shut, rig.client, data),
        in_thread(recv_all, rig.server),
        in_thread(send_and_shut, rig.server, b"pong"),
        in_thread(recv_all, rig.client),
    ]
    stats = await pump(rig.proxy_client, rig.proxy_server, use_splice=True)
    _, at_server, _, at_client = await asyncio.gather(*peers)
    assert (at_server, at_client) == (data, b"pong")
    assert stats.mode == "mixed" and stats.client_to_server == len(data)


async def test_refuses_tls_sockets(rig: Rig) -> None:
    ctx = ssl.create_default_context()
    with (
        ctx.wrap_socket(socket.socket(), server_hostname="x", do_handshake_on_connect=False) as tls,
        pytest.raises(TypeError, match="SSLSocket"),
    ):
        await pump(tls, rig.proxy_server)
