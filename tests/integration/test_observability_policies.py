"""MeshAccessLog and MeshMetric on real traffic (issue 18, decisions 134-136): policies applied
at the global reach the sidecars of a zone; one request web -> backend (http) and one
connection web -> db (tcp) each leave a line on the caller's and the callee's sidecar, in a
file and at a TCP collector run by the test, naming source and destination service; a
MeshMetric serves backend's sidecar metrics on a chosen port and path with web's admin
metrics merged in as an application. Deleting each policy stops its output.

One set of processes for the module: a global and one zone, three workloads."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow, get, try_get
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"
PLAIN = (
    "%KUMA_TRAFFIC_DIRECTION% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% "
    "%REQ(:PATH)% %RESPONSE_CODE%"
)


class Collector:
    """A TCP access-log collector: every line any connection sends."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r", encoding="utf-8") as f:
            for line in f:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

    def json_lines(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for line in self.lines]


@dataclass
class World:
    mesh: Mesh
    web: Workload
    backend: Workload
    db: Workload
    vip: str
    port: int
    db_vip: str
    db_port: int
    root: Path
    collector: Collector = field(default_factory=Collector)


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("observability")
    procs = Procs(root)
    try:
        mesh = Mesh.start(procs, root, zone_names=(ZONE,))
        mesh.apply(allow("web-to-backend", "backend", "web"))
        mesh.apply(allow("web-to-db", "db", "web"))
        backend = mesh.workload(ZONE, "backend-1", "backend", protocol="http", wait=False)
        db = mesh.workload(ZONE, "db-1", "db", wait=False)
        web = mesh.workload(ZONE, "web-1", "web", reachable=["backend", "db"])
        vip, port = mesh.target(ZONE, "backend")
        db_vip, db_port = mesh.target(ZONE, "db")
        wait_until(lambda: try_get(vip, port) is not None, timeout=20, what="backend answers")
        wait_until(lambda: try_get(db_vip, db_port) is not None, timeout=20, what="db answers")
        yield World(mesh, web, backend, db, vip, port, db_vip, db_port, root)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def access_logs(w: Workload) -> list[Any]:
    """Every access-log backend in the sidecar's running config."""
    config = admin_json(w.admin, "/config")
    parts = [*config["inbounds"], *config["outbounds"]]
    return [a for p in parts for a in p.get("accessLogs", [])]


