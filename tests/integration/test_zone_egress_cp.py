"""MeshExternalService end to end (issue 17): a global, one zone, a zone-egress configured by
its zone-cp, mesh-dp sidecars, and a local HTTPS server with its own CA standing in for the
service outside the mesh.

An application calls `http://<name>.extsvc.mesh:<match.port>` or Kuma's
`<name>.extsvc.mesh.local` (the zone DNS gives the VIP its sidecar listens on); the sidecar
sends it over mTLS to the egress, which checks the MeshTrafficPermission targeting the
MeshExternalService and originates TLS, verified against the service's `caCert` and
`serverName`. One federation serves the module.
"""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshfed.pki.ca import create_mesh_ca
from tests.integration.egress_support import (
    EXTERNAL_NAME,
    TlsServer,
    external_server_context,
    module_processes,
)
from tests.integration.test_cross_zone_support import MESH, Mesh, _ready
from tests.integration.test_mesh_dp_support import admin_json
from tests.integration.token_support import dataplane_token, write_token, zone_token
from tests.support import Proc, Procs, free_port, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"
REACHABLE = ("ext-https", "ext-wrong-ca", "ext-wrong-name")


def external(name: str, port: int, tls: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "match": {"type": "HostnameGenerator", "port": 8080, "protocol": "http"},
        "endpoints": [{"address": "127.0.0.1", "port": port}],
    }
    if tls is not None:
        spec["tls"] = tls
    return {"type": "MeshExternalService", "name": name, "mesh": MESH, "spec": spec}


class World:
    def __init__(self, procs: Procs, root: Path) -> None:
        self.procs, self.root = procs, root
        self.mesh = Mesh.start(procs, root, (ZONE,))
        ext_ca, other_ca = create_mesh_ca("ext"), create_mesh_ca("other")
        self.https = TlsServer("https", external_server_context(ext_ca, root))
        ca = base64.b64encode(ext_ca.cert_pem).decode()
        verified = {"caCert": {"inline": ca}, "serverName": EXTERNAL_NAME}
        self.mesh.apply(
            external("ext-https", self.https.port, {"enabled": True, "verification": verified})
        )
        wrong_ca = {"inline": base64.b64encode(other_ca.cert_pem).decode()}
        self.mesh.apply(
            external(
                "ext-wrong-ca",
                self.https.port,
                {"enabled": True, "verification": {**verified, "caCert": wrong_ca}},
            )
        )
        self.mesh.apply(
            external(
                "ext-wrong-name",
                self.https.port,
                {"enabled": True, "verification": {**verified, "serverName": "no.test"}},
            )
        )
        # the same server again, for the caller no permission names (its own VIP: a sidecar
        # per VIP on this host)
        self.mesh.apply(
            external("ext-guarded", self.https.port, {"enabled": True, "verification": verified})
        )
        for name in ("ext-https", "ext-wrong-ca", "ext-wrong-name", "ext-guarded"):
            self.mesh.apply(
                {
                    "type": "MeshTrafficPermission",
                    "name": f"web-to-{name}",
                    "mesh": MESH,
                    "spec": {
                        "targetRef": {"kind": "MeshExternalService", "name": name},
                        "from": [
                            {
                                "targetRef": {"kind": "MeshService", "name": "web"},
                                "default": {"action": "Allow"},
                            }
                        ],
                    },
                }
            )
        self.egress_admin = free_port()
        self.egress = self.start_egress("egress-1", zone_token_for=(ZONE, "egress"))
        self.web = self.mesh.workload(ZONE, "web-1", "web", reachable=REACHABLE, wait=False)
        self.intruder = self.mesh.workload(
            ZONE, "intruder-1", "intruder", reachable=["ext-guarded"], wait=False
        )
        for w in (self.web, self.intruder):
            wait_until(
                lambda w=w: _ready(w.admin) or not w.sidecar.alive(), timeout=20, what=w.name
            )
            assert w.sidecar.alive(), w.sidecar.log()
        wait_until(
            lambda: _ready(self.egress_admin) or not self.egress.alive(), timeout=20, what="egress"
        )
        assert self.egress.alive(), self.egress.log()

    def start_egress(
        self,
        name: str,
        *,
        zone_token_for: tuple[str, str] | None = None,
        token: str | None = None,
        admin: int | None = None,
    ) -> Proc:
        if zone_token_for is not None:
            zone, scope = zone_token_for
            token = zone_token(self.mesh.glob.base, self.mesh.cluster.admin_token(), zone, scope)
        assert token is not None
        token_file = write_token(self.root / f"{name}.token", token)
        address = self.mesh.addresses.next()
        return self.procs.start(
            name,
            [
                self.procs.script("zone-egress"),
                "run",
                "--cp",
                self.mesh.zones[ZONE].cp_url,
                "--zone-token-file",
                str(token_file),
                "--name",
                name,
                "--address",
                address,
                "--port",
                str(free_port(address)),
                "--admin-address",
                f"127.0.0.1:{admin or self.egress_admin}",
                "--drain-timeout",
                "1s",
            ],
        )

    def vip(self, name: str, domain: str = "extsvc.mesh") -> str:
        zone = self.mesh.zones[ZONE]
        found = wait_until(lambda: zone.resolve(f"{name}.{domain}"), what=f"{name}'s VIP")
        return str(found)

    def get(self, name: str, domain: str = "extsvc.mesh") -> tuple[int, bytes]:
        """An application's GET through its sidecar's outbound for `name` (-1: cut), by the
        address the zone DNS gives `<name>.<domain>`."""
        conn = http.client.HTTPConnection(self.vip(name, domain), 8080, timeout=10)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            return -1, b""
        finally:
            conn.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with module_processes(tmp_path_factory, "egress-cp") as (root, procs):
        yield World(procs, root)


