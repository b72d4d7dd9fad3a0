"""Issue 17's MeshService acceptance on real processes (a global, two zones, echo apps with
sidecars, zone-2's ingress): with the Mesh's `meshServices.mode: Everywhere` each zone
generates a MeshService per `kuma.io/service`, syncs it up to the global and on to the other
zone, where Kuma's default HostnameGenerators name it `backend.svc.zone-2.mesh.local`; zone-1's
DNS answers it with a VIP of zone-1's range and web's sidecar routes it through zone-2's
ingress. A MeshMultiZoneService spanning both zones answers as `backend.mzsvc.mesh.local`.
The VIPs stay the same across a KDS reconnect (the global restarted) and a zone-cp restart
(Kuma #13592 must not happen). A MeshTCPRoute whose backendRef names zone-2's MeshService by
port sends zone-1's local MeshService traffic there (decision 166). One federation for the
module."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import (
    MESH,
    Mesh,
    Workload,
    allow,
    answered_by,
    try_get,
)
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

MTLS = {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
SYNCED = "backend.svc.zone-2.mesh.local"
MULTI = "backend.mzsvc.mesh.local"


@dataclass
class World:
    mesh: Mesh
    web: Workload
    backend_z1: Workload
    backend_z2: Workload


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("meshservices")
    procs = Procs(root)
    try:
        mesh = Mesh.start(procs, root)
        mesh.glob.put(
            f"/meshes/{MESH}",
            {"type": "Mesh", "name": MESH, "mtls": MTLS, "meshServices": {"mode": "Everywhere"}},
        )
        mesh.apply(allow("web-to-backend", "backend", "web"))
        backend_z2 = mesh.workload("zone-2", "backend-z2", "backend", wait=False)
        backend_z1 = mesh.workload("zone-1", "backend-z1", "backend", wait=False)
        mesh.ingress("zone-2")
        web = mesh.workload("zone-1", "web-1", "web", reachable=["backend"])
        yield World(mesh, web, backend_z1, backend_z2)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def zone_services(w: World, zone: str) -> list[dict[str, Any]]:
    return list(w.mesh.zones[zone].http.get(f"/meshes/{MESH}/meshservices")["items"])


def synced_copy(w: World) -> dict[str, Any] | None:
    """zone-1's copy of zone-2's generated `backend` MeshService."""
    for item in zone_services(w, "zone-1"):
        labels = item["labels"]
        if labels.get("kuma.io/zone") == "zone-2" and labels["kuma.io/display-name"] == "backend":
            return item
    return None


def local_vip(w: World) -> str | None:
    """The VIP zone-2 gives its own `backend` MeshService (its status)."""
    for item in zone_services(w, "zone-2"):
        if item["name"] == "backend" and item.get("status", {}).get("vips"):
            return str(item["status"]["vips"][0]["ip"])
    return None


def test_a_zone_2_mesh_service_is_reachable_from_zone_1_by_its_hostname(w: World) -> None:
    zone1 = w.mesh.zones["zone-1"]
    copy = wait_until(lambda: synced_copy(w), timeout=20, what="zone-2's MeshService in zone-1")
    assert copy["labels"]["kuma.io/origin"] == "global"
    assert copy["spec"]["selector"] == {"dataplaneTags": {"kuma.io/service": "backend"}}
    [port] = copy["spec"]["ports"]
    assert port["port"] == w.backend_z2.port and port["appProtocol"] == "tcp"
    # at the global: renamed and labelled with its zone, as Dataplanes are
    at_global = [
        i
        for i in w.mesh.glob.items(f"/meshes/{MESH}/meshservices")
        if i["labels"]["kuma.io/zone"] == "zone-2"
    ]
    assert [i["labels"]["kuma.io/display-name"] for i in at_global] == ["backend"]
    assert at_global[0]["name"].startswith("backend.")

    vip = wait_until(lambda: zone1.resolve(SYNCED), timeout=20, what=f"{SYNCED} in zone-1")
    assert ipaddress.IPv4Address(vip) in zone1.cidr
    wait_until(
        lambda: answered_by(vip, port["port"], "zone-2"), timeout=20, what="a call through it"
    )
    answers = [try_get(vip, port["port"]) for _ in range(10)]
    assert {a["instance"] for a in answers if a} == {"backend-z2"}
    assert all(answers)
    # zone-2 names its own one `backend.svc.mesh.local`, and says so in its status
    status = wait_until(
        lambda: next(
            (
                i["status"]
                for i in zone_services(w, "zone-2")
                if i["name"] == "backend" and i.get("status", {}).get("addresses")
            ),
            None,
        ),
        timeout=20,
        what="zone-2's status of backend",
    )
    assert [a["hostname"] for a in status["addresses"]] == ["backend.svc.mesh.local"]
    assert status["tls"] == {"status": "Ready"}
    assert w.mesh.zones["zone-2"].resolve("backend.svc.mesh.local") == status["vips"][0]["ip"]


def test_a_multi_zone_service_spans_both_zones(w: World) -> None:
    zone1 = w.mesh.zones["zone-1"]
    w.mesh.apply(
        {
            "type": "MeshMultiZoneService",
            "name": "backend",
            "mesh": MESH,
            "spec": {
                "selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "backend"}}},
                "ports": [{"port": 7070, "appProtocol": "tcp"}],
            },
        }
    )
    vip = wait_until(lambda: zone1.resolve(MULTI), timeout=20, what=f"{MULTI} in zone-1")

    def zones_of_outbound() -> set[str]:
        config = admin_json(w.web.admin, "/config")
        found = [o for o in config["outbounds"] if o["address"] == vip and o["port"] == 7070]
        return {e.get("zone", "") for o in found for e in o["endpoints"]}

    wait_until(lambda: zones_of_outbound() == {"zone-1", "zone-2"}, timeout=20, what="both zones")
    # the local zone first (locality-aware by default)
    wait_until(lambda: answered_by(vip, 7070, "zone-1"), timeout=20, what="a local answer")


def test_vips_survive_a_kds_reconnect_and_a_zone_cp_restart(w: World) -> None:
    zone1 = w.mesh.zones["zone-1"]
    before_z1 = wait_until(lambda: zone1.resolve(SYNCED), timeout=20, what=SYNCED)
    before_z2 = wait_until(lambda: local_vip(w), timeout=20, what="zone-2's own VIP")
    cluster = w.mesh.cluster
    # the global restarts: both zones reconnect and resync
    cluster.stop(cluster.glob)
    cluster.start(cluster.glob)
    cluster.wait_online()
    assert zone1.resolve(SYNCED) == before_z1
    assert local_vip(w) == before_z2
    # zone-1's control plane restarts
    cluster.stop(cluster.zones["zone-1"])
    cluster.start(cluster.zones["zone-1"])
    cluster.wait_online()
    assert wait_until(lambda: zone1.resolve(SYNCED), timeout=20, what=SYNCED) == before_z1
    assert local_vip(w) == before_z2
    copy = synced_copy(w)
    assert copy is not None
    wait_until(
        lambda: answered_by(before_z1, copy["spec"]["ports"][0]["port"], "zone-2"),
        timeout=20,
        what="calls after the restarts",
    )


def test_a_route_sends_a_meshservice_port_to_another_zones_port(w: World) -> None:
    """Decision 166: a MeshTCPRoute on zone-1's `backend` MeshService whose backendRef is
    zone-2's `backend` MeshService by `port` sends zone-1's calls through zone-2's ingress."""
    zone1 = w.mesh.zones["zone-1"]
    copy = wait_until(lambda: synced_copy(w), timeout=20, what="zone-2's MeshService in zone-1")
    vip = wait_until(
        lambda: zone1.resolve("backend.svc.mesh.local"), timeout=20, what="zone-1's own VIP"
    )
    port = w.backend_z1.port
    wait_until(lambda: answered_by(vip, port, "zone-1"), timeout=20, what="a local answer")
    ref = {"kind": "MeshService", "name": copy["name"], "port": copy["spec"]["ports"][0]["port"]}
    w.mesh.apply(
        {
            "type": "MeshTCPRoute",
            "name": "backend-to-zone-2",
            "mesh": MESH,
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [
                    {
                        "targetRef": {"kind": "MeshService", "name": "backend"},
                        "rules": [{"default": {"backendRefs": [ref]}}],
                    }
                ],
            },
        }
    )
    try:
        wait_until(lambda: answered_by(vip, port, "zone-2"), timeout=20, what="the route")
        answers = [try_get(vip, port) for _ in range(10)]
        assert {a["instance"] for a in answers if a} == {"backend-z2"}
    finally:
        w.mesh.glob.delete(f"/meshes/{MESH}/meshtcproutes/backend-to-zone-2")