def request(vip: str, port: int, path: str) -> None:
    conn = http.client.HTTPConnection(vip, port, timeout=5)
    try:
        conn.request("GET", path)
        assert conn.getresponse().read()
    finally:
        conn.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_access_log_lines_on_both_sides_to_a_file_and_a_collector(w: World) -> None:
    out_file, in_file = w.root / "outbound.log", w.root / "inbound.log"
    plain = {"type": "Plain", "plain": PLAIN}
    as_json = {
        "type": "Json",
        "json": [
            {"key": "direction", "value": "%KUMA_TRAFFIC_DIRECTION%"},
            {"key": "source", "value": "%KUMA_SOURCE_SERVICE%"},
            {"key": "destination", "value": "%KUMA_DESTINATION_SERVICE%"},
            {"key": "path", "value": "%REQ(:PATH)%"},
            {"key": "status", "value": "%RESPONSE_CODE%"},
            {"key": "sent", "value": "%BYTES_SENT%"},
        ],
    }
    tcp = {"type": "Tcp", "tcp": {"address": f"127.0.0.1:{w.collector.port}", "format": as_json}}
    mesh_ref = {"kind": "Mesh"}
    w.mesh.apply(
        {
            "type": "MeshAccessLog",
            "name": "everything",
            "mesh": MESH,
            "spec": {
                "targetRef": mesh_ref,
                "to": [
                    {
                        "targetRef": mesh_ref,
                        "default": {
                            "backends": [
                                {"type": "File", "file": {"path": str(out_file), "format": plain}},
                                tcp,
                            ]
                        },
                    }
                ],
                "from": [
                    {
                        "targetRef": mesh_ref,
                        "default": {
                            "backends": [
                                {"type": "File", "file": {"path": str(in_file), "format": plain}},
                                tcp,
                            ]
                        },
                    }
                ],
            },
        }
    )
    for who in (w.web, w.backend, w.db):
        wait_until(lambda who=who: access_logs(who), timeout=10, what=f"{who.name}'s access logs")

    request(w.vip, w.port, "/one-request")
    wait_until(
        lambda: "OUTBOUND web->backend /one-request 200" in lines(out_file),
        timeout=5,
        what="web's outbound line",
    )
    wait_until(
        lambda: "INBOUND web->backend /one-request 200" in lines(in_file),
        timeout=5,
        what="backend's inbound line (the caller from its certificate)",
    )
    wait_until(lambda: len(w.collector.json_lines()) >= 2, timeout=5, what="collector lines")
    seen = {
        (j["direction"], j["source"], j["destination"], j["path"], j["status"])
        for j in w.collector.json_lines()
    }
    assert ("OUTBOUND", "web", "backend", "/one-request", "200") in seen
    assert ("INBOUND", "web", "backend", "/one-request", "200") in seen
    assert all(int(j["sent"]) > 0 for j in w.collector.json_lines())

    # One TCP connection: one line per side when it closes, no HTTP values.
    assert get(w.db_vip, w.db_port)["instance"] == "db-1"
    wait_until(lambda: "OUTBOUND web->db - 0" in lines(out_file), timeout=5, what="tcp outbound")
    wait_until(lambda: "INBOUND web->db - 0" in lines(in_file), timeout=5, what="tcp inbound")

    # Deleted: the sidecars drop the backends and write nothing more.
    w.mesh.glob.delete(f"/meshes/{MESH}/meshaccesslogs/everything")
    for who in (w.web, w.backend, w.db):
        wait_until(lambda who=who: not access_logs(who), timeout=10, what="no access logs")
    before = (len(lines(out_file)), len(lines(in_file)), len(w.collector.lines))
    request(w.vip, w.port, "/after-delete")
    with pytest.raises(AssertionError):
        wait_until(
            lambda: (len(lines(out_file)), len(lines(in_file)), len(w.collector.lines)) != before,
            timeout=0.5,
            what="no new line",
        )


def scrape(address: str, port: int, path: str) -> tuple[int, str] | None:
    try:
        conn = http.client.HTTPConnection(address, port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()
    except OSError:
        return None


def test_mesh_metric_moves_metrics_to_a_port_and_path(w: World) -> None:
    port = free_port(w.backend.address)
    w.mesh.apply(
        {
            "type": "MeshMetric",
            "name": "backend-metrics",
            "mesh": MESH,
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {
                    "applications": [{"port": w.web.admin, "path": "/metrics"}],
                    "backends": [
                        {"type": "Prometheus", "prometheus": {"port": port, "path": "/prom"}}
                    ],
                },
            },
        }
    )
    request(w.vip, w.port, "/counted")
    got = wait_until(
        lambda: scrape(w.backend.address, port, "/prom"), timeout=10, what="metrics on the port"
    )
    status, text = got
    assert status == 200
    # backend's own series: its inbound counted web's request (the Basic profile keeps it)
    assert "meshfed_dp_http_requests_total{" in text and 'direction="inbound"' in text
    # the application's (web's admin endpoint): its outbound to backend, and process series
    assert 'direction="outbound"' in text and "process_open_fds" in text
    assert scrape(w.backend.address, port, "/metrics") == (404, "metrics are at /prom\n")
    assert scrape(w.web.address, port, "/prom") is None  # web is not selected

    w.mesh.glob.delete(f"/meshes/{MESH}/meshmetrics/backend-metrics")
    wait_until(
        lambda: scrape(w.backend.address, port, "/prom") is None,
        timeout=10,
        what="the metrics listener closed",
    )
