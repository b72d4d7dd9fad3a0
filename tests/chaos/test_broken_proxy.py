"""Chaos: a connected sidecar whose application is down stops being advertised (issue 16:
"a connected but broken proxy keeps advertising").

backend runs only in zone-2, behind zone-2's ingress; web in zone-1 calls it. backend's
application is killed while its sidecar stays up and connected: the sidecar's probe reports
the inbound not ready (Report.inbounds[].ready), zone-cp stores it in the Dataplane's inbound
health, zone-2's ingress stops offering backend, and zone-1's catalog and DNS drop it. The
application back: backend is offered again with the same VIP and answers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import Mesh, allow, answered_by, dns_query
from tests.support import Procs, port_open, wait_until

pytestmark = pytest.mark.integration

WITHDRAWN_WITHIN = 10.0


def test_a_sidecar_whose_app_is_down_is_not_advertised(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    backend = mesh.workload("zone-2", "backend-z2", "backend")
    mesh.ingress("zone-2")
    mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    zone1, zone2 = mesh.zones["zone-1"], mesh.zones["zone-2"]
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="first answer")
    app_argv = backend.app.argv

    backend.app.kill()  # the application dies; its sidecar stays up and connected
    killed = time.monotonic()
    wait_until(
        lambda: zone1.service("backend") is None,
        timeout=WITHDRAWN_WITHIN,
        interval=0.05,
        what="backend withdrawn from zone-1",
    )
    assert backend.sidecar.alive()
    assert time.monotonic() - killed < WITHDRAWN_WITHIN
    assert dns_query(zone1.dns, "backend.mesh")[0] == "NXDOMAIN"
    [dp] = [d for d in zone2.http.items("/meshes/default/dataplanes") if d["name"] == "backend-z2"]
    assert dp["networking"]["inbound"][0]["health"]["ready"] is False

    # The application back on the same address: advertised again, same VIP, answering.
    app = procs.start("app-backend-z2-again", app_argv)
    host, app_port = app_argv[app_argv.index("--address") + 1].rsplit(":", 1)
    wait_until(lambda: port_open(host, int(app_port)) or not app.alive(), what="app again")
    assert app.alive(), app.log()
    assert mesh.target("zone-1", "backend", zones=["zone-2"]) == (vip, port)
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="answer again")
