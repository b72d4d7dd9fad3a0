"""Fan-out of committed changes to watchers, with a bounded replay history.

Backends call `WatchHub.publish` right after each commit, in commit order, possibly from a
database thread; watchers consume on their event loop. One lock orders publishing against
subscribing, so a watch that replays history and then goes live never misses or repeats an
event. Each watcher has its own queue: a slow watcher never blocks a writer, and one that
falls more than `max_pending` events behind is stopped with `WatchOverflowError` instead of
growing without bound (it can resume from the last revision it saw).

A watch may name the types it wants: the others are left out when the event is queued, so
they cost that watcher neither a copy nor a place in its queue. Each event is copied for its
watcher when taken, unless the watcher promised not to mutate it (`copy=False`): a zone's
mirrors would otherwise deep-copy every policy of a cold sync once each.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterable, Sequence

from meshfed.store.base import CompactedError, WatchEvent, WatchOverflowError

DEFAULT_HISTORY = 10_000
DEFAULT_MAX_PENDING = 100_000


def watched_types(types: Collection[str] | None) -> frozenset[str] | None:
    """A watch's type filter, checked: None watches every type; a bare string (one type
    given without a list) or an empty filter is a caller's mistake, not "nothing"."""
    if types is None:
        return None
    if isinstance(types, str):
        raise TypeError(f"types must be a collection of type names, not the string {types!r}")
    wanted = frozenset(types)
    if not wanted:
        raise ValueError("types must name at least one type (None: every type)")
    for name in wanted:
        if not isinstance(name, str) or not name:
            raise ValueError(f"types must be non-empty type names, got {name!r}")
    return wanted


class _Subscriber:
    """One watcher's queue. Fields other than `closed` are guarded by the hub's lock."""

    __slots__ = (
        "after",
        "closed",
        "copy",
        "ended",
        "last_delivered",
        "limit",
        "loop",
        "overflowed",
        "pending",
        "types",
        "wakeup",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        after: int,
        types: frozenset[str] | None = None,
        copy: bool = True,
    ) -> None:
        self.loop = loop
        self.limit = limit
        # Events at or below this revision are never delivered (a watch may start "in the future").
        self.after = after
        self.types = types  # None: every type
        self.copy = copy
        self.last_delivered = after
        self.pending: deque[WatchEvent] = deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.ended = False  # the store closed
        # Set without the lock (also from __del__), so the publisher prunes lazily.
        self.closed = False

    def offer(self, events: Sequence[WatchEvent], bounded: bool = True) -> None:
        if self.overflowed or self.ended or self.closed:
            return
        after, types = self.after, self.types
        if types is None:
            fresh = [ev for ev in events if ev.revision > after]
        else:
            fresh = [ev for ev in events if ev.revision > after and ev.resource.type in types]
        if not fresh:
            return
        if bounded and len(self.pending) + len(fresh) > self.limit:
            self.overflowed = True
        else:
            self.pending.extend(fresh)
        self.wake()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.wakeup.set)
        except RuntimeError:  # the watcher's loop is closed: nobody will read again
            self.closed = True


class WatchHub:
    def __init__(
        self,
        history: int = DEFAULT_HISTORY,
        max_pending: int = DEFAULT_MAX_PENDING,
        *,
        initial: Iterable[WatchEvent] = (),
        compacted_through: int = 0,
    ) -> None:
        if history < 0 or max_pending < 1:
            raise ValueError("history must be >= 0 and max_pending >= 1")
        self._lock = threading.Lock()
        self._history_limit = history
        self._max_pending = max_pending
        self._history: deque[WatchEvent] = deque()
        # Events with a revision <= this may have been dropped from the history.
        self._compacted_through = compacted_through
        self._subs: list[_Subscriber] = []
        self._closed = False
        self._append(list(initial))

    @property
    def compacted_through(self) -> int:
        with self._lock:
            return self._compacted_through

    def watcher_count(self) -> int:
        with self._lock:
            return sum(1 for sub in self._subs if not sub.closed)

    def _append(self, events: Sequence[WatchEvent]) -> None:
        self._history.extend(events)
        while len(self._history) > self._history_limit:
            self._compacted_through = self._history.popleft().revision

    def publish(self, events: Sequence[WatchEvent]) -> None:
        """Records one commit's events; must be called in commit order."""
        if not events:
            return
        with self._lock:
            self._append(events)
            live: list[_Subscriber] = []
            for sub in self._subs:
                sub.offer(events)
                if not sub.closed:
                    live.append(sub)
            self._subs = live

    def watch(
        self,
        from_revision: int | None = None,
        *,
        types: Collection[str] | None = None,
        copy: bool = True,
    ) -> AsyncIterator[WatchEvent]:
        """Subscribes now (not at first iteration), so no event after this call is missed.
        See ResourceStore.watch for `types` and `copy`."""
        if from_revision is not None and from_revision < 0:
            raise ValueError(f"from_revision must be >= 0, got {from_revision}")
        wanted = watched_types(types)
        loop = asyncio.get_running_loop()
        with self._lock:
            if from_revision is None:
                sub = _Subscriber(loop, self._max_pending, -1, wanted, copy)
            else:
                if from_revision < self._compacted_through:
                    raise CompactedError(from_revision, self._compacted_through)
                sub = _Subscriber(loop, self._max_pending, from_revision, wanted, copy)
                # Replay is bounded by the history size, not by max_pending.
                sub.offer(list(self._history), bounded=False)
            if self._closed:
                sub.ended = True
            else:
                self._subs.append(sub)
        return _Watch(self, sub)

    def _take(self, sub: _Subscriber) -> WatchEvent | None:
        """The next event, None if none is ready; raises when the watch is over."""
        with self._lock:
            if sub.pending:
                event = sub.pending.popleft()
                sub.last_delivered = event.revision
                return event
            if sub.overflowed:
                raise WatchOverflowError(sub.limit, sub.last_delivered)
            if sub.ended or sub.closed:
                raise StopAsyncIteration
            return None

    def _unsubscribe(self, sub: _Subscriber) -> None:
        sub.closed = True
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """Ends every watch (iteration stops); watches opened afterwards end at once."""
        with self._lock:
            self._closed = True
            for sub in self._subs:
                sub.ended = True
                sub.wake()
            self._subs = []


class _Watch(AsyncIterator[WatchEvent]):
    """Iterator over one subscription; cancelling a pending `__anext__` unsubscribes."""

    def __init__(self, hub: WatchHub, sub: _Subscriber) -> None:
        self._hub = hub
        self._sub = sub

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        sub = self._sub
        try:
            while True:
                # Clear before looking: a wake-up scheduled after the look is not lost.
                sub.wakeup.clear()
                event = self._hub._take(sub)
                if event is not None:
                    if not sub.copy:  # the watcher promised not to mutate what it reads
                        return event
                    # Each watcher gets its own copy: mutating it cannot alter the history.
                    return WatchEvent(event.kind, event.resource.clone(), event.revision)
                await sub.wakeup.wait()
        except (asyncio.CancelledError, StopAsyncIteration, WatchOverflowError):
            self.close()
            raise

    def close(self) -> None:
        self._hub._unsubscribe(self._sub)

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        # No lock here: the collector may run while this thread holds it. Publish prunes us.
        self._sub.closed = True
