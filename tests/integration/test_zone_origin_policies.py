"""Zone-originated policies on real processes (issue 17 item 6 acceptance; decisions 149-151).

One global and two zones, each zone with its own `backend` (tests/integration/http_backend.py,
`kuma.io/protocol: http`) and a `web` caller behind real sidecars (no ingress: each zone calls
its own backend). A MeshTimeout applied at zone-1's API (requestTimeout 500ms) overrides the
global's (10s) there: a slow request from zone-1's caller times out, not zone-2's; the global
lists it renamed and labelled with zone-1, shows it in web-1's inspect rules only, and refuses
to change it; deleting it at zone-1 removes it from the global and from zone-1's sidecar.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshfed.kds.naming import zone_resource_name
from tests.integration.federation_support import Http
from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow
from tests.integration.test_http_timeout_retry import call, sources
from tests.integration.test_http_world_support import wait_ready
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

BACKEND = "backend"
APP = "tests.integration.http_backend"
NAME = "slow-backend"
MT = f"/meshes/{MESH}/meshtimeouts"
STORED = zone_resource_name(NAME, MESH, "zone-1")
ORIGIN_ZONE = {"kuma.io/origin": "zone"}


@dataclass
class World:
    mesh: Mesh
    webs: dict[str, Workload]
    targets: dict[str, tuple[str, int]]

    def zone(self, name: str) -> Http:
        return self.mesh.zones[name].http


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("zone-origin")
    procs = Procs(root)
    try:
        mesh = Mesh.start(procs, root, zone_names=("zone-1", "zone-2"))
        mesh.apply(allow("allow-web", BACKEND, "web"))
        webs, targets, started = {}, {}, []
        for i, zone in enumerate(("zone-1", "zone-2"), start=1):
            started += [
                mesh.workload(
                    zone, f"backend-{i}", BACKEND, app_module=APP, protocol="http", wait=False
                ),
                mesh.workload(zone, f"web-{i}", "web", reachable=[BACKEND], wait=False),
            ]
            webs[zone] = started[-1]
        wait_ready(started)  # the sidecars start at once
        for zone in webs:
            targets[zone] = vip, port = mesh.target(zone, BACKEND)
            wait_until(lambda v=vip, p=port: _ok(v, p), timeout=20, what=f"backend in {zone}")
        yield World(mesh, webs, targets)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def _ok(vip: str, port: int) -> bool:
    try:
        return call(vip, port, "/who", timeout=2)[0] == 200
    except OSError:
        return False


def timeout_doc(request_timeout: str, name: str = NAME) -> dict[str, Any]:
    return {
        "type": "MeshTimeout",
        "name": name,
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {"http": {"requestTimeout": request_timeout}},
                }
            ],
        },
    }


def _rules_origins(http: Http, dataplane: str) -> list[str] | None:
    """Display names of the MeshTimeouts in the global's inspect rules of a dataplane."""
    [name] = [
        d["name"]
        for d in http.items(f"/meshes/{MESH}/dataplanes")
        if d["labels"].get("kuma.io/display-name") == dataplane
    ] or [None]
    if name is None:
        return None
    status, body = http.call("GET", f"/meshes/{MESH}/dataplanes/{name}/_rules")
    if status != 200:
        return None
    return [
        o["resourceMeta"]["displayName"]
        for r in body["rules"]
        if r["type"] == "MeshTimeout"
        for rule in r["toRules"]
        for o in rule["origin"]
    ]


def test_a_zone_timeout_changes_its_zone_only_shows_at_the_global_and_is_read_only_there(
    world: World,
) -> None:
    z1, z2, g = world.zone("zone-1"), world.zone("zone-2"), world.mesh.glob
    web_1, web_2 = world.webs["zone-1"], world.webs["zone-2"]
    # The global's timeout (10s) reaches both zones; the zone's (500ms) overrides it in zone-1.
    g.put(f"{MT}/global-backend", timeout_doc("10s", "global-backend"))
    for web in (web_1, web_2):
        wait_until(
            lambda w=web: "MeshTimeout/global-backend" in sources(w), timeout=20, what="global"
        )
    # A federated zone wants Kuma's origin label on a policy applied there.
    status, body = z1.call("PUT", f"{MT}/{NAME}", timeout_doc("500ms"))
    assert status == 400 and "must be set to 'zone'" in str(body), body
    created = z1.put(f"{MT}/{NAME}", {**timeout_doc("500ms"), "labels": ORIGIN_ZONE})
    assert created["labels"]["kuma.io/origin"] == "zone"
    assert created["labels"]["kuma.io/zone"] == "zone-1"
    source = f"MeshTimeout/{NAME}"
    wait_until(lambda: source in sources(web_1), timeout=20, what="the policy at web-1")
    assert sources(web_1) == ["MeshTimeout/global-backend", source]  # least priority first
    # The global's copies stay read-only in a zone.
    status, body = z1.call("PUT", f"{MT}/global-backend", timeout_doc("1s", "global-backend"))
    assert status == 405 and "synced from the global control plane" in body["detail"], body
    assert z1.call("DELETE", f"/meshes/{MESH}/meshtrafficpermissions/allow-web")[0] == 405

    # zone-1's caller times out; zone-2's caller waits for the answer.
    vip, port = world.targets["zone-1"]
    start = time.monotonic()
    assert call(vip, port, "/slow?ms=1500") == (504, "timeout")
    assert time.monotonic() - start < 1.4
    vip, port = world.targets["zone-2"]
    assert call(vip, port, "/slow?ms=1500")[0] == 200
    assert source not in sources(web_2)
    assert z2.call("GET", f"{MT}/{NAME}")[0] == 404
    assert [i["name"] for i in z2.items(MT)] == ["global-backend"]  # only the global's

    # The global lists it renamed, labelled with its zone, and refuses to change it.
    got = wait_until(
        lambda: (
            g.call("GET", f"{MT}/{STORED}")[1]
            if g.call("GET", f"{MT}/{STORED}")[0] == 200
            else None
        ),
        timeout=20,
        what="the policy at the global",
    )
    assert got["labels"]["kuma.io/origin"] == "zone"
    assert got["labels"]["kuma.io/zone"] == "zone-1"
    assert got["labels"]["kuma.io/display-name"] == NAME
    assert got["spec"] == created["spec"]
    assert STORED in [i["name"] for i in g.items(MT)]
    status, body = g.call("PUT", f"{MT}/{STORED}", {**timeout_doc("9s"), "name": STORED})
    assert status == 405 and "change or delete it in zone 'zone-1'" in body["detail"], body
    assert g.call("DELETE", f"{MT}/{STORED}")[0] == 405
    # The global's inspect view applies it to zone-1's proxy only.
    wait_until(
        lambda: NAME in (_rules_origins(g, "web-1") or []), timeout=20, what="rules of web-1"
    )
    assert NAME not in (_rules_origins(g, "web-2") or [])

    # Deleting it at zone-1 removes it from the global and from web-1's sidecar.
    z1.delete(f"{MT}/{NAME}")
    wait_until(lambda: g.call("GET", f"{MT}/{STORED}")[0] == 404, timeout=20, what="gone")
    wait_until(lambda: source not in sources(web_1), timeout=20, what="gone from web-1")
    g.delete(f"{MT}/global-backend")
