"""One global, one zone and `kuma.io/protocol: http` services behind real sidecars with the
mesh's builtin mTLS, for the tests that apply an HTTP policy at the global and watch a zone's
traffic change (this module has no tests).

`web`'s sidecar is the caller: a test talks plain HTTP to a service's VIP, so every request
goes through web's outbound (where MeshTimeout, MeshRetry, MeshCircuitBreaker... `to[]`
apply), then over mTLS to an instance's sidecar and its application,
tests/integration/http_backend.py, whose behaviour the test sets by talking to it directly
(`PUT /control/...`).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshfed.resources.types import default_registry
from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

BACKEND = "backend"
APP = "tests.integration.http_backend"
ZONE = "zone-1"


def control(backend: Workload, what: str, value: int | None = None) -> Any:
    """`GET /control` (value None: `what` is the key the caller reads) or
    `PUT /control/<what>/<value>` on an instance's application."""
    conn = http.client.HTTPConnection(backend.app_address, backend.app_port, timeout=5)
    try:
        if value is None:
            conn.request("GET", "/control")
        else:
            conn.request("PUT", f"/control/{what}/{value}")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def arrivals(backends: Sequence[Workload], target: str) -> list[float]:
    """When requests to `target` reached any of `backends`' applications, in order."""
    times: list[float] = []
    for b in backends:
        conn = http.client.HTTPConnection(b.app_address, b.app_port, timeout=5)
        try:
            conn.request("GET", "/control/arrivals")
            times += json.loads(conn.getresponse().read()).get(target, [])
        finally:
            conn.close()
    return sorted(times)


@dataclass
class World:
    mesh: Mesh
    web: Workload
    backends: list[Workload]
    vip: str
    port: int
    others: dict[str, Workload] = field(default_factory=dict)  # instances of other services

    def call(self, path: str = "/who") -> tuple[int, str, dict[str, str]]:
        """One request through web's sidecar: status, answering instance, headers."""
        conn = http.client.HTTPConnection(self.vip, self.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": BACKEND})
            resp = conn.getresponse()
            body = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            name = str(json.loads(body).get("name", ""))
        except ValueError:
            name = ""
        return resp.status, name, headers

    def names(self, n: int = 12) -> list[str]:
        return [self.call()[1] for _ in range(n)]

    def control(self, backend: Workload, what: str, value: int | None = None) -> Any:
        return control(backend, what, value)

    def outbound(self, service: str = BACKEND) -> Any:
        return next(o for o in self.web.stats()["outbounds"] if o["service"] == service)

    def endpoint(self, backend: Workload) -> Any:
        return next(
            e for e in self.outbound(backend.service)["endpoints"] if e["port"] == backend.port
        )

    def policies(self, service: str = BACKEND) -> Any:
        config = admin_json(self.web.admin, "/config")
        return next(o for o in config["outbounds"] if o["service"] == service)["policies"]

    def apply(self, kind: str, name: str, default: dict[str, Any], service: str = BACKEND) -> None:
        """`kind` named `name` at the global: `default` for every caller of `service`."""
        self.mesh.apply(
            {
                "type": kind,
                "name": name,
                "mesh": MESH,
                "spec": {
                    "targetRef": {"kind": "Mesh"},
                    "to": [
                        {"targetRef": {"kind": "MeshService", "name": service}, "default": default}
                    ],
                },
            }
        )

    def delete(self, plural: str, name: str) -> None:
        self.mesh.glob.delete(f"/meshes/{MESH}/{plural}/{name}")

    def enforce(
        self, kind: str, name: str, default: dict[str, Any], service: str = BACKEND
    ) -> None:
        """Applies the policy at the global; returns once web's sidecar enforces it."""
        self.apply(kind, name, default, service)
        self._wait_source(kind, name, service, present=True)

    def withdraw(self, kind: str, name: str, service: str = BACKEND) -> None:
        """Deletes the policy at the global; returns once web's sidecar dropped it."""
        self.delete(default_registry().get(kind).plural, name)
        self._wait_source(kind, name, service, present=False)

    def _wait_source(self, kind: str, name: str, service: str, *, present: bool) -> None:
        source = f"{kind}/{name}"
        self.wait_policies(
            lambda p: (source in p.get("sources", ())) == present,
            f"{source} {'at' if present else 'gone from'} web's sidecar",
            service,
        )

    def wait_policies(
        self, check: Callable[[Any], bool], what: str, service: str = BACKEND
    ) -> None:
        wait_until(lambda: check(self.policies(service)), timeout=20, interval=0.05, what=what)


def wait_ready(workloads: Sequence[Workload]) -> None:
    """Until every sidecar says it is ready (they start at once: `workload(wait=False)`)."""

    def ready(w: Workload) -> bool:
        assert w.sidecar.alive(), w.sidecar.log()
        try:
            return bool(admin_json(w.admin, "/ready")["ready"])
        except OSError:
            return False

    for w in workloads:
        wait_until(lambda: ready(w), timeout=20, what=f"{w.name} ready")  # noqa: B023


def start_world(
    procs: Procs, root: Path, *, backends: int = 2, reachable: Sequence[str] = ()
) -> World:
    """The mesh, `backends` instances of `backend` and `web` (which may also call the
    services of `reachable`, allowed and started by the caller), once both answer."""
    mesh = Mesh.start(procs, root, zone_names=(ZONE,))
    for service in (BACKEND, *reachable):
        mesh.apply(allow(f"web-to-{service}", service, "web"))
    instances = [
        mesh.workload(ZONE, f"backend-{i}", BACKEND, protocol="http", app_module=APP, wait=False)
        for i in range(1, backends + 1)
    ]
    web = mesh.workload(
        ZONE,
        "web-1",
        "web",
        reachable=[BACKEND, *reachable],
        protocol="http",
        app_module=APP,
        wait=False,
    )
    wait_ready([*instances, web])
    vip, port = mesh.target(ZONE, BACKEND)
    w = World(mesh, web, instances, vip, port)
    everyone = {b.name for b in instances}
    wait_until(
        lambda: set(w.names(2 * backends)) == everyone, timeout=20, what="every instance answers"
    )
    return w
