"""Acceptance of the highly available global: two real global-cp replicas on one real
3-member etcd cluster, real zone-cp processes, loopback ports, processes killed by PID.

The tests share one deployment and run in file order, each leaving it as the next expects:
steady state, cross-replica sync and insight, a replica killed (zone failover, leadership,
the leader's sweep), the replica restarted, an etcd leader member killed under writes.

Zones are placed after the first election, knowing which replica leads (L) and which
follows (F): zone-1 prefers L then F, zone-2 is on F, zone-3 knows only L.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.etcd_cluster import EtcdCluster
from tests.integration.federation_support import (
    FAST_GLOBAL,
    FAST_ZONE,
    GLOBAL_TYPES,
    Http,
    Node,
    _listing,
    _wait_ready,
    admin_token_path,
    digest,
    eventually,
    global_digest,
    global_security_args,
    mt_path,
    provision_zone,
    timeout_policy,
    zone_digest,
    zone_security_args,
)
from tests.support import Proc, Procs, free_port

pytestmark = pytest.mark.integration

LEASE_TTL = 3  # seconds: leadership and presence move within this (plus etcd's slack)
ELECTION_SLACK = 2.0  # etcd checks expired leases every 500 ms; then a watch and a txn
# Writes must resume this soon after the etcd leader dies. A write a follower had forwarded to
# the dead leader is answered by etcd only after its request timeout, 5 s + 2 x election
# timeout (etcd's ReqTimeout; 6 s with the test cluster's 500 ms), which the old bound of 5 s
# sat below: the test failed whenever a write was in flight at a follower at the kill. Plus 1 s
# for the writer's next request to find the new leader.
WRITE_RESUME = 5.0 + 2 * 0.5 + 1.0
PREFIX = "/meshfed-ha"


@dataclass
class Deployment:
    root: Path
    procs: Procs
    etcd: EtcdCluster
    replicas: dict[str, Node] = field(default_factory=dict)  # "a", "b"
    zones: dict[str, Node] = field(default_factory=dict)
    leader: str = ""  # the replica that led at first (zone-3 knows only this one)
    follower: str = ""

    def replica(self, name: str) -> Node:
        api, kds = free_port(), free_port()
        argv = [
            self.procs.script("global-cp"),
            "run",
            "--api-address",
            f"127.0.0.1:{api}",
            "--kds-address",
            f"127.0.0.1:{kds}",
            "--store",
            "etcd",
            "--etcd-endpoints",
            self.etcd.endpoints,
            "--etcd-prefix",
            PREFIX,
            "--etcd-lease-ttl",
            f"{LEASE_TTL}s",
            "--data-dir",
            str(self.root / name),
            # One store, so one admin token and one KDS CA: both replicas write the same files.
            *global_security_args(self.root),
            *FAST_GLOBAL,
        ]
        http = Http(api, self.token_file(name))
        node = Node(f"global-{name}", argv, http, self.root / name, kds_port=kds)
        self.replicas[name] = node
        return node

    def zone(self, name: str, *replicas: str) -> Node:
        port = free_port()
        kds = ",".join(f"grpc://127.0.0.1:{self.replicas[r].kds_port}" for r in replicas)
        argv = [
            self.procs.script("zone-cp"),
            "run",
            "--zone",
            name,
            "--global-kds",
            kds,
            "--api-address",
            f"127.0.0.1:{port}",
            "--dns-address",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(self.root / name),
            *zone_security_args(self.root, name),
            *FAST_ZONE,
        ]
        node = Node(name, argv, Http(port, self.token_file("a")), self.root / name)
        self.zones[name] = node
        # Issued through one replica, valid at both (their keys are in the shared store).
        provision_zone(self.root, self.replicas[replicas[-1]].http.port, name)
        return node

    def token_file(self, replica: str) -> Path:
        """Where a replica writes the admin token (replicas share it: one store, one file)."""
        return admin_token_path(self.root)

    def start(self, *nodes: Node) -> None:
        for node in nodes:
            node.restarts += 1
            node.proc = self.procs.start(f"{node.name}-{node.restarts}", node.argv)
        for node in nodes:
            _wait_ready(node)

    def http(self, replica: str) -> Http:
        return self.replicas[replica].http

    def kds_url(self, replica: str) -> str:
        return f"grpcs://127.0.0.1:{self.replicas[replica].kds_port}"

    def instance(self, replica: str) -> str:
        return str(self.http(replica).get("/")["instanceId"])

    def zone_state(self, replica: str, zone: str) -> dict[str, Any]:
        return dict(self.http(replica).get(f"/zones/{zone}/_overview")["zoneInsight"])

    def leading(self) -> list[str]:
        """The live replicas that say they lead."""
        return [
            name
            for name, node in self.replicas.items()
            if node.alive() and node.http.get("/_leader")["leader"]
        ]

    def sweep_runs(self, replica: str) -> int:
        return int(self.http(replica).get("/_leader")["jobs"]["zone-insight-sweep"]["runs"])

    def converged(self, replica: str, *zones: str) -> bool:
        want = global_digest(self.http(replica))
        return all(zone_digest(self.zones[z].http) == want for z in zones)

    def logs(self) -> str:
        return self.procs.dump_logs() + "\n" + self.etcd.logs()


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root: Path = tmp_path_factory.mktemp("ha")
    procs = Procs(root)
    etcd = EtcdCluster(root / "etcd", root)
    try:
        etcd.start()
        d = Deployment(root, procs, etcd)
        # Both replicas start at once on an empty store: the default mesh race.
        d.start(d.replica("a"), d.replica("b"))
        leaders = eventually(lambda: d.leading() if len(d.leading()) == 1 else None)
        d.leader = leaders[0]
        d.follower = "b" if d.leader == "a" else "a"
        d.start(
            d.zone("zone-1", d.leader, d.follower),
            d.zone("zone-2", d.follower),
            d.zone("zone-3", d.leader),
        )
        yield d
    finally:
        procs.stop_all()
        etcd.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, ha: Deployment) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(ha.logs())


def proc(node: Node) -> Proc:
    assert node.proc is not None, f"{node.name} was never started"
    return node.proc


def _online_everywhere(ha: Deployment, zone: str) -> bool:
    live = [r for r, n in ha.replicas.items() if n.alive()]
    return all(ha.zone_state(r, zone)["state"] == "online" for r in live)


def test_one_leader_and_one_default_mesh(ha: Deployment) -> None:
    L, F = ha.leader, ha.follower
    for replica in (L, F):
        status = ha.http(replica).get("/_leader")
        assert status["leaderId"] == ha.instance(L)
        assert {r["instanceId"] for r in status["replicas"]} == {ha.instance(L), ha.instance(F)}
    assert ha.http(F).get("/_leader")["jobs"]["zone-insight-sweep"]["runs"] == 0
    eventually(lambda: ha.sweep_runs(L) >= 2, what="the leader's sweep runs")
    assert ha.http(F).get("/meshes")["total"] == 1
    created = [n.name for n in ha.replicas.values() if "created Mesh 'default'" in proc(n).log()]
    assert len(created) == 1, created


def test_a_policy_written_through_one_replica_reaches_zones_on_the_other(
    ha: Deployment,
) -> None:
    L, F = ha.leader, ha.follower
    for zone in ha.zones:
        eventually(functools.partial(_online_everywhere, ha, zone), what=f"{zone} online")
    assert ha.zones["zone-1"].http.get("/_kds")["global"] == ha.kds_url(L)
    assert ha.zones["zone-2"].http.get("/_kds")["global"] == ha.kds_url(F)

    start = time.monotonic()
    ha.http(F).put(mt_path("through-f"), timeout_policy("through-f", idle="11s"))
    eventually(
        lambda: ha.zones["zone-1"].http.call("GET", mt_path("through-f"))[0] == 200,
        what="policy written through F in zone-1 (on L)",
    )
    through_f = time.monotonic() - start
    ha.http(L).put(mt_path("through-l"), timeout_policy("through-l", idle="12s"))
    eventually(
        lambda: ha.zones["zone-2"].http.call("GET", mt_path("through-l"))[0] == 200,
        what="policy written through L in zone-2 (on F)",
    )
    eventually(lambda: ha.converged(F, *ha.zones), what="every zone converged")
    print(f"write through F seen in a zone on L after {through_f * 1000:.0f} ms")


def test_every_replica_answers_for_zones_connected_to_the_other(ha: Deployment) -> None:
    L, F = ha.leader, ha.follower
    z1 = eventually(
        lambda: (state := ha.zone_state(F, "zone-1"))["inSync"] and state,
        what="zone-1 in sync as F sees it",
    )
    assert z1["state"] == "online" and z1["pending"] == 0
    assert z1["subscriptions"][-1]["globalInstanceId"] == ha.instance(L)
    z2 = ha.zone_state(L, "zone-2")
    assert z2["state"] == "online"
    assert z2["subscriptions"][-1]["globalInstanceId"] == ha.instance(F)
    # `_sync` through the replica that does not serve the zone.
    # It answers the version zone-1 holds as of L's last flush (it used to say null), and
    # which replica serves zone-1.
    ha.http(F).put(mt_path("sync-check"), timeout_policy("sync-check"))

    def zone1_sync() -> dict[str, Any] | None:
        sync = ha.http(F).get(f"{mt_path('sync-check')}/_sync")
        zone1 = next(z for z in sync["zones"] if z["zone"] == "zone-1")
        return zone1 if zone1["version"] == sync["version"] else None

    zone1 = eventually(zone1_sync, what="zone-1's version through F")
    assert zone1["state"] == "online" and zone1["inSync"] is True
    assert zone1["servedBy"] == ha.instance(L) and zone1["asOf"]
    # A zone connected to the other replica is still connected: no deletion.
    status, body = ha.http(F).call("DELETE", "/zones/zone-1")
    assert status == 409, body


def test_killing_the_leader_replica_moves_zones_leadership_and_the_sweep(
    ha: Deployment,
) -> None:
    L, F = ha.leader, ha.follower
    dead = ha.instance(L)
    runs_before = ha.sweep_runs(F)
    assert runs_before == 0 and ha.leading() == [L]
    killed = time.monotonic()
    proc(ha.replicas[L]).kill()

    # Leadership moves within the lease TTL, and the singleton job runs on F from then on.
    eventually(lambda: ha.leading() == [F], timeout=LEASE_TTL + 10, what="F leads")
    moved = time.monotonic() - killed
    assert moved <= LEASE_TTL + ELECTION_SLACK, f"leadership moved after {moved:.1f}s"
    eventually(lambda: ha.sweep_runs(F) >= 2, what="F's sweep runs")
    print(f"leadership moved {moved:.1f}s after the leader replica was killed")

    # zone-1 fails over to F and converges there.
    eventually(
        lambda: (
            ha.zones["zone-1"].http.get("/_kds")["global"] == ha.kds_url(F)
            and ha.zones["zone-1"].http.get("/_kds")["state"] == "connected"
        ),
        what="zone-1 on F",
    )
    ha.http(F).put(mt_path("after-kill"), timeout_policy("after-kill", idle="13s"))
    eventually(lambda: ha.converged(F, "zone-1", "zone-2"), what="zones converge on F")
    z1 = ha.zone_state(F, "zone-1")
    assert z1["state"] == "online"
    subs = z1["subscriptions"]
    assert subs[-1]["globalInstanceId"] == ha.instance(F)
    assert subs[-2]["globalInstanceId"] == dead and subs[-2]["disconnectTime"] is not None

    # zone-3 knew only L: once L's presence expired, the leader marked it offline, once.
    z3 = eventually(
        lambda: (s := ha.zone_state(F, "zone-3"))["state"] == "offline" and s,
        timeout=LEASE_TTL + 10,
        what="zone-3 offline",
    )
    assert z3["subscriptions"][-1]["disconnectTime"] is not None
    marked = f"zone zone-3 marked offline: global replica {dead} is gone"
    eventually(lambda: marked in proc(ha.replicas[F]).log(), what="the sweep's log line")
    assert proc(ha.replicas[F]).log().count(marked) == 1
    assert ha.http(F).get("/_leader")["sweep"]["markedOffline"] == 1


def test_a_restarted_replica_follows_and_jobs_stay_on_the_leader(ha: Deployment) -> None:
    L, F = ha.leader, ha.follower
    ha.start(ha.replicas[L])  # a new process, a new instance id, same addresses
    eventually(
        lambda: ha.zones["zone-3"].http.get("/_kds")["state"] == "connected",
        what="zone-3 back on L",
    )
    eventually(functools.partial(_online_everywhere, ha, "zone-3"), what="zone-3 online")
    assert ha.leading() == [F]
    f_runs = ha.sweep_runs(F)
    eventually(lambda: ha.sweep_runs(F) >= f_runs + 3, what="F's sweep keeps running")
    assert ha.sweep_runs(L) == 0
    assert ha.http(L).get("/_leader")["leaderId"] == ha.instance(F)
    eventually(lambda: ha.converged(L, *ha.zones), what="every zone converged")


def test_writes_survive_killing_the_etcd_leader_and_none_is_lost(ha: Deployment) -> None:
    writer = Writer([ha.http(r) for r in ha.replicas])
    writer.start()
    try:
        eventually(lambda: len(writer.acked) >= 10, what="writes before the kill")
        member = ha.etcd.leader()
        killed = time.time()
        ha.etcd.kill(member)
        eventually(
            lambda: sum(1 for a in writer.acked if a.at > killed + 1) >= 20,
            timeout=30,
            what="writes after the etcd leader was killed",
        )
    finally:
        writer.stop()
    assert writer.errors == [], writer.errors[:3]
    times = sorted(a.at for a in writer.acked)
    around = [t for t in times if t >= killed - 1]
    gap = max(b - a for a, b in itertools.pairwise(around))
    print(
        f"etcd leader {member.name} killed: {len(writer.acked)} acknowledged writes, "
        f"{writer.refused} refused (503), longest pause {gap:.2f}s"
    )
    assert gap <= WRITE_RESUME, f"writes paused for {gap:.1f}s"

    # Every acknowledged write is there, as written, through either replica and in every zone.
    for replica in ha.replicas:
        stored = {
            i["name"]: i["spec"]["to"][0]["default"]["idleTimeout"]
            for i in _listing(ha.http(replica), "MeshTimeout")
        }
        missing = [a.name for a in writer.acked if stored.get(a.name) != a.idle]
        assert missing == [], f"lost through {replica}: {missing[:5]}"
    ha.etcd.start(member)
    eventually(lambda: ha.converged(ha.follower, *ha.zones), timeout=30, what="converged")
    want = digest([i for t in GLOBAL_TYPES for i in _listing(ha.http(ha.leader), t)])
    assert want == digest([i for t in GLOBAL_TYPES for i in _listing(ha.http(ha.follower), t)])


@dataclass(frozen=True)
class Ack:
    name: str
    idle: str
    at: float


class Writer:
    """Writes new policies in a loop through the replicas in turn; keeps what was acked."""

    def __init__(self, apis: list[Http]) -> None:
        self.apis = apis
        self.acked: list[Ack] = []
        self.refused = 0  # 503: the store failed; the write may or may not have happened
        self.errors: list[str] = []  # anything else is a bug
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            name, idle = f"w{i:05d}", f"{i % 50 + 1}s"
            api = self.apis[i % len(self.apis)]
            try:
                status, body = api.call("PUT", mt_path(name), timeout_policy(name, idle=idle))
            except OSError:
                self.refused += 1  # a connection cut: unknown outcome, not acknowledged
                continue
            if status in (200, 201):
                self.acked.append(Ack(name, idle, time.time()))
            elif status == 503:
                self.refused += 1
            else:
                self.errors.append(f"{name}: {status} {body}")
