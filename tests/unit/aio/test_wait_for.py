"""meshfed.aio.wait_for keeps a cancellation that races a completion (3.11's does not)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from meshfed.aio import wait_for

WaitFor = Callable[[Awaitable[Any], float | None], Awaitable[Any]]


async def _cancel_while_woken(wf: WaitFor) -> asyncio.Task[None]:
    """A "wake-up event or tick" loop, cancelled in the same iteration its event is set:
    exactly what a control plane's flush loop sees when zones disconnect during shutdown."""
    wake = asyncio.Event()

    async def tick_loop() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await wf(wake.wait(), 10)
            wake.clear()

    task = asyncio.create_task(tick_loop())
    await asyncio.sleep(0.01)  # the loop now waits on the event
    wake.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    return task


async def test_cancellation_racing_a_completion_ends_the_task() -> None:
    task = await _cancel_while_woken(wait_for)
    assert task.cancelled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 rebuilt wait_for on timeout()")
async def test_the_standard_wait_for_loses_that_cancellation_on_3_11() -> None:
    # Why meshfed.aio exists: if this starts failing, the interpreter fixed the bug.
    task = await _cancel_while_woken(asyncio.wait_for)
    assert not task.done()
    task.cancel()  # a second cancel lands while the loop waits again
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()


async def test_times_out_and_returns_results() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(1), 0.01)
    assert await wait_for(asyncio.sleep(0, result=7), 1) == 7
    assert await wait_for(asyncio.sleep(0, result=8), None) == 8
