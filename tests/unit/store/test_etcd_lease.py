"""Leases and leader election against a real etcd; the dying or hung leader is a real process."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aetcd import rpc

from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store.etcd_lease import REVOKE_TIMEOUT, LeaderElection, Lease
from tests.support import Proc, Procs, async_wait_until, wait_until
from tests.unit.store.etcd_server import EtcdServer

TTL = 1  # seconds; etcd's minimum with the test server's election timeout
# etcd checks for expired leases every 500 ms; a takeover also needs a watch event and a txn.
TAKEOVER_SLACK = 1.0
_keys = itertools.count()

HOLDER = """
import asyncio, sys
from meshfed.store._etcd_conn import EtcdConnection
from meshfed.store.etcd_lease import LeaderElection

async def main() -> None:
    conn = EtcdConnection(sys.argv[1])
    await conn.open()
    election = LeaderElection(conn, sys.argv[2], "holder", ttl=int(sys.argv[3]))
    await election.campaign()
    print("leader", flush=True)
    print("lost:", await election.wait_lost(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def election_key() -> str:
    return f"/meshfed-lease-test/election-{next(_keys)}"


@pytest.fixture
async def conn(etcd_server: EtcdServer) -> AsyncIterator[EtcdConnection]:
    connection = EtcdConnection(etcd_server.endpoint)
    await connection.open()
    yield connection
    await connection.close()


def etcd_metric(server: EtcdServer, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"etcd has no metric {name} {labels}")


def keepalive_streams(server: EtcdServer) -> float:
    return etcd_metric(server, "grpc_server_started_total", grpc_method="LeaseKeepAlive")


async def ttl_at_etcd(conn: EtcdConnection, lease: Lease) -> int:
    resp = await conn.call(
        lambda s: s.lease.LeaseTimeToLive,
        rpc.LeaseTimeToLiveRequest(ID=lease.id),
        idempotent=True,
        what="lease ttl",
    )
    return int(resp.TTL)


async def stays_unset(event: asyncio.Event, seconds: float) -> bool:
    """True if `event` is still not set after `seconds` (what must NOT happen, bounded)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return True
    return False


def start_holder(procs: Procs, server: EtcdServer, key: str) -> Proc:
    holder = procs.start("holder", [sys.executable, "-c", HOLDER, server.endpoint, key, str(TTL)])
    wait_until(lambda: "leader" in holder.log(), timeout=15, what="the holder to lead")
    return holder


# --- lease -----------------------------------------------------------------------------------


async def test_lease_lives_past_its_ttl_on_one_stream(
    etcd_server: EtcdServer, conn: EtcdConnection
) -> None:
    streams_before = keepalive_streams(etcd_server)
    renewed_before = etcd_metric(etcd_server, "etcd_debugging_lease_renewed_total")
    lease = await Lease.grant(conn, TTL)
    assert lease.ttl == TTL
    assert await stays_unset(lease.lost, 3 * TTL)
    assert await ttl_at_etcd(conn, lease) >= 0  # -1 would mean etcd dropped it
    # Several refreshes, all on one stream (aetcd's refresh() would open one per refresh).
    assert etcd_metric(etcd_server, "etcd_debugging_lease_renewed_total") - renewed_before >= 6
    assert keepalive_streams(etcd_server) - streams_before == 1
    assert lease.streams_opened == 1
    await lease.revoke()
    assert lease.lost.is_set() and lease.remaining() == 0.0
    assert await ttl_at_etcd(conn, lease) == -1  # etcd: no such lease


@pytest.mark.etcd  # starts an etcd of its own
async def test_revoking_a_lease_whose_etcd_is_gone_gives_up_quickly(tmp_path: Path) -> None:
    """A stop while etcd is unreachable: revoke() (called on every shutdown) gives up within
    REVOKE_TIMEOUT, not the connection's 10 s deadline, and raises nothing (the lease expires
    on its own). tests/integration/test_ha_zone.py checks a whole zone-cp's stop."""
    server = EtcdServer(tmp_path / "etcd", tmp_path)
    server.start()
    connection = EtcdConnection(server.endpoint)
    try:
        await connection.open()
        lease = await Lease.grant(connection, 10)
        server.stop()
        started = time.monotonic()
        await lease.revoke()
        assert time.monotonic() - started < REVOKE_TIMEOUT + 1.0
        assert lease.lost_reason == "revoked"
    finally:
        server.stop()
        await connection.close()


async def test_bad_ttl(conn: EtcdConnection) -> None:
    with pytest.raises(ValueError, match="TTL"):
        await Lease.grant(conn, 0)


# --- election, in process --------------------------------------------------------------------


async def test_resigning_hands_over_at_once(conn: EtcdConnection) -> None:
    key = election_key()
    a = LeaderElection(conn, key, "a", ttl=5)
    b = LeaderElection(conn, key, "b", ttl=5)
    await a.campaign()
    assert a.is_leader and await a.leader() == "a"
    b_wins = asyncio.create_task(b.campaign())
    assert await stays_unset(a.lost, 0.3) and not b_wins.done()
    started = time.monotonic()
    await a.resign()
    await asyncio.wait_for(b_wins, 5)
    assert time.monotonic() - started < 1.0  # no waiting for the 5 s TTL
    assert b.is_leader and not a.is_leader and await b.leader() == "b"
    assert await a.wait_lost() == "resigned"
    await b.resign()
    assert await b.leader() is None


async def test_leader_notices_its_key_deleted(conn: EtcdConnection) -> None:
    key = election_key()
    leader = LeaderElection(conn, key, "a", ttl=5)
    await leader.campaign()
    await conn.txn(rpc.TxnRequest(success=[_delete(key)]))
    reason = await asyncio.wait_for(leader.wait_lost(), 5)
    assert "deleted or replaced" in reason and not leader.is_leader
    await leader.campaign()  # it can run again
    assert leader.is_leader
    await leader.resign()


def _delete(key: str) -> rpc.RequestOp:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode()))


