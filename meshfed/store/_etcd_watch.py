"""One store watch = one etcd Watch stream that survives connection loss.

When the stream breaks (etcd restarted, member lost, network cut), the watch opens a new one
from the last revision it delivered, inclusive, and drops the events it already delivered at
that revision (etcd may split one revision's events across responses). Nothing is lost and
nothing repeats, as long as etcd has not compacted past that revision; then the watch ends with
CompactedError and the caller lists again.

A watcher that falls more than `limit` events behind ends with WatchOverflowError after taking
what was queued, whole revisions only, so resuming from its last revision loses nothing.

A watch of some types (`only`: their key prefixes) still streams the whole resources prefix
and drops the other keys before decoding them. Why not ask etcd for just those keys: a watch
takes one key range, and, above all, the cursor must see every commit, or a store closing
could not tell when a watch has caught up with its last write (`end_after`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from aetcd import rpc

from meshfed.backoff import Backoff
from meshfed.store._etcd_conn import TRANSIENT_CODES, EtcdConnection
from meshfed.store.base import CompactedError, StoreError, WatchEvent, WatchOverflowError

log = logging.getLogger("meshfed.store.etcd")

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
_RECONNECT_INITIAL = 0.05  # seconds before the first attempt to resume a broken watch
_RECONNECT_MAX = 2.0


class ResumeCursor:
    """Tracks what a watch delivered (in etcd revisions), to restart without loss or repeat."""

    __slots__ = ("keys_at_last", "last")

    def __init__(self, start: int) -> None:
        self.last = start - 1  # every event at or below this revision was delivered
        self.keys_at_last: set[bytes] = set()  # keys delivered at `last`, if it is partial

    def restart_revision(self) -> int:
        """Where a new stream starts: `last` itself if part of it may still be missing."""
        return self.last if self.keys_at_last else self.last + 1

    def accept(self, revision: int, key: bytes) -> bool:
        """False for an event a restarted stream replays although it was delivered."""
        if revision < self.last:
            return False
        # At `last` itself only a partly delivered revision can still have new keys.
        if revision == self.last and (not self.keys_at_last or key in self.keys_at_last):
            return False
        if revision > self.last:
            self.last = revision
            self.keys_at_last = set()
        self.keys_at_last.add(key)
        return True

    def progress(self, revision: int) -> None:
        """etcd says every event up to `revision` was sent: none is partial any more."""
        if revision > self.last:
            self.last = revision
            self.keys_at_last = set()


class EtcdWatch(AsyncIterator[WatchEvent]):
    def __init__(
        self,
        conn: EtcdConnection,
        key: bytes,
        range_end: bytes,
        *,
        start: int,
        base: int,
        limit: int,
        convert: Callable[[Any], WatchEvent | None],
        on_compacted: Callable[[int], None],
        only: tuple[bytes, ...] | None = None,
    ) -> None:
        self._conn = conn
        self._key, self._range_end = key, range_end
        self._base = base  # store revision = etcd revision - base
        self._limit = limit
        self._convert = convert
        self._on_compacted = on_compacted
        self._only = only  # key prefixes of the wanted types; None: every key
        self.cursor = ResumeCursor(start)
        self._pending: deque[WatchEvent] = deque()
        self._wakeup = asyncio.Event()
        self._last_delivered = start - 1 - base
        self._overflowed = False
        self._failure: BaseException | None = None
        self._finished = False
        self._end_at: int | None = None
        self._healthy = True
        self.drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._run(), name=f"etcd-watch-{key.decode(errors='replace')}"
        )

    # --- consumer side ---------------------------------------------------------------------

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            while True:
                # Clear before looking: a wake-up scheduled after the look is not lost.
                self._wakeup.clear()
                if self._pending:
                    event = self._pending.popleft()
                    self._last_delivered = event.revision
                    return event
                if self._overflowed:
                    raise WatchOverflowError(self._limit, self._last_delivered)
                if self._failure is not None:
                    raise self._failure
                if self._finished:
                    raise StopAsyncIteration
                await self._wakeup.wait()
        except BaseException:
            self.close()
            raise

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        """Stops the stream; what is queued can still be read."""
        self._finished = True
        self._wakeup.set()
        self.drained.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def aclose(self) -> None:
        self.close()

    def end_after(self, revision: int) -> None:
        """Ends the watch once everything up to etcd `revision` is queued (store closing)."""
        self._end_at = revision
        self._check_end()

    # --- stream side -------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        self._failure = error
        self.close()

    def _compacted(self, compact_revision: int) -> None:
        # etcd can serve a watch from `compact_revision` on: earlier store revisions are gone.
        through = compact_revision - self._base - 1
        self._on_compacted(through)
        self._fail(CompactedError(self.cursor.restart_revision() - self._base - 1, through))

    def _deliver(self, events: Any) -> None:
        batch: list[WatchEvent] = []
        revision = -1
        only = self._only
        for ev in events:
            if ev.kv.mod_revision != revision:
                self._queue(batch)
                batch, revision = [], ev.kv.mod_revision
            # The cursor records every key, wanted or not: it tracks what the stream delivered.
            if self.cursor.accept(ev.kv.mod_revision, ev.kv.key) and (
                only is None or ev.kv.key.startswith(only)
            ):
                converted = self._convert(ev)
                if converted is not None:
                    batch.append(converted)
        self._queue(batch)

    def _queue(self, batch: list[WatchEvent]) -> None:
        """Queues one revision's events, or none of them if that would pass the limit."""
        if not batch or self._overflowed:
            return
        if len(self._pending) + len(batch) > self._limit:
            self._overflowed = True
            self.close()
            return
        self._pending.extend(batch)
        self._wakeup.set()

    def _check_end(self) -> None:
        if self._end_at is not None and self.cursor.last >= self._end_at:
            self.close()

    async def _run(self) -> None:
        backoff = Backoff(initial=_RECONNECT_INITIAL, maximum=_RECONNECT_MAX)
        while not self._finished:
            call: grpc.aio.StreamStreamCall[Any, Any] | None = None
            try:
                call = await self._conn.open_watch()
                create = rpc.WatchCreateRequest(
                    key=self._key,
                    range_end=self._range_end,
                    start_revision=self.cursor.restart_revision(),
                    prev_kv=True,  # a DELETE event carries the last stored state
                    progress_notify=True,  # keeps the resume point fresh on a quiet prefix
                )
                await call.write(rpc.WatchRequest(create_request=create))
                while not self._finished:
                    resp: Any = await call.read()
                    if resp is _EOF:
                        raise ConnectionError("etcd closed the watch stream")
                    if resp.compact_revision:
                        self._compacted(resp.compact_revision)
                        return
                    if resp.canceled:
                        await self._cancelled(resp.cancel_reason)
                        break
                    if resp.events:
                        self._deliver(resp.events)
                    elif not resp.created:
                        self.cursor.progress(resp.header.revision)
                    if not self._healthy:
                        log.info("etcd watch resumed")
                        self._healthy = True
                    backoff.reset()
                    self._check_end()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.UNAUTHENTICATED:
                    await self._reauthenticate()
                elif exc.code() not in TRANSIENT_CODES:
                    self._fail(StoreError(f"etcd watch failed: {exc.details()}"))
                    return
                else:
                    self._interrupted(exc.details() or exc.code().name)
            except (ConnectionError, StoreError) as exc:
                self._interrupted(str(exc))
            finally:
                if call is not None:
                    call.cancel()
            if not self._finished:
                await asyncio.sleep(backoff.next_delay())

    def _interrupted(self, why: str) -> None:
        # Warn once per outage, not on every reconnect attempt.
        level = logging.WARNING if self._healthy else logging.DEBUG
        self._healthy = False
        log.log(
            level,
            "etcd watch interrupted (%s); resuming from etcd revision %d",
            why,
            self.cursor.restart_revision(),
        )
        self._conn.rotate()

    async def _reauthenticate(self) -> None:
        if not self._conn.has_credentials:
            self._fail(StoreError("etcd requires authentication: give a username and password"))
            return
        try:
            await self._conn.authenticate()
        except StoreError as exc:
            self._fail(exc)

    async def _cancelled(self, reason: str) -> None:
        if "auth" in reason:  # e.g. the token expired while the stream was open
            await self._reauthenticate()
            return
        if "permission denied" in reason:
            self._fail(StoreError(f"etcd refused the watch: {reason}"))
            return
        self._interrupted(f"cancelled by etcd: {reason or 'no reason given'}")
