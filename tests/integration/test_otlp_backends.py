"""MeshAccessLog's and MeshMetric's OpenTelemetry backends on real traffic (issue 18,
decisions 142-143): policies applied at the global reach the sidecars of a zone, which export
to OTLP collectors run by the test (tests/otlp_receivers.py, decoding with the OpenTelemetry
protobufs): one LogRecord per HTTP request and per TCP connection on each side, naming source
and destination service and the zone; the sidecar's metrics pushed with non-zero request
counters. Deleting each policy stops its output; a collector that is down costs the requests
nothing but counted drops.

One set of processes for the module: a global and one zone, three workloads."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow, get, try_get
from tests.integration.test_mesh_dp_support import admin_json, metrics_text
from tests.otlp_receivers import GrpcReceiver, HttpReceiver, attrs
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"
MESH_REF = {"kind": "Mesh"}
# how long a deleted policy may take to stop its output: a second on a quiet machine, more
# under the test suite's load
STOP_SECONDS = 3.0


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
    rss_before: float  # backend's sidecar before any OpenTelemetry backend


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("otlp")
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
        yield World(mesh, web, backend, db, vip, port, db_vip, db_port, rss(backend))
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


MIB = 1024 * 1024


def rss(w: Workload) -> float:
    """The sidecar's resident memory, from its admin /metrics."""
    for line in metrics_text(w.admin).splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no process_resident_memory_bytes")


def access_logs(w: Workload) -> list[Any]:
    config = admin_json(w.admin, "/config")
    parts = [*config["inbounds"], *config["outbounds"]]
    return [a for p in parts for a in p.get("accessLogs", [])]


def logs_of(w: Workload) -> Callable[[], bool]:
    return lambda: bool(access_logs(w))


def no_logs_of(w: Workload) -> Callable[[], bool]:
    return lambda: not access_logs(w)


def request(vip: str, port: int, path: str) -> None:
    conn = http.client.HTTPConnection(vip, port, timeout=5)
    try:
        conn.request("GET", path)
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def pushes(w: Workload) -> list[Any]:
    metrics = admin_json(w.admin, "/config").get("metrics") or {}
    return list(metrics.get("pushes", []))


