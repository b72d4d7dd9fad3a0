"""Chaos: the global control plane dies under cross-zone traffic (issue 16, suite 1).

web (zone-1) calls backend, which runs only in zone-2, through real sidecars and zone-2's
ingress with mTLS; a DNS prober asks zone-1's DNS for backend.mesh every 50 ms. The global is
SIGKILLed for OUTAGE seconds (10 s in `make test`, 30 s under `make soak`):

- not one request fails and DNS answers every query, during the outage and around it;
- the rate stays at 50 requests a second or more;
- within 5 s of the global serving again, every zone is online and converged, and a Dataplane
  registered in zone-1 during the outage has reached the global;
- the outage is visible afterwards in `/zones+insights` (a new KDS subscription per zone,
  started after the global came back).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.bounds import bound, run_timeout
from tests.chaos.traffic import Traffic
from tests.integration.federation_support import dataplane, global_digest, zone_digest
from tests.integration.test_cross_zone_support import Mesh, allow, answered_by
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

OUTAGE = bound(10.0, 30.0)
MIN_RATE = 50.0
CONVERGE = 5.0


@pytest.mark.timeout(run_timeout(150, 300))
def test_a_global_outage_fails_no_request(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    mesh.workload("zone-2", "backend-z2-1", "backend")
    mesh.ingress("zone-2")
    mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="first answer")
    cluster, g = mesh.cluster, mesh.glob
    before = g.get("/zones+insights")

    traffic = Traffic(vip, port, mesh.zones["zone-1"], "backend.mesh", "zone-2").start()
    try:
        wait_until(lambda: len(traffic.requests) >= 50, timeout=20, what="steady traffic")
        killed = time.monotonic()
        cluster.stop(cluster.glob, signal.SIGKILL)
        for z in mesh.zones.values():
            wait_until(
                lambda z=z: z.http.get("/_kds")["state"] != "connected",
                timeout=10,
                what=f"{z.name} noticed the outage",
            )
        # A zone keeps taking writes while the global is away.
        mesh.zones["zone-1"].http.put(
            "/meshes/default/dataplanes/dp-outage", dataplane("dp-outage")
        )
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - killed)))  # the outage itself
        cluster.start(cluster.glob)
        back = time.monotonic()

        def converged() -> bool:
            want = global_digest(g)
            zones_in_sync = all(
                z.http.get("/_kds")["state"] == "connected" and zone_digest(z.http) == want
                for z in mesh.zones.values()
            )
            outage_dp = g.get("/meshes/default/dataplanes?name=dp-outage")["total"] == 1
            return zones_in_sync and outage_dp

        wait_until(converged, timeout=30, interval=0.1, what="convergence after the outage")
        converged_in = time.monotonic() - back
        settle = time.monotonic()
        wait_until(lambda: traffic.between(settle, time.monotonic() + 1), what="traffic after")
        time.sleep(1.0)
    finally:
        traffic.stop()

    failures = traffic.failures()
    print(  # shown with -s: the measured numbers the report quotes
        f"outage {back - killed:.1f}s, {len(traffic.requests)} requests, "
        f"{len(traffic.between(killed, back)) / (back - killed):.0f}/s during the outage, "
        f"converged {converged_in:.2f}s after the global returned"
    )
    assert failures == [], failures[:5]
    dns_failures = [o for o in traffic.dns if not o.ok]
    assert dns_failures == [], dns_failures[:5]
    during = traffic.between(killed, back)
    rate = len(during) / (back - killed)
    assert back - killed >= OUTAGE
    assert rate >= MIN_RATE, f"{rate:.1f} requests/s during the outage"
    assert len([o for o in traffic.dns if killed <= o.at <= back]) >= OUTAGE * 10
    assert converged_in <= CONVERGE, f"converged {converged_in:.2f}s after the global returned"

    # The outage is on record: each zone has a subscription that began after the global came
    # back, beside the one from before.
    after = {z["name"]: z for z in g.get("/zones+insights")["items"]}
    for zone in before["items"]:
        subs_before = zone["zoneInsight"]["subscriptions"]
        subs_after = after[zone["name"]]["zoneInsight"]["subscriptions"]
        assert len(subs_after) > len(subs_before), (zone["name"], subs_after)
        assert subs_after[-1]["id"] != subs_before[-1]["id"]
