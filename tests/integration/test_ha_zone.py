"""A highly available zone: two zone-cp replicas of one zone on one etcd. One of them (the
leader) talks KDS to the global; both serve the zone's store; when the leader dies the other
takes over within the lease TTL (real etcd, global-cp and zone-cp processes)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.federation_support import (
    FAST_ZONE,
    Cluster,
    Http,
    Node,
    _wait_ready,
    dataplane,
    eventually,
    mt_path,
    provision_zone,
    timeout_policy,
    zone_security_args,
    zone_token_path,
)
from tests.integration.test_cross_zone_support import Mesh as MeshOnCluster
from tests.integration.test_cross_zone_support import Zone
from tests.support import Procs, free_port
from tests.unit.store.etcd_server import EtcdServer

pytestmark = pytest.mark.integration

LEASE_TTL = 2


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path / "etcd", tmp_path)
    server.start()
    yield server
    server.stop()


def zone_replica(procs: Procs, cluster: Cluster, etcd: EtcdServer, name: str, *extra: str) -> Node:
    port = free_port()
    argv = [
        procs.script("zone-cp"),
        "run",
        "--zone",
        "zone-1",
        "--global-kds",
        f"grpc://127.0.0.1:{cluster.glob.kds_port}",
        "--api-address",
        f"127.0.0.1:{port}",
        "--dns-address",
        "127.0.0.1:0",
        "--store",
        "etcd",
        "--etcd-endpoints",
        etcd.endpoint,
        "--etcd-lease-ttl",
        f"{LEASE_TTL}s",
        *zone_security_args(cluster.root, "zone-1"),  # the replicas share zone-1's token
        *FAST_ZONE,
        *extra,
    ]
    if not zone_token_path(cluster.root, "zone-1").exists():
        provision_zone(cluster.root, cluster.glob.http.port, "zone-1")
    node = Node(name, argv, Http(port, cluster.glob.http.token_file), cluster.root / name)
    node.proc = procs.start(name, argv)
    return node


def kds_state(node: Node) -> str:
    return str(node.http.get("/_kds")["state"])


def test_one_zone_replica_talks_to_the_global_and_the_other_takes_over(
    procs: Procs, tmp_path: Path, etcd: EtcdServer
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=())
    cluster.start()
    g = cluster.glob.http
    first = zone_replica(procs, cluster, etcd, "zone-1-a")
    _wait_ready(first)
    eventually(lambda: kds_state(first) == "connected", what="first replica connected")
    second = zone_replica(procs, cluster, etcd, "zone-1-b")
    _wait_ready(second)
    assert kds_state(second) == "standby"
    assert second.http.get("/_leader")["leaderId"] == first.http.get("/")["instanceId"]

    # Both replicas serve the zone's one store: a policy from the global shows in both, and
    # a dataplane registered through the standby replica reaches the global.
    g.put(mt_path("p1"), timeout_policy("p1"))
    for node in (first, second):
        eventually(lambda n=node: n.http.call("GET", mt_path("p1"))[0] == 200, what="p1")
    eventually(second.http.accepts_admin, what="the global's user-token keys in the zone")
    second.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="dp-1 at the global")
    sessions = g.get("/zones/zone-1/_overview")["zoneInsight"]["subscriptions"]

    assert first.proc is not None
    first.proc.kill()
    eventually(lambda: kds_state(second) == "connected", timeout=LEASE_TTL + 10, what="takeover")
    g.put(mt_path("p2"), timeout_policy("p2", idle="30s"))
    eventually(lambda: second.http.call("GET", mt_path("p2"))[0] == 200, what="p2 in the zone")
    overview = g.get("/zones/zone-1/_overview")["zoneInsight"]
    assert overview["state"] == "online"
    assert len(overview["subscriptions"]) == len(sessions) + 1
    # Resumed from the store the first replica left: nothing but p2 came down again.
    received = second.http.get("/_kds")["received"]["MeshTimeout"]
    assert received["resourcesApplied"] == 1

    # A replica stopped while etcd is down still stops promptly: its resign, presence and
    # lease revocations are bounded (the leases expire on their own anyway). It used to wait
    # out the etcd client's 10 s deadline per call and be SIGKILLed.
    etcd.stop()
    assert second.proc is not None
    started = time.monotonic()
    code = second.proc.stop(timeout=8)
    took = time.monotonic() - started
    assert took < 5, f"the replica took {took:.1f}s to stop with etcd down"
    assert code == 0, second.proc.log()[-2000:]


def dp_state(node: Node, name: str) -> tuple[bool | None, str | None]:
    """(inbound ready, the zone-cp instance of its open subscription; None: closed)."""
    dp = node.http.get(f"/meshes/default/dataplanes/{name}")
    ready = dp["networking"]["inbound"][0].get("health", {}).get("ready")
    code, insight = node.http.call("GET", f"/meshes/default/dataplane-insights/{name}")
    last = insight["subscriptions"][-1] if code == 200 else {}
    instance = None if "disconnectTime" in last else last.get("controlPlaneInstanceId")
    return ready, instance


def test_the_leader_sweeps_the_proxies_of_a_killed_replica_and_another_takes_them_over(
    procs: Procs, tmp_path: Path, etcd: EtcdServer
) -> None:
    """Issue 16: a proxy registered through a replica that was SIGKILLed stayed marked
    connected (and ready) until it reconnected. Now the leader closes it once the dead
    replica's presence lease is gone, and a replica it reconnects to takes it over."""
    cluster = Cluster.create(procs, tmp_path, zone_names=())
    cluster.start()
    dp_ports = {name: free_port() for name in ("zone-1-a", "zone-1-b")}
    replicas = {
        name: zone_replica(
            procs,
            cluster,
            etcd,
            name,
            "--dp-server-address",
            f"127.0.0.1:{port}",
        )
        for name, port in dp_ports.items()
    }
    a, b = replicas["zone-1-a"], replicas["zone-1-b"]
    for node in (a, b):
        _wait_ready(node)
    eventually(lambda: b.http.accepts_admin(), what="the global's keys in the zone")
    # The proxy connects to the replica that is not the leader: the leader must survive it.
    leader_id = b.http.get("/_leader")["leaderId"]
    a_id, b_id = a.http.get("/")["instanceId"], b.http.get("/")["instanceId"]
    victim, survivor = (a, b) if leader_id == b_id else (b, a)
    victim_id = a_id if victim is a else b_id
    unused = ipaddress.IPv4Network("0.0.0.0/32")  # DNS and VIPs: not what this test looks at
    zones = {"zone-1": Zone("zone-1", victim, 0, dp_ports[victim.name], unused)}
    mesh = MeshOnCluster(procs, tmp_path, cluster, zones)
    web = mesh.workload("zone-1", "web-1", "web")
    eventually(lambda: dp_state(survivor, "web-1") == (True, victim_id), what="web-1 ready")

    assert victim.proc is not None
    victim.proc.kill()
    killed = time.monotonic()
    web.sidecar.kill()  # its proxy is gone too (a pod on the dead replica's node)
    eventually(
        lambda: dp_state(survivor, "web-1") == (False, None),
        timeout=LEASE_TTL + 15,
        what="web-1 swept offline by the surviving replica",
    )
    swept_in = time.monotonic() - killed
    assert survivor.http.get("/_leader")["leader"] is True
    jobs = survivor.http.get("/_leader")["jobs"]
    assert jobs["dp-crash-sweep"]["runs"] > 0

    # The proxy comes back through the survivor: that replica holds it, ready again.
    argv = list(web.sidecar.argv)
    argv[argv.index("--cp") + 1] = f"grpc://127.0.0.1:{dp_ports[survivor.name]}"
    again = procs.start("web-1-again", argv)
    eventually(lambda: dp_state(survivor, "web-1") == (True, b_id if survivor is b else a_id))
    print(f"swept {swept_in:.1f}s after the SIGKILL (lease TTL {LEASE_TTL}s)")

    # etcd goes, then the proxy: its disconnection cannot be written. A stop of the replica
    # then waits for that write a bounded time, not the etcd client's 10 s deadline.
    etcd.stop()
    again.stop()
    assert survivor.proc is not None
    started = time.monotonic()
    code = survivor.proc.stop(timeout=9)
    took = time.monotonic() - started
    assert took < 6, f"the replica took {took:.1f}s to stop with etcd down"
    assert code == 0, survivor.proc.log()[-2000:]
    assert "disconnection(s) not recorded" in survivor.proc.log()
