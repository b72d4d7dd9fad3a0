"""A sidecar's reachable services, honoured by zone-cp (real processes: a global-cp, one
zone-cp, echo applications and mesh-dp sidecars configured over the config stream).

web's sidecar announces `reachableServices: [backend]` while the mesh also has other, third
and (later) late: the config zone-cp sends it (mesh-dp's /config shows the config as received,
before the sidecar's own filter) lists backend's outbounds only, web still reaches backend
through its VIP, a new service elsewhere sends web nothing, and a new backend instance does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import Mesh, Workload, allow, get, try_get
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"


def received(workload: Workload) -> dict[str, Any]:
    """The config the sidecar got from zone-cp (private key redacted)."""
    config: dict[str, Any] = admin_json(workload.admin, "/config")
    return config


def outbound_services(workload: Workload) -> set[str]:
    return {o["service"] for o in received(workload)["outbounds"]}


def test_zone_cp_sends_only_the_reachable_outbounds(procs: Procs, tmp_path: Path) -> None:
    mesh = Mesh.start(procs, tmp_path, zone_names=(ZONE,))
    mesh.apply(allow("web-to-backend", "backend", "web"))
    mesh.workload(ZONE, "backend-1", "backend")
    other = mesh.workload(ZONE, "other-1", "other", reachable=[])
    mesh.workload(ZONE, "third-1", "third")
    web = mesh.workload(ZONE, "web-1", "web", reachable=["backend"])
    vip, port = mesh.target(ZONE, "backend")
    for service in ("other", "third", "web"):
        mesh.target(ZONE, service)  # the zone resolves every service of the mesh

    def backend_outbounds() -> list[dict[str, Any]]:
        return [o for o in received(web)["outbounds"] if o["service"] == "backend"]

    wait_until(backend_outbounds, timeout=20, what="backend's outbound in web's config")
    assert outbound_services(web) == {"backend"}
    assert {o["zone"] for o in backend_outbounds()} == {None, ZONE}  # backend.mesh, pinned
    assert received(other)["outbounds"] == []  # an empty list: nothing reachable

    answer = wait_until(lambda: try_get(vip, port, 2), timeout=20, what="web reaches backend")
    assert answer["instance"] == "backend-1"
    assert {o["service"] for o in web.stats()["outbounds"]} == {"backend"}

    # Where an operator looks: the zone's DataplaneInsight of web, from its last report,
    # lists the outbounds it runs.
    def reported() -> set[str] | None:
        insight = mesh.zones[ZONE].http.get("/meshes/default/dataplane-insights/web-1")
        services = insight.get("report", {}).get("services")
        return None if not services else {s["service"] for s in services}

    assert wait_until(reported, timeout=20, what="web's report in its insight") == {"backend"}

    # A service web does not call appears: no new config for web. Then a second backend
    # instance: exactly one (and web's config has both instances).
    applied = web.stats()["source"]["configsApplied"]
    mesh.workload(ZONE, "late-1", "late")
    mesh.target(ZONE, "late")
    mesh.workload(ZONE, "backend-2", "backend")

    def two_backends() -> bool:
        first = backend_outbounds()[0]
        return len(first["endpoints"]) == 2

    wait_until(two_backends, timeout=20, what="backend-2 in web's config")
    assert outbound_services(web) == {"backend"}
    assert web.stats()["source"]["configsApplied"] == applied + 1
    instances = {get(vip, port)["instance"] for _ in range(20)}
    assert instances == {"backend-1", "backend-2"}