def test_a_hostname_generator_applied_at_a_zone_names_its_services_there_only(w: World) -> None:
    """Issue 17: a HostnameGenerator may be applied at a zone (`kuma.io/origin: zone`); it
    names that zone's MeshServices, is synced up read-only and reaches no other zone."""
    zone1, zone2 = w.mesh.zones["zone-1"], w.mesh.zones["zone-2"]
    generator = {
        "type": "HostnameGenerator",
        "name": "zone-1-short",
        "labels": {"kuma.io/origin": "zone"},
        "spec": {
            "selector": {"meshService": {"matchLabels": {"kuma.io/origin": "zone"}}},
            "template": "{{ .DisplayName }}.zone-1-local.mesh.local",
        },
    }
    zone1.http.put("/hostnamegenerators/zone-1-short", generator)
    name = "backend.zone-1-local.mesh.local"
    vip = wait_until(lambda: zone1.resolve(name), timeout=20, what=f"{name} in zone-1")
    assert vip == zone1.resolve("backend.svc.mesh.local")  # the same MeshService's VIP

    def at_global() -> list[dict[str, Any]]:
        return [
            i
            for i in w.mesh.glob.items("/hostnamegenerators")
            if i["labels"].get("kuma.io/display-name") == "zone-1-short"
        ]

    [synced] = wait_until(at_global, timeout=20, what="the generator at the global")
    assert synced["labels"]["kuma.io/zone"] == "zone-1"
    assert synced["labels"]["kuma.io/origin"] == "zone"
    edit = {k: v for k, v in generator.items() if k != "labels"} | {"name": synced["name"]}
    code, body = w.mesh.glob.call("PUT", f"/hostnamegenerators/{synced['name']}", edit)
    assert code == 405 and "change or delete it in zone 'zone-1'" in body["detail"], body
    assert w.mesh.glob.call("DELETE", f"/hostnamegenerators/{synced['name']}")[0] == 405
    # zone-2 never gets it, so never answers the name
    assert all(i["name"] != "zone-1-short" for i in zone2.http.items("/hostnamegenerators"))
    assert zone2.resolve(name) is None
    zone1.http.delete("/hostnamegenerators/zone-1-short")
    wait_until(lambda: zone1.resolve(name) is None, timeout=20, what=f"{name} gone")
    wait_until(lambda: not at_global(), timeout=20, what="the generator gone at the global")
