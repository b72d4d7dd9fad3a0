"""A zone given several global replicas moves to the next one when its connection fails, and
resumes there (real gRPC servers on loopback; the replicas share one policy source, as
replicas share one store)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from meshfed.backoff import Backoff
from meshfed.kds.client import CONNECTED, KdsClient
from meshfed.kds.receiver import Receiver
from meshfed.kds.stream import DictSource, ReceiveSide
from tests.support import free_port
from tests.unit.kds.test_stream import (
    DOWN,
    MTP,
    UP,
    Hooks,
    Sink,
    accept,
    digest,
    fast_global,
    policy,
    serving,
    until,
)
from tests.unit.kds.zone_keys import KEYS


def test_a_client_needs_a_target() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        KdsClient([], "zone-1", up_types=UP, source=DictSource(), down=_down(Sink()))


def _down(sink: Sink) -> ReceiveSide:
    return ReceiveSide(Receiver(DOWN), sink.apply, accept)


async def test_zone_fails_over_between_replicas_and_resumes() -> None:
    shared = DictSource()  # both replicas serve the same state, as on one store
    shared.put(MTP, policy("p1", action="Allow"))
    hooks_a, hooks_b = Hooks(shared), Hooks(shared)
    port_a, port_b = free_port(), free_port()
    sink = Sink()
    receiver = Receiver(DOWN)
    client = KdsClient(
        [f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"],
        "zone-1",
        up_types=UP,
        source=DictSource(),
        down=ReceiveSide(receiver, sink.apply, accept),
        backoff=Backoff(initial=0.02, maximum=0.2),
        stale_timeout=3.0,
        token=KEYS.token("zone-1"),
    )
    assert client.target == f"127.0.0.1:{port_a}"
    task = asyncio.create_task(client.run())
    try:
        # A is down: the zone moves on to B after one failed attempt and syncs there.
        async with serving(fast_global(hooks_b), port_b):
            await until(lambda: client.state == CONNECTED, "connected to B")
            assert client.target == f"127.0.0.1:{port_b}"
            await until(lambda: sink.digest() == digest(shared, DOWN), "synced through B")
            assert hooks_b.events == [("connected", "zone-1")] and hooks_a.events == []
            shared.put(MTP, policy("p2", action="Deny"))
            await until(lambda: sink.digest() == digest(shared, DOWN), "change through B")
            applied = len(sink.applied)
        # B went away with A back up: the zone moves to A and resumes (nothing re-sent).
        async with serving(fast_global(hooks_a), port_a):
            await until(
                lambda: client.state == CONNECTED and client.target == f"127.0.0.1:{port_a}",
                "connected to A",
                timeout=10,
            )
            assert hooks_a.events == [("connected", "zone-1")]
            shared.put(MTP, policy("p3", action="Allow"))
            await until(lambda: sink.digest() == digest(shared, DOWN), "change through A")
            new = [r.name for cs in sink.applied[applied:] for r in cs.upserts]
            assert new == ["p3"]
        assert client.sessions >= 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
