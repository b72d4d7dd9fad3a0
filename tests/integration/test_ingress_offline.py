"""A dead zone ingress stops attracting other zones' traffic (real processes throughout).

A global, zone-1 and zone-2; backend only in zone-2, behind zone-2's real zone-ingress; web
in zone-1 calls backend.mesh. SIGKILL the ingress: zone-2's zone-cp empties its
`availableServices`, the change goes up to the global and down to zone-1, whose catalog, DNS
and web sidecar then have no backend. Restart the ingress: backend is back in zone-1 with
the same VIP (the VIP book kept it reserved) and answers through it again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import (
    Mesh,
    Workload,
    allow,
    answered_by,
    dns_query,
)
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

# Seconds from the SIGKILL to zone-1 no longer listing backend: zone-2 waits out the restart
# grace (zone_cp.services.INGRESS_RESTART_GRACE, 3 s) before emptying the ingress, then one
# trip through the global; the rest is room for a loaded machine.
OFFLINE_WITHIN = 8.0


def backend_outbounds(web: Workload) -> list[dict[str, Any]]:
    return [o for o in web.stats()["outbounds"] if o["service"] == "backend"]


def test_a_killed_ingress_leaves_other_zones_and_comes_back_with_the_same_vip(
    procs: Procs, tmp_path: Path
) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    mesh.workload("zone-2", "backend-z2", "backend")
    ingress = mesh.ingress("zone-2")
    web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    zone1 = mesh.zones["zone-1"]
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="first answer")
    assert [e["viaIngress"] for o in backend_outbounds(web) for e in o["endpoints"]]

    ingress.proc.kill()  # SIGKILL: nothing said goodbye
    killed = time.monotonic()
    wait_until(
        lambda: zone1.service("backend") is None,
        timeout=OFFLINE_WITHIN,
        interval=0.05,
        what="backend gone from zone-1's services",
    )
    assert time.monotonic() - killed < OFFLINE_WITHIN
    assert dns_query(zone1.dns, "backend.mesh")[0] == "NXDOMAIN"
    wait_until(lambda: not backend_outbounds(web), what="web's sidecar drops its backend outbound")
    # The global relays the emptied ingress: zone-2 advertises nothing through it.
    at_global = [
        i
        for i in mesh.glob.items("/zoneingresses")
        if i["labels"].get("kuma.io/display-name") == "ingress-zone-2"
    ]
    assert [i.get("availableServices") or [] for i in at_global] == [[]]
    insight = mesh.zones["zone-2"].http.get("/zone-ingress-insights/ingress-zone-2")
    assert "disconnectTime" in insight["subscriptions"][-1]

    # The same ingress again (same name, address and port): backend is back, same VIP.
    again = procs.start("ingress-zone-2-again", ingress.proc.argv)
    wait_until(lambda: _ready(ingress.admin) or not again.alive(), timeout=20, what="ingress up")
    assert again.alive(), again.log()
    assert mesh.target("zone-1", "backend", zones=["zone-2"]) == (vip, port)
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="answer after restart")


def _ready(admin: int) -> bool:
    try:
        return bool(admin_json(admin, "/ready")["ready"])
    except OSError:
        return False
