"""Chaos: a zone ingress that restarts is not a zone ingress that died (issue 16: other zones
dropped and re-added its services on every restart). zone-2's ingress is killed and started
again at once; zone-1 lists backend throughout, with the same VIP, and calls go through again.
Its death (no restart) is tests/integration/test_ingress_offline.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import Mesh, allow, answered_by
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration


def ready(admin: int) -> bool:
    try:
        return bool(admin_json(admin, "/ready")["ready"])
    except OSError:
        return False


def test_a_restarting_ingress_stays_advertised(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path)
    mesh.apply(allow("web-to-backend", "backend", "web"))
    mesh.workload("zone-2", "backend-z2", "backend")
    ingress = mesh.ingress("zone-2")
    mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
    zone1 = mesh.zones["zone-1"]
    vip, port = mesh.target("zone-1", "backend", zones=["zone-2"])
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="first answer")

    ingress.proc.kill()
    again = procs.start("ingress-zone-2-again", ingress.proc.argv)
    listed: list[bool] = []
    wait_until(
        lambda: listed.append(zone1.service("backend") is not None) or ready(ingress.admin),
        timeout=20,
        interval=0.05,
        what="the ingress again",
    )
    assert again.alive(), again.log()
    end = time.monotonic() + 4.0  # past the grace: the restart must not empty it late
    while time.monotonic() < end:
        listed.append(zone1.service("backend") is not None)
        time.sleep(0.05)
    assert listed and all(listed), listed
    assert mesh.target("zone-1", "backend", zones=["zone-2"]) == (vip, port)
    wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="answer after")
