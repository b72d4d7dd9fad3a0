"""MeshLoadBalancingStrategy `localityAwareness` fields applied at the global and seen in a
zone's real traffic, then deleted: `crossZone.failoverThreshold.percentage` and
`localZone.affinityTags` (issue 13; crossZone failover order is in test_load_balancing.py).

zone-1 runs web (on node-a) and two `backend` instances, backend-1 on node-a and backend-2 on
node-b (tag `k8s.io/node`); zone-2 runs backend-3 behind its zone ingress. All `http`, mTLS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import Mesh, allow
from tests.integration.test_http_world_support import APP, BACKEND, World, control, wait_ready
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

NODE = "k8s.io/node"
LB = "MeshLoadBalancingStrategy"


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("locality")
    procs = Procs(root)
    try:
        mesh = Mesh.start(procs, root, zone_names=("zone-1", "zone-2"))
        mesh.apply(allow("web-to-backend", BACKEND, "web"))
        mesh.ingress("zone-2")
        backends = [
            mesh.workload(zone, name, BACKEND, protocol="http", app_module=APP, tags={NODE: node})
            for zone, name, node in (
                ("zone-1", "backend-1", "node-a"),
                ("zone-1", "backend-2", "node-b"),
                ("zone-2", "backend-3", "node-c"),
            )
        ]
        web = mesh.workload(
            "zone-1",
            "web-1",
            "web",
            reachable=[BACKEND],
            app_module=APP,
            tags={NODE: "node-a"},
            wait=False,
        )
        wait_ready([*backends, web])
        vip, port = mesh.target("zone-1", BACKEND, zones=["zone-1", "zone-2"])
        w = World(mesh, web, backends, vip, port)
        wait_until(lambda: len(w.outbound()["endpoints"]) == 3, timeout=20, what="3 endpoints")
        wait_until(
            lambda: set(w.names(4)) == {"backend-1", "backend-2"}, timeout=20, what="local first"
        )
        yield w
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def test_failover_threshold_leaves_a_zone_below_its_healthy_share(w: World) -> None:
    b2 = w.backends[1]
    check = {
        "interval": "200ms",
        "timeout": "1s",
        "unhealthyThreshold": 1,
        "healthyThreshold": 1,
        "http": {"path": "/health"},
    }
    w.enforce("MeshHealthCheck", "backend-health", check)  # how the sidecar knows health
    control(b2, "health", 503)
    try:
        wait_until(lambda: not w.endpoint(b2)["healthy"], timeout=10, interval=0.05, what="out")
        # Kuma's default: the local zone while one of its endpoints is healthy.
        assert set(w.names(6)) == {"backend-1"}

        failover = {"failover": [{"to": {"type": "Any"}}], "failoverThreshold": {"percentage": 70}}
        w.enforce(LB, "threshold", {"localityAwareness": {"crossZone": failover}})
        # One of two local endpoints healthy is 50 %, under 70 %: zone-2 takes the traffic.
        assert set(w.names(6)) == {"backend-3"}
        control(b2, "health", 200)
        wait_until(lambda: w.endpoint(b2)["healthy"], timeout=10, interval=0.05, what="back")
        assert set(w.names(6)) == {"backend-1", "backend-2"}  # 100 %: local again
        control(b2, "health", 503)
        wait_until(lambda: not w.endpoint(b2)["healthy"], timeout=10, interval=0.05, what="out")
        assert set(w.names(6)) == {"backend-3"}

        w.withdraw(LB, "threshold")
        assert set(w.names(6)) == {"backend-1"}
    finally:
        control(b2, "health", 200)
        w.withdraw("MeshHealthCheck", "backend-health")


def test_affinity_tags_keep_local_traffic_on_the_callers_node(w: World) -> None:
    affinity = {"affinityTags": [{"key": NODE, "weight": 99}]}
    w.enforce(LB, "affinity", {"localityAwareness": {"localZone": affinity}})
    # 99 to 1 for the instance sharing web's node-a; zone-2 is not used (localZone only).
    seen = Counter(w.names(40))
    assert set(seen) <= {"backend-1", "backend-2"}, seen
    assert seen["backend-1"] >= 36, seen  # 5 or more on backend-2: odds under 1 in 10^4

    w.withdraw(LB, "affinity")  # Kuma's default: round robin over the local zone
    seen = Counter(w.names(20))
    assert seen == {"backend-1": 10, "backend-2": 10}, seen
