"""Concurrency helpers of the config server's registrations (issue 19, decision 123).

Registrations of different proxies run concurrently (a lock per proxy keeps the same proxy's
takeover and refusal in order), and the store reads and writes of everything registering at
the same moment are coalesced: one `get_many` and one `write_batch` for all of them, instead
of several round trips each through the store's single connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from meshfed.resources.model import Resource
from meshfed.store.base import StoreKey

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256  # items per flush: bounds one write_batch (etcd splits larger ones anyway)


class KeyedLock:
    """One asyncio.Lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Coalescer(Generic[T, R]):
    """`submit(item)` returns `flush([... item ...])`'s answer for it: the items submitted
    while a flush runs go together in the next one (at most `max_batch` each), so concurrent
    callers share one round trip. `flush` answers one result per item, in order; an
    Exception instance in its answer is raised to that item's caller only."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._flush = flush
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.flushes = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="dp-coalescer")
        return await future  # a cancelled caller's item is still flushed, its answer dropped

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                self.flushes += 1
                try:
                    answers = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    answers = [exc] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():
                        continue
                    if isinstance(answer, Exception):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
                batch = []
        finally:  # cancelled (the process stops): nobody waits forever
            self._runner = None
            for _, future in [*batch, *self._pending]:
                future.cancel()
            self._pending = []


def unique_runs(puts: Sequence[Sequence[Resource]]) -> list[list[int]]:
    """Groups the indexes of `puts` (each a list of resources to write together) into runs, in
    order, such that no key appears twice in a run: a write_batch refuses a key twice, and the
    later write of a key must land after the earlier one."""
    runs: list[list[int]] = []
    seen: set[StoreKey] = set()
    for i, group in enumerate(puts):
        keys = {r.key for r in group}
        if not runs or keys & seen:
            runs.append([])
            seen = set()
        runs[-1].append(i)
        seen |= keys
    return runs