# --- election, with the leader in another process --------------------------------------------


async def test_leadership_moves_when_the_leader_dies(
    etcd_server: EtcdServer, conn: EtcdConnection, procs: Procs
) -> None:
    key = election_key()
    holder = start_holder(procs, etcd_server, key)
    candidate = LeaderElection(conn, key, "candidate", ttl=TTL)
    wins = asyncio.create_task(candidate.campaign())
    # The holder refreshes from its own process: the candidate waits well past the TTL.
    done, _ = await asyncio.wait({wins}, timeout=2.5 * TTL)
    assert not done and await candidate.leader() == "holder"
    holder.kill()  # SIGKILL: no resignation, the lease has to expire
    died = time.monotonic()
    await asyncio.wait_for(wins, TTL + TAKEOVER_SLACK + 2)
    assert time.monotonic() - died <= TTL + TAKEOVER_SLACK
    assert candidate.is_leader and await candidate.leader() == "candidate"
    await candidate.resign()


async def test_a_hung_leader_learns_it_lost(
    etcd_server: EtcdServer, conn: EtcdConnection, procs: Procs
) -> None:
    key = election_key()
    holder = start_holder(procs, etcd_server, key)
    candidate = LeaderElection(conn, key, "candidate", ttl=TTL)
    wins = asyncio.create_task(candidate.campaign())
    holder.signal(signal.SIGSTOP)  # hung: it stops refreshing without knowing
    try:
        hung = time.monotonic()
        await asyncio.wait_for(wins, TTL + TAKEOVER_SLACK + 2)
        assert time.monotonic() - hung <= TTL + TAKEOVER_SLACK
        assert await candidate.leader() == "candidate"
    finally:
        holder.signal(signal.SIGCONT)
    await async_wait_until(
        _logged(holder, r"lost: lease lost"), timeout=5, what="the old leader to notice"
    )
    assert candidate.is_leader  # the old one did not take it back
    await candidate.resign()


def _logged(proc: Proc, pattern: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return re.search(pattern, proc.log()) is not None

    return check
