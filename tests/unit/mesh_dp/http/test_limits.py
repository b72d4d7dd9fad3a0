"""MeshCircuitBreaker request limits (mesh_dp/http/limits.py)."""

from __future__ import annotations

import asyncio

import pytest

from mesh_dp.http.limits import Caps, Limits


def test_requests_and_retries_are_counted_against_their_caps() -> None:
    limits = Limits(Caps(max_requests=2, max_retries=1))
    assert limits.try_acquire_request() and limits.try_acquire_request()
    assert not limits.try_acquire_request()
    limits.release_request()
    assert limits.try_acquire_request()
    assert limits.try_acquire_retry() and not limits.try_acquire_retry()
    limits.release_retry()
    assert limits.try_acquire_retry()
    assert limits.overflows == 2


def test_connection_pools_cap_only_new_endpoints() -> None:
    limits = Limits(Caps(max_connection_pools=2))
    assert not limits.pools_full(1, has_pool=False)
    assert limits.pools_full(2, has_pool=False)
    assert not limits.pools_full(2, has_pool=True)


def test_pending_requests_wait_for_a_freed_connection_up_to_the_cap() -> None:
    async def run() -> None:
        limits = Limits(Caps(max_pending_requests=1))
        waiter = asyncio.create_task(limits.wait_pending(5.0))
        await asyncio.sleep(0)
        assert limits.pending == 1
        assert not await limits.wait_pending(5.0)  # the queue is full
        limits.freed()
        assert await waiter
        assert limits.pending == 0
        with pytest.raises(TimeoutError):
            await limits.wait_pending(0.01)
        assert limits.pending == 0

    asyncio.run(run())