def otel_log(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    backend = {"type": "OpenTelemetry", "openTelemetry": {"endpoint": endpoint, **extra}}
    entry = {"targetRef": MESH_REF, "default": {"backends": [backend]}}
    return {
        "type": "MeshAccessLog",
        "name": name,
        "mesh": MESH,
        "spec": {"targetRef": MESH_REF, "to": [entry], "from": [entry]},
    }


def test_log_records_on_both_sides_then_none_after_delete(w: World) -> None:
    receiver = HttpReceiver()
    try:
        w.mesh.apply(
            otel_log(
                "otel",
                receiver.endpoint,
                attributes=[
                    {"key": "direction", "value": "%KUMA_TRAFFIC_DIRECTION%"},
                    {"key": "source", "value": "%KUMA_SOURCE_SERVICE%"},
                    {"key": "destination", "value": "%KUMA_DESTINATION_SERVICE%"},
                    {"key": "path", "value": "%REQ(:PATH)%"},
                    {"key": "status", "value": "%RESPONSE_CODE%"},
                ],
            )
        )
        for who in (w.web, w.backend, w.db):
            wait_until(logs_of(who), timeout=10, what=f"{who.name}'s logs")
        request(w.vip, w.port, "/one")
        assert get(w.db_vip, w.db_port)["instance"] == "db-1"

        def seen() -> set[tuple[str, ...]]:
            return {
                (res["kuma.zone"], res["service.name"], *(attrs(rec)[k] for k in keys))
                for res, rec in receiver.got.records()
            }

        keys = ("direction", "source", "destination", "path", "status")
        want = {
            (ZONE, "web", "OUTBOUND", "web", "backend", "/one", "200"),
            (ZONE, "backend", "INBOUND", "web", "backend", "/one", "200"),  # caller by its cert
            (ZONE, "web", "OUTBOUND", "web", "db", "-", "0"),  # a TCP connection, when closed
            (ZONE, "db", "INBOUND", "web", "db", "-", "0"),
        }
        wait_until(lambda: want <= seen(), timeout=10, what=f"{want - seen()}")
        # the body, not set: Kuma's default format as a string (of an HTTP record: the TCP
        # connection to db may have been recorded first)
        rec = next(r for _, r in receiver.got.records() if attrs(r)["destination"] == "backend")
        assert "web" in rec.body.string_value and "backend" in rec.body.string_value

        w.mesh.glob.delete(f"/meshes/{MESH}/meshaccesslogs/otel")
        for who in (w.web, w.backend, w.db):
            wait_until(no_logs_of(who), timeout=STOP_SECONDS, what=f"{who.name} stopped")
        request(w.vip, w.port, "/after-delete")

        def after() -> bool:
            return any(attrs(rec)["path"] == "/after-delete" for _, rec in receiver.got.records())

        with pytest.raises(AssertionError):
            wait_until(after, 0.5, what="no record of a request after the delete")
    finally:
        receiver.stop()


def request_count(points: list[tuple[dict[str, str], str, Any]], service: str) -> float:
    return sum(
        float(p.as_double)
        for res, name, p in points
        if res.get("service.name") == service
        and name == "meshfed_dp_http_requests_total"
        and {a.key: a.value.string_value for a in p.attributes}.get("direction") == "inbound"
    )


def test_metrics_pushed_over_grpc_then_none_after_delete(w: World) -> None:
    receiver = GrpcReceiver()  # Kuma's form: a bare host:port is OTLP/gRPC
    try:
        w.mesh.apply(
            {
                "type": "MeshMetric",
                "name": "push",
                "mesh": MESH,
                "spec": {
                    "targetRef": {"kind": "MeshService", "name": "backend"},
                    "default": {
                        "backends": [
                            {
                                "type": "OpenTelemetry",
                                "openTelemetry": {
                                    "endpoint": receiver.endpoint,
                                    "refreshInterval": "200ms",
                                },
                            }
                        ]
                    },
                },
            }
        )
        wait_until(lambda: pushes(w.backend), timeout=10, what="backend's push")
        assert get(w.vip, w.port)["instance"] == "backend-1"
        wait_until(
            lambda: request_count(list(receiver.got.metric_points()), "backend") > 0,
            timeout=10,
            what="a push with backend's inbound request counted",
        )
        resources = {res["kuma.zone"] for res, _, _ in receiver.got.metric_points()}
        assert resources == {ZONE}
        # backend's sidecar has exported logs and metrics (the OTLP messages loaded, two
        # exporters): what that costs its 40 MB budget (issue 18; the absolute figure is in
        # docs/benchmarks.md)
        assert rss(w.backend) - w.rss_before <= 3 * MIB, (w.rss_before / MIB, rss(w.backend) / MIB)
        assert not pushes(w.web)  # web is not selected

        w.mesh.glob.delete(f"/meshes/{MESH}/meshmetrics/push")
        wait_until(lambda: not pushes(w.backend), timeout=STOP_SECONDS, what="push removed")
        before = len(receiver.got.metrics)
        with pytest.raises(AssertionError):  # one push in flight at the delete may land
            wait_until(lambda: len(receiver.got.metrics) > before + 1, 0.6, what="no pushes")
    finally:
        receiver.stop()


def test_a_collector_that_is_down_costs_requests_nothing(w: World) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    w.mesh.apply(otel_log("dead", dead))
    try:
        wait_until(lambda: access_logs(w.web), timeout=10, what="web's logs")
        started = time.monotonic()
        for _ in range(200):
            assert get(w.vip, w.port)["instance"] == "backend-1"
        elapsed = time.monotonic() - started
        assert elapsed < 20, f"200 requests took {elapsed:.1f}s"

        def dropped() -> float:
            for line in metrics_text(w.web.admin).splitlines():
                if (
                    line.startswith("meshfed_dp_access_log_dropped_total{")
                    and 'kind="otel"' in line
                ):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        wait_until(lambda: dropped() >= 200, timeout=10, what="web's 200 records counted dropped")
    finally:
        w.mesh.glob.delete(f"/meshes/{MESH}/meshaccesslogs/dead")
