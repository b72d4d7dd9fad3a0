"""Singleton jobs: run on the leader only, stop when it loses, resume on the next one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from aetcd import rpc

from meshfed.ha.leader import Leader, SoleElection
from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store.etcd_lease import LeaderElection
from tests.support import async_wait_until
from tests.unit.store.etcd_server import EtcdServer

_keys = itertools.count()


async def test_the_sole_replica_leads_at_once_and_runs_each_kind_of_job() -> None:
    leader = Leader(SoleElection("only"), retry_delay=0.01)
    ticks: list[int] = []
    once: list[int] = []
    attempts = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("store briefly down")

    async def tick() -> None:
        ticks.append(1)

    async def setup() -> None:
        once.append(1)

    leader.add_job("tick", tick, every=0.01)
    leader.add_job("once", setup)
    leader.add_job("flaky", flaky)
    with pytest.raises(ValueError, match="interval must be > 0"):
        leader.add_job("bad", tick, every=0)
    await leader.start()
    with pytest.raises(RuntimeError, match="before start"):
        leader.add_job("late", tick)
    await async_wait_until(lambda: _true(len(ticks) >= 3 and attempts == 3), what="jobs ran")
    assert leader.is_leader and leader.terms == 1 and once == [1]
    status = await leader.status()
    assert status["leader"] and status["leaderId"] == "only"
    assert status["jobs"]["flaky"] == {
        "runs": 1,
        "failures": 2,
        "lastRun": status["jobs"]["flaky"]["lastRun"],
        "lastError": "store briefly down",
    }
    assert status["jobs"]["once"]["runs"] == 1

    await leader.stop()
    assert not leader.is_leader
    count = len(ticks)
    await asyncio.sleep(0.05)  # a stopped leader's jobs do not run: nothing to wait for
    assert len(ticks) == count
    assert (await leader.status())["leaderId"] is None


async def _true(value: bool) -> bool:
    return value


@pytest.fixture
async def conns(etcd_server: EtcdServer) -> AsyncIterator[list[EtcdConnection]]:
    out = [EtcdConnection(etcd_server.endpoint) for _ in range(3)]
    for conn in out:
        await conn.open()
    yield out
    for conn in out:
        await conn.close()


async def test_jobs_run_on_one_replica_at_a_time_and_move_with_leadership(
    conns: list[EtcdConnection],
) -> None:
    key = f"/meshfed-ha-test/leader-{next(_keys)}"
    runs: list[str] = []  # which replica ran the job, in order
    overlaps: list[str] = []

    def replica(name: str, conn: EtcdConnection) -> Leader:
        leader = Leader(LeaderElection(conn, key, name, ttl=2), retry_delay=0.05)

        async def job() -> None:
            if any(o.is_leader for o in leaders if o is not leader):
                overlaps.append(name)
            runs.append(name)

        leader.add_job("sweep", job, every=0.02)
        return leader

    leaders: list[Leader] = []
    leaders += [replica("a", conns[0]), replica("b", conns[1])]
    await leaders[0].start()
    await async_wait_until(lambda: _true(leaders[0].is_leader), what="a leads")
    await leaders[1].start()
    await async_wait_until(lambda: _true(runs.count("a") >= 3), what="a's job runs")
    assert leaders[0].terms == 1 and leaders[1].terms == 0 and set(runs) == {"a"}
    status = await leaders[1].status()
    assert (status["leader"], status["leaderId"]) == (False, "a")

    # a resigns (a clean shutdown): b takes over at once, and a's job never runs again.
    await leaders[0].stop()
    await async_wait_until(lambda: _true(leaders[1].is_leader), timeout=5, what="b leads")
    await async_wait_until(lambda: _true(runs.count("b") >= 3), what="b's job runs")
    switch = runs.index("b")
    assert set(runs[:switch]) == {"a"} and set(runs[switch:]) == {"b"}

    assert overlaps == []

    # b's lease is revoked behind its back (as when etcd expired it): its jobs stop; a new
    # candidate c wins and runs them. (A revoke, unlike an expiry, is not foreseen by the
    # holder, so b may still run once while c starts: only what follows is checked.)
    leaders.append(replica("c", conns[2]))
    await leaders[2].start()
    election = leaders[1]._election
    assert isinstance(election, LeaderElection) and election.lease is not None
    await conns[2].call(
        lambda s: s.lease.LeaseRevoke,
        rpc.LeaseRevokeRequest(ID=election.lease.id),
        idempotent=True,
        what="revoke",
    )
    await async_wait_until(lambda: _true(leaders[2].is_leader), timeout=5, what="c leads")
    await async_wait_until(lambda: _true(not leaders[1].is_leader), what="b knows")
    await async_wait_until(lambda: _true(runs.count("c") >= 3), what="c's job runs")
    b_runs, c_runs = runs.count("b"), runs.count("c")
    await async_wait_until(lambda: _true(runs.count("c") >= c_runs + 3), what="c runs on")
    assert runs.count("b") == b_runs
    # b campaigns again but c keeps the lead.
    assert (await leaders[1].status())["leaderId"] == "c"
    assert leaders[1].terms == 1
    for leader in leaders[1:]:
        await leader.stop()
