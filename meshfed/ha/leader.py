"""Singleton jobs: work that must run once per deployment, not once per replica.

Every replica of the global serves the API and KDS. A few jobs would do harm, or just
twice the work, if every replica ran them: marking the zones of a dead replica offline and
removing insights of deleted zones (`global_cp.zone_liveness`), and, once it lands, creating
each mesh's CA (a once-per-term job: `add_job(name, fn)` without `every`). They run on the
leader only.

On an etcd store the leader is elected through a leased key (`meshfed.store.etcd_lease`):
when the leader dies or hangs its lease expires and another replica wins within the TTL;
when it loses its lease it stops its jobs before etcd can let anyone else win. On SQLite and
memory stores there is only one process, which is its own leader (`SoleElection`).

A zone-cp on etcd uses the same machinery for its KDS client (one replica of a zone talks to
the global, or the global would see the zone's streams replace each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from meshfed.store.base import StoreError

log = logging.getLogger("meshfed.ha.leader")

RETRY_DELAY = 1.0  # after a failed campaign or a failed once-per-term job


class Election(Protocol):
    """What `Leader` needs of an election (`etcd_lease.LeaderElection` is one)."""

    identity: str
    lost: asyncio.Event
    lost_reason: str

    @property
    def is_leader(self) -> bool: ...

    async def campaign(self) -> None: ...

    async def leader(self) -> str | None: ...

    async def resign(self) -> None: ...


class SoleElection:
    """The only replica there can be (SQLite or memory store): leader at once, for good."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._resigned = False

    @property
    def is_leader(self) -> bool:
        return not self._resigned

    async def campaign(self) -> None:
        if self._resigned:
            await asyncio.Event().wait()  # a resigned sole replica never leads again

    async def leader(self) -> str | None:
        return None if self._resigned else self.identity

    async def resign(self) -> None:
        self._resigned = True
        self.lost_reason = "resigned"
        self.lost.set()


@dataclass
class JobStats:
    runs: int = 0  # completed runs, on this replica
    failures: int = 0
    last_run: float | None = None  # wall clock of the last completed run
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "lastRun": self.last_run,
            "lastError": self.last_error or None,
        }


@dataclass
class Job:
    name: str
    fn: Callable[[], Awaitable[None]]
    every: float | None  # seconds between runs; None: once per term (or until the term ends)
    stats: JobStats = field(default_factory=JobStats)


class Leader:
    """Campaigns for as long as it runs; runs the jobs while this replica leads."""

    def __init__(self, election: Election, *, retry_delay: float = RETRY_DELAY) -> None:
        self._election = election
        self._retry_delay = retry_delay
        self._jobs: list[Job] = []
        self._task: asyncio.Task[None] | None = None
        self.terms = 0  # how many times this replica became the leader
        self.since: float | None = None  # wall clock of the current term's start
        self.changed = asyncio.Event()  # set on every gain or loss (for waiters and tests)

    @property
    def identity(self) -> str:
        return self._election.identity

    @property
    def is_leader(self) -> bool:
        """Checked by jobs before each write: also false once the lease ran out on the clock,
        before the loss has been noticed by any task."""
        return self.since is not None and self._election.is_leader

    def add_job(
        self, name: str, fn: Callable[[], Awaitable[None]], *, every: float | None = None
    ) -> None:
        if self._task is not None:
            raise RuntimeError("add jobs before start()")
        if every is not None and every <= 0:
            raise ValueError(f"job {name}: the interval must be > 0, got {every}")
        self._jobs.append(Job(name, fn, every))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-campaign")

    async def stop(self) -> None:
        """Ends the jobs, then resigns, so another replica takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(StoreError, OSError):
            await self._election.resign()

    async def status(self) -> dict[str, Any]:
        """`GET /_leader`: who leads, and what this replica's singleton jobs did."""
        try:
            leader: str | None = await self._election.leader()
            error = None
        except StoreError as exc:
            leader, error = None, str(exc)
        return {
            "instanceId": self.identity,
            "leader": self.is_leader,
            "leaderId": leader,
            "leaderLookupError": error,
            "terms": self.terms,
            "since": self.since,
            "jobs": {job.name: job.stats.to_json() for job in self._jobs},
        }

    # -- internals ---------------------------------------------------------------------------

    def _set(self, since: float | None) -> None:
        self.since = since
        self.changed.set()
        self.changed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                await self._election.campaign()
            except (StoreError, OSError) as exc:  # etcd unreachable: keep trying
                log.warning("%s cannot campaign: %s; retrying", self.identity, exc)
                await asyncio.sleep(self._retry_delay)
                continue
            self.terms += 1
            self._set(time.time())
            names = ", ".join(j.name for j in self._jobs) or "none"
            log.info("%s leads (term %d); singleton jobs: %s", self.identity, self.terms, names)
            tasks = [
                asyncio.create_task(self._job_loop(job), name=f"job-{job.name}")
                for job in self._jobs
            ]
            try:
                await self._election.lost.wait()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self._set(None)
            log.warning(
                "%s no longer leads (%s); singleton jobs stopped",
                self.identity,
                self._election.lost_reason or "lost",
            )

    async def _job_loop(self, job: Job) -> None:
        while self.is_leader:
            try:
                await job.fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be briefly unavailable: next time
                job.stats.failures += 1
                job.stats.last_error = str(exc) or repr(exc)
                log.warning("singleton job %s failed: %s", job.name, job.stats.last_error)
                await asyncio.sleep(job.every or self._retry_delay)
                continue
            job.stats.runs += 1
            job.stats.last_run = time.time()
            if job.every is None:
                return
            await asyncio.sleep(job.every)
