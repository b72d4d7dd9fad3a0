"""The watch fan-out on its own: subscriptions, history bounds, threads and cleanup."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from meshfed.resources.model import Meta, Resource
from meshfed.store._watch import WatchHub
from meshfed.store.base import CompactedError, EventKind, WatchEvent, WatchOverflowError


def ev(revision: int, name: str = "r") -> WatchEvent:
    return WatchEvent(EventKind.PUT, Resource("MeshRetry", Meta(name=name, mesh="m")), revision)


async def test_history_is_bounded_and_commits_are_never_split() -> None:
    hub = WatchHub(history=3)
    hub.publish([ev(1)])
    hub.publish([ev(2, "a"), ev(2, "b"), ev(2, "c")])
    assert hub.compacted_through == 1
    hub.publish([ev(3)])  # drops ev(2, "a"): revision 2 can no longer be replayed whole
    assert hub.compacted_through == 2
    with pytest.raises(CompactedError, match="compacted through revision 2"):
        hub.watch(from_revision=1)
    watch = hub.watch(from_revision=2)
    assert (await anext(watch)).revision == 3
    hub.close()


async def test_initial_history_and_compaction_point() -> None:
    hub = WatchHub(history=10, initial=[ev(6), ev(7)], compacted_through=5)
    with pytest.raises(CompactedError):
        hub.watch(from_revision=4)
    assert [(await anext(hub.watch(from_revision=5))).revision] == [6]
    hub.close()


async def test_publishing_from_another_thread_wakes_the_loop() -> None:
    hub = WatchHub()
    watch = hub.watch()

    def publish_all() -> None:
        for i in range(1, 101):
            hub.publish([ev(i)])

    worker = threading.Thread(target=publish_all)
    worker.start()

    async def collect() -> list[int]:
        return [(await anext(watch)).revision for _ in range(100)]

    assert await asyncio.wait_for(collect(), 10) == list(range(1, 101))
    await asyncio.to_thread(worker.join)
    hub.close()


async def test_cancel_break_and_aclose_unsubscribe() -> None:
    hub = WatchHub()

    async def consume() -> None:
        async for _ in hub.watch():
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the task subscribe and start waiting
    assert hub.watcher_count() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub.watcher_count() == 0

    async def first() -> WatchEvent:
        async for event in hub.watch():
            return event  # leaves the loop: the iterator is dropped
        raise AssertionError("unreachable")

    reader = asyncio.create_task(first())
    await asyncio.sleep(0)
    hub.publish([ev(1)])
    assert (await reader).revision == 1
    gc.collect()
    hub.publish([ev(2)])  # publishing prunes the dropped watcher
    assert hub.watcher_count() == 0

    explicit = hub.watch()
    assert hub.watcher_count() == 1
    await explicit.aclose()  # type: ignore[attr-defined]
    assert hub.watcher_count() == 0
    hub.close()


async def test_overflow_keeps_queued_events_then_fails() -> None:
    hub = WatchHub(max_pending=3)
    watch = hub.watch()
    for i in range(1, 6):
        hub.publish([ev(i)])
    assert [(await anext(watch)).revision for _ in range(3)] == [1, 2, 3]
    with pytest.raises(WatchOverflowError) as info:
        await anext(watch)
    assert info.value.last_revision == 3 and info.value.limit == 3
    assert hub.watcher_count() == 0
    hub.close()


async def test_replay_is_not_limited_by_max_pending() -> None:
    hub = WatchHub(history=100, max_pending=2)
    for i in range(1, 51):
        hub.publish([ev(i)])
    watch = hub.watch(from_revision=0)
    assert [(await anext(watch)).revision for _ in range(50)] == list(range(1, 51))
    hub.close()


async def test_close_ends_current_and_later_watches() -> None:
    hub = WatchHub()
    current = hub.watch()
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await anext(current)
    with pytest.raises(StopAsyncIteration):
        await anext(hub.watch())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        WatchHub(history=-1)
    with pytest.raises(ValueError):
        WatchHub(max_pending=0)