def egress_stats(world: World, name: str) -> dict[str, Any]:
    services = admin_json(world.egress_admin)["services"]
    found = next((s for s in services if s["name"] == name), None)
    return found or {"connectionsTotal": 0, "denied": 0, "noEndpoint": 0}


def test_the_egress_registers_and_gets_every_external_service(world: World) -> None:
    egresses = world.mesh.zones[ZONE].http.items("/zoneegresses")
    assert [(e["name"], e["zone"]) for e in egresses] == [("egress-1", ZONE)]

    # synced up to the global, as Kuma's ZoneEgress is, labelled with its zone
    def at_global() -> list[dict[str, Any]]:
        return world.mesh.glob.items("/zoneegresses")

    (synced,) = wait_until(at_global, timeout=20, what="the ZoneEgress at the global")
    assert synced["labels"]["kuma.io/zone"] == ZONE
    config = admin_json(world.egress_admin, "/config")
    assert sorted(s["name"] for s in config["services"]) == sorted([*REACHABLE, "ext-guarded"])


def test_an_https_call_through_the_egress_is_verified(world: World) -> None:
    status, body = world.get("ext-https")
    assert (status, body) == (200, b"hello from https")
    assert egress_stats(world, "ext-https")["connectionsTotal"] >= 1


def test_kumas_hostname_answers_under_mesh_local(world: World) -> None:
    # the global's default HostnameGenerator `synced-mesh-external-service` (decision 164)
    assert world.vip("ext-https", "extsvc.mesh.local") == world.vip("ext-https")
    status, body = world.get("ext-https", "extsvc.mesh.local")
    assert (status, body) == (200, b"hello from https")


def test_a_wrong_ca_or_server_name_fails_at_the_egress(world: World) -> None:
    for name in ("ext-wrong-ca", "ext-wrong-name"):
        status, _ = world.get(name)
        assert status != 200, name
        stats = egress_stats(world, name)
        assert stats["noEndpoint"] >= 1 and stats["connectionsTotal"] == 0, stats


@pytest.mark.parametrize(
    "case",
    ["ingress-scope", "other-zone", "dataplane-token"],
)
def test_the_egress_is_refused_without_its_own_zone_token(world: World, case: str) -> None:
    if case == "ingress-scope":
        proc = world.start_egress(
            f"egress-{case}", zone_token_for=(ZONE, "ingress"), admin=free_port()
        )
        reason = "not egress"
    elif case == "other-zone":
        proc = world.start_egress(
            f"egress-{case}", zone_token_for=("zone-9", "egress"), admin=free_port()
        )
        reason = "not this zone"
    else:
        token = dataplane_token(
            world.mesh.glob.base, world.mesh.cluster.admin_token(), ["web"], mesh=MESH
        )
        proc = world.start_egress(f"egress-{case}", token=token, admin=free_port())
        reason = "zone token refused"
    # refused at every attempt (a rotated token file may fix it), never registered
    wait_until(lambda: reason in proc.log(), timeout=20, what=f"{case}: {reason}")
    assert "PERMISSION_DENIED" in proc.log() or "UNAUTHENTICATED" in proc.log(), proc.log()
    names = [e["name"] for e in world.mesh.zones[ZONE].http.items("/zoneegresses")]
    assert names == ["egress-1"]
    proc.stop()


def test_a_caller_without_permission_is_refused_at_the_egress(world: World) -> None:
    status, _ = world.get("ext-guarded")  # through the intruder's sidecar
    assert status != 200
    stats = egress_stats(world, "ext-guarded")
    assert stats["denied"] >= 1 and stats["connectionsTotal"] == 0
