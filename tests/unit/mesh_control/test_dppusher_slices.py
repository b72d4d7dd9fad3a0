"""A pass of many rebuilds gives the event loop a turn every few builds, and builds the proxies
still waiting for their first config first (decision 182): with callers rebuilt once per
window, a pass may hold a thousand of them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.mesh_control.test_dppusher_incremental import (
    NAMES,
    Services,
    pusher_of,
    session,
    sidecar_resource,
)
from zone_cp import dppusher
from zone_cp.dpsession import Session


async def test_a_pass_builds_the_new_proxies_first_and_lets_the_loop_run_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dppusher, "PASS_SLICE", 1)
    services = Services()
    sessions: dict[Any, Session] = {}
    for name in NAMES:
        res = sidecar_resource(name, "web", ready=True)
        services.put(res)
        sessions[res.key] = session(res, None)
    pusher = pusher_of(services, sessions)
    services.publish()
    old = [k for k in sorted(sessions) if k[2] != NAMES[-1]]
    for key in old:
        sessions[key].subscription.config_sent = "an older version"
    new = next(k for k in sessions if k not in old)

    queued: list[list[bool]] = []  # after each turn: which proxies have a config queued

    async def watch() -> None:
        while True:
            queued.append([not sessions[k].outbox.empty() for k in [new, *old]])
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    assert await pusher._rebuild_in_slices(set(sessions))
    watcher.cancel()
    turns = [q for q in queued if any(q)]
    assert turns[0] == [True, False, False]  # the new proxy first, the loop ran after it
    assert [True, True, False] in turns
    assert all(not s.outbox.empty() for s in sessions.values())
