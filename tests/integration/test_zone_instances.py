"""A second zone-cp with the same --zone (real processes) is refused with a clear error and
keeps backing off; the first one's streams are never replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.federation_support import Cluster, Http, dataplane, eventually
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration


def test_a_second_zone_cp_with_the_same_zone_is_refused_and_the_first_undisturbed(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    cluster.wait_online()
    g, first = cluster.glob.http, cluster.zones["zone-1"]
    first.http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    eventually(lambda: g.get("/dataplanes")["total"] == 1, what="dp-1 at the global")
    first_sessions = first.http.get("/_kds")["sessions"]

    twin_port = free_port()
    twin_argv = [a if a != str(first.data_dir) else str(tmp_path / "twin") for a in first.argv]
    twin_argv[twin_argv.index(f"127.0.0.1:{first.http.port}")] = f"127.0.0.1:{twin_port}"
    twin = procs.start("zone-1-twin", twin_argv)
    twin_http = Http(twin_port)
    wait_until(lambda: twin.alive() and twin_http.ready(), timeout=30, what="twin ready")

    def refused() -> bool:
        error = twin_http.get("/_kds")["lastError"] or ""
        return "already connected from another zone control plane" in error

    eventually(refused, what="the twin refused with a clear error")
    kds = twin_http.get("/_kds")
    assert kds["lastError"].startswith("ALREADY_EXISTS: ") and kds["state"] != "connected"
    insight = cluster.zone_state("zone-1")
    assert insight["state"] == "online" and len(insight["subscriptions"]) == 1
    assert "already connected" in insight["lastError"]
    # The first zone-cp was never replaced; the twin keeps backing off instead of hammering.
    assert first.http.get("/_kds")["sessions"] == first_sessions
    sessions = kds["sessions"]
    eventually(lambda: twin_http.get("/_kds")["sessions"] > sessions, what="a later retry")
    assert first.http.get("/_kds")["sessions"] == first_sessions
    assert g.get("/dataplanes")["total"] == 1
