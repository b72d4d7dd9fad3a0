"""Issue 17 item 7 with real processes: a MeshTrafficPermission allowing only callers tagged
`version: v2` admits v2 and refuses v1 of the same service (decision 152).

One global, one zone, mTLS on. `backend` has one instance; `web` has two, tagged `version:
v1` and `version: v2`, each calling backend through an explicit outbound of its own sidecar.
zone-cp writes each web's tags into its certificate (`kuma://version/v2`); backend's sidecar
reads them on the inbound handshake and folds the permission's entries on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, try_get
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"
V2_ONLY: dict[str, Any] = {
    "type": "MeshTrafficPermission",
    "name": "backend-from-web-v2",
    "mesh": MESH,
    "spec": {
        "targetRef": {"kind": "MeshService", "name": "backend"},
        "from": [
            {
                "targetRef": {
                    "kind": "MeshServiceSubset",
                    "name": "web",
                    "tags": {"version": "v2"},
                },
                "default": {"action": "Allow"},
            }
        ],
    },
}


@dataclass
class World:
    mesh: Mesh
    backend: Workload
    # caller name -> (its outbound to backend: address, port)
    outbound: dict[str, tuple[str, int]]


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("anytag")
    procs = Procs(root)
    try:
        mesh = Mesh.start(procs, root, zone_names=(ZONE,))
        backend = mesh.workload(ZONE, "backend-1", "backend")
        outbound: dict[str, tuple[str, int]] = {}
        for version in ("v1", "v2"):
            address = mesh.addresses.next()
            port = free_port(address)
            out = {"address": address, "port": port, "tags": {"kuma.io/service": "backend"}}
            mesh.workload(ZONE, f"web-{version}", "web", tags={"version": version}, outbounds=[out])
            outbound[f"web-{version}"] = (address, port)
        mesh.apply(V2_ONLY)
        source = f"MeshTrafficPermission/{V2_ONLY['name']}"
        wait_until(
            lambda: (
                source
                in admin_json(backend.admin, "/config")["inbounds"][0]["permissions"].get(
                    "sources", []
                )
            ),
            timeout=20,
            what="the permission at backend's sidecar",
        )
        yield World(mesh, backend, outbound)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def test_only_the_v2_caller_gets_in(w: World) -> None:
    v2 = wait_until(
        lambda: try_get(*w.outbound["web-v2"]), timeout=10, interval=0.1, what="web-v2's call"
    )
    assert v2["instance"] == "backend-1"
    assert try_get(*w.outbound["web-v1"]) is None
    stats = w.backend.stats()["inbounds"][0]
    # both callers are service web (one SPIFFE ID); only their certificates' tags differ
    assert stats["authorized"].get("spiffe://default/web", 0) >= 1
    assert stats["denied"].get("spiffe://default/web", 0) >= 1
