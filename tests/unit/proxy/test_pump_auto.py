"""The pump's default (auto) mode and the relay's takeover of a caller's registration.

Auto mode copies until one read brings a bulk amount, then splices that direction; these
tests pin that small flows never pay for a pipe and bulk flows end up spliced, intact."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator

import pytest

from meshfed.proxy.pump import SPLICE_AVAILABLE, PumpStats, Relay, pump
from tests.unit.proxy.test_pump import Rig, in_thread, open_fds, recv_all, send_and_shut, tcp_pair

MiB = 1 << 20


@pytest.fixture
def rig() -> Iterator[Rig]:
    client, proxy_client = tcp_pair()
    proxy_server, server = tcp_pair()
    r = Rig(client, proxy_client, proxy_server, server)
    yield r
    for sock in (client, proxy_client, proxy_server, server):
        sock.close()


async def test_small_exchange_stays_in_copy_mode(rig: Rig) -> None:
    fds_before = open_fds()
    peers = [
        in_thread(send_and_shut, rig.client, b"ping"),
        in_thread(recv_all, rig.server),
        in_thread(send_and_shut, rig.server, b"pong"),
        in_thread(recv_all, rig.client),
    ]
    stats = await pump(rig.proxy_client, rig.proxy_server)
    _, at_server, _, at_client = await asyncio.gather(*peers)
    assert (at_server, at_client) == (b"ping", b"pong")
    assert (stats.mode, stats.client_to_server, stats.server_to_client) == ("copy", 4, 4)
    assert open_fds() == fds_before - 2  # no pipe was ever opened; both proxy sockets closed


@pytest.mark.skipif(not SPLICE_AVAILABLE, reason="no splice")
async def test_bulk_direction_switches_to_splice_and_arrives_intact(rig: Rig) -> None:
    up = random.Random(1).randbytes(16 * MiB + 3)
    peers = [
        in_thread(send_and_shut, rig.client, up),
        in_thread(recv_all, rig.server),
        in_thread(send_and_shut, rig.server, b"ok"),
        in_thread(recv_all, rig.client),
    ]
    stats = await pump(rig.proxy_client, rig.proxy_server, initial=b"hello")
    _, at_server, _, at_client = await asyncio.gather(*peers)
    assert at_server == b"hello" + up and at_client == b"ok"
    assert stats.mode == "splice"
    assert (stats.client_to_server, stats.server_to_client) == (5 + len(up), 2)


async def test_relay_takes_over_a_registered_reader(rig: Rig) -> None:
    """The ingress reads the ClientHello with its own reader and hands it to the relay. While
    the relay waits to send the initial bytes (the server is full), the old callback must not
    run on the caller's next bytes, and nothing stays registered at the end."""
    loop = asyncio.get_running_loop()
    rig.proxy_client.setblocking(False)
    rig.proxy_server.setblocking(False)
    prefill = 0
    with contextlib.suppress(BlockingIOError):
        while True:  # the server reads nothing yet: fill the path towards it
            prefill += rig.proxy_server.send(b"p" * 65536)
    stale_calls = 0

    def stale() -> None:
        nonlocal stale_calls
        stale_calls += 1

    fds_before = open_fds()
    client_fd = rig.proxy_client.fileno()
    loop.add_reader(client_fd, stale)
    send_and_shut(rig.client, b"x" * 1000)  # waits in the kernel, readable meanwhile
    ended: asyncio.Future[PumpStats] = loop.create_future()
    relay = Relay(
        rig.proxy_client,
        rig.proxy_server,
        stats=PumpStats(),
        on_done=lambda r: ended.set_result(r.stats),
    )
    relay.start(b"first|", client_watched=True)
    for _ in range(5):  # loop turns in which a leftover registration would fire
        await asyncio.sleep(0)
    peers = [
        in_thread(recv_all, rig.server),
        in_thread(send_and_shut, rig.server, b"y"),
        in_thread(recv_all, rig.client),
    ]
    stats = await ended
    at_server, _, at_client = await asyncio.gather(*peers)
    assert at_server == b"p" * prefill + b"first|" + b"x" * 1000 and at_client == b"y"
    assert stats.error is None and stale_calls == 0
    assert open_fds() == fds_before - 2
    assert not loop.remove_reader(client_fd)  # the relay dropped the registration it took
