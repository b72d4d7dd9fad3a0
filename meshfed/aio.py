"""asyncio helpers the whole code base uses instead of the standard ones they fix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for` without Python 3.11's lost cancellation (CPython gh-86296).

    On 3.11, cancelling a task inside `asyncio.wait_for` while the awaited thing completes in
    the same loop iteration returns its result and drops the cancellation: a loop such as
    "wait for a wake-up event or a tick" then never ends, and shutdown hangs. `asyncio.timeout`
    (what 3.12's `wait_for` is built on) keeps the cancellation. Raises TimeoutError.
    """
    async with asyncio.timeout(timeout):
        return await aw


async def first_completed(*aws: Awaitable[Any]) -> Any:
    """Runs the coroutines until the first one returns (its result) or raises (re-raised);
    the others are cancelled and awaited, so no task outlives the call."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        return (failed or list(done))[0].result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancels `task` (if any) and waits until it has ended, its cancellation swallowed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
