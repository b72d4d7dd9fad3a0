"""A zone the global refuses keeps backing off (the backoff restarts only once
both streams are accepted), and a second live zone-cp with the same zone name is refused with
a clear error instead of endlessly replacing the first one's streams."""

from __future__ import annotations

from typing import Any, cast

from meshfed.kds.server import GlobalHooks, KdsServer, ZoneSession
from meshfed.kds.stream import Liveness
from meshfed.store.memory import MemoryStore
from tests.inprocess_federation import Global, zone_kds
from tests.support import async_wait_until
from tests.unit.kds.zone_keys import KEYS


async def test_a_refused_zone_keeps_backing_off_and_never_counts_as_connected(
    glob: Global,
) -> None:
    status, body = await glob.call(
        "PUT", "/zones/zone-1", {"type": "Zone", "name": "zone-1", "enabled": False}
    )
    assert status == 201, body
    async with zone_kds(glob, "zone-1") as kds:
        client = kds.client
        assert client is not None

        async def backed_off() -> bool:
            return client.backoff.attempt >= 5  # 0.1 s doubling, capped at 0.3 s here

        await async_wait_until(backed_off, timeout=15, what="the backoff to grow")
        assert client.connected_time is None and client.state != "connected"
        assert client.last_error.startswith("PERMISSION_DENIED: zone 'zone-1' is disabled")
        assert kds.status()["lastError"] == client.last_error


async def test_a_second_live_instance_of_a_zone_is_refused_and_takes_over_later(
    glob: Global,
) -> None:
    async with zone_kds(glob, "zone-1", MemoryStore()) as first:
        one = first.client
        assert one is not None
        await async_wait_until(lambda: _connected(one), what="the first zone-cp connected")
        async with zone_kds(glob, "zone-1", MemoryStore()) as second:
            two = second.client
            assert two is not None

            async def refused() -> bool:
                return "already connected from another zone control plane" in two.last_error

            await async_wait_until(refused, what="the second zone-cp refused")
            assert two.last_error.startswith("ALREADY_EXISTS: ")
            # The refused zone-cp learns nothing about the live one (issue 11).
            assert one.instance_id not in two.last_error and "heard from" not in two.last_error
            assert two.connected_time is None
            await async_wait_until(lambda: _refused_again(two), what="a second refusal")
            # The first one was never disturbed: still its first session.
            assert one.state == "connected" and one.sessions == 1
            status, overview = await glob.call("GET", "/zones/zone-1/_overview")
            assert status == 200
            insight = overview["zoneInsight"]
            assert insight["state"] == "online" and len(insight["subscriptions"]) == 1
            assert "already connected" in insight["lastError"] and insight["lastErrorTime"]
            # The admin sees which instances (ZoneOverview needs no secret to read, but only
            # the zone's token holders can cause this).
            assert one.instance_id in insight["lastError"]

            # The first zone-cp stops: the second one's next attempt is accepted.
            await first.stop()
            await async_wait_until(lambda: _connected(two), timeout=15, what="takeover")
            status, overview = await glob.call("GET", "/zones/zone-1/_overview")
            assert (status, overview["zoneInsight"]["state"]) == (200, "online")


def test_a_silent_old_instance_is_replaced_a_live_one_is_not() -> None:
    """The rule itself: a new instance is refused only while the old one is connected and
    was heard from within the window (2.5 heartbeat intervals here)."""
    now = [100.0]
    hooks = cast(GlobalHooks, object())  # the rule needs no hook
    server = KdsServer(
        hooks,
        down_types=[],
        authenticator=KEYS.authenticator(),
        health_interval=1.0,
        stale_timeout=10.0,
    )
    session = ZoneSession("zone-1", Liveness(clock=lambda: now[0]), instance="old")
    assert server._other_instance(session, "new") == ""  # no stream open: nothing to protect
    session._stops["global-to-zone"] = lambda reason: None
    refusal = server._other_instance(session, "new")
    assert "already connected" in refusal and "old" not in refusal
    assert "instance old" in session.last_error  # the admin's view says which
    assert session.last_error.startswith("zone 'zone-1' is already connected")
    assert server._other_instance(session, "old") == ""  # its own reconnect replaces
    assert server._other_instance(session, "") == ""  # a client that names no instance
    now[0] += 2.6  # silent past the window: dead, or half-dead
    assert server._other_instance(session, "new") == ""


async def _connected(client: Any) -> bool:
    return bool(client.state == "connected")


async def _refused_again(client: Any) -> bool:
    return bool(client.sessions >= 2)
