"""The registrations' concurrency helpers: a lock per proxy, coalesced store round trips, and
the split of coalesced writes into batches without a key twice (decision 123)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.unit.policy.factories import dataplane, inbound
from zone_cp.dpbatch import Coalescer, KeyedLock, unique_runs


async def test_one_key_at_a_time_other_keys_concurrently() -> None:
    locks = KeyedLock()
    order: list[str] = []
    gate = asyncio.Event()

    async def hold(key: str, tag: str) -> None:
        async with locks.hold(key):
            order.append(f"{tag} in")
            await gate.wait()
            order.append(f"{tag} out")

    first = asyncio.create_task(hold("a", "a1"))
    second = asyncio.create_task(hold("a", "a2"))
    other = asyncio.create_task(hold("b", "b1"))
    await asyncio.sleep(0)
    assert order == ["a1 in", "b1 in"]  # a2 waits for a1; b1 does not
    gate.set()
    await asyncio.gather(first, second, other)
    assert order.index("a2 in") > order.index("a1 out")
    assert len(locks) == 0  # forgotten once free


async def test_a_cancelled_waiter_releases_its_key() -> None:
    locks = KeyedLock()
    async with locks.hold("a"):
        waiter = asyncio.create_task(_hold_briefly(locks, "a"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(locks) == 0


async def _hold_briefly(locks: KeyedLock, key: str) -> None:
    async with locks.hold(key):
        pass


async def test_concurrent_submissions_share_a_flush() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        calls.append(items)
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    answers = await asyncio.gather(*(coalescer.submit(i) for i in range(5)))
    assert answers == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3, 4]]


async def test_a_flush_is_bounded_and_later_items_go_in_the_next() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> Sequence[int | Exception]:
        calls.append(items)
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=2)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 1, 2, 3, 4]
    assert calls == [[0, 1], [2, 3], [4]]


async def test_a_failure_is_raised_to_its_own_caller_only() -> None:
    async def flush(items: list[int]) -> Sequence[int | Exception]:
        return [ValueError(f"bad {i}") if i == 1 else i for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    answers = await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
    assert answers[0] == 0 and answers[2] == 2
    assert isinstance(answers[1], ValueError)


async def test_a_failed_flush_fails_its_batch_and_the_next_still_runs() -> None:
    async def flush(items: list[int]) -> Sequence[int | Exception]:
        if 0 in items:
            raise RuntimeError("store down")
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush)
    with pytest.raises(RuntimeError, match="store down"):
        await coalescer.submit(0)
    assert await coalescer.submit(7) == 7


def test_runs_never_hold_a_key_twice_and_keep_the_order() -> None:
    a, b, c = (dataplane(n, inbound("web", 8080)) for n in ("a", "b", "c"))
    assert unique_runs([[a], [b], [c]]) == [[0, 1, 2]]
    # a written twice: the second write goes in a later batch, after the first
    assert unique_runs([[a, b], [c], [a], [b]]) == [[0, 1], [2, 3]]
    assert unique_runs([[a], [a], [a]]) == [[0], [1], [2]]
    assert unique_runs([]) == []
