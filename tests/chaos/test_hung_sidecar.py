"""Chaos: a sidecar that hangs (SIGSTOP) while its connection stays open (issue 16: "a
sidecar that hangs keeps its last report until the stream ends").

The kernel keeps ACKing a frozen process's TCP connection, so nothing but an unanswered
keepalive ping shows it: zone-cp pings every proxy (`--dp-keepalive-interval`) and ends the
stream of one that does not answer within `--dp-keepalive-timeout`, which marks its inbounds
not ready; the catalog and DNS drop the service. On SIGCONT the sidecar finds its stream
gone, reconnects, reports ready, and the service is back with the same VIP.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import Mesh, dns_query
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

KEEPALIVE = ("--dp-keepalive-interval", "1s", "--dp-keepalive-timeout", "1s")
# One ping interval, one timeout, the disconnection's writes and a catalog pass: ~2 s idle.
WITHDRAWN_WITHIN = 12.0


def test_a_frozen_sidecar_is_withdrawn_and_comes_back_when_it_thaws(
    procs: Procs, tmp_path: Path
) -> None:
    mesh = Mesh.start(procs, tmp_path, zone_names=("zone-1",), zone_args=KEEPALIVE)
    backend = mesh.workload("zone-1", "backend-1", "backend")
    zone = mesh.zones["zone-1"]
    wait_until(lambda: zone.service("backend") is not None, timeout=20, what="backend listed")
    vip = zone.resolve("backend.mesh")
    assert vip is not None

    backend.sidecar.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        wait_until(
            lambda: zone.service("backend") is None,
            timeout=WITHDRAWN_WITHIN,
            interval=0.1,
            what="backend withdrawn while its sidecar is frozen",
        )
        withdrawn_in = time.monotonic() - frozen
        assert dns_query(zone.dns, "backend.mesh")[0] == "NXDOMAIN"
        [dp] = zone.http.items("/meshes/default/dataplanes")
        assert dp["networking"]["inbound"][0]["health"]["ready"] is False
        insight = zone.http.get("/meshes/default/dataplane-insights/backend-1")
        assert "disconnectTime" in insight["subscriptions"][-1]
    finally:
        backend.sidecar.signal(signal.SIGCONT)

    wait_until(lambda: zone.service("backend") is not None, timeout=20, what="backend back")
    assert zone.resolve("backend.mesh") == vip
    insight = zone.http.get("/meshes/default/dataplane-insights/backend-1")
    assert "disconnectTime" not in insight["subscriptions"][-1]
    assert backend.sidecar.alive()
    print(f"withdrawn {withdrawn_in:.1f}s after SIGSTOP (keepalive 1s + 1s)")
