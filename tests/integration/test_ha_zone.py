"""A highly available zone: two zone-cp replicas of one zone on one etcd. One of them (the
leader) talks KDS to the global; both serve the zone's store; when the leader dies the other
takes over within the lease TTL (real etcd, global-cp and zone-cp processes)."""

from __future__ import annotations

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


def zone_replica(procs: Procs, cluster: Cluster, etcd: EtcdServer, name: str) -> Node:
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
