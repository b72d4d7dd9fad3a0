"""The zone's MADS endpoint with real processes (decisions 162-163): a zone started with
`--mads-address`, two sidecars, one selected by a MeshMetric whose Prometheus backend has
`clientId: main`, the other by one without clientId.

Debian's Prometheus 2.42 is built without Kuma's service discovery (`kuma_sd_configs` is not a
field of its config, and `client_id` came in 2.50), so `KumaSd` below does what Prometheus's
kuma_sd does (prometheus/prometheus discovery/xds/client.go and kuma.go): it POSTs the
DiscoveryRequest in protobuf's JSON form with `node.id` = its client id and the last
`version_info`, `?fetch-timeout=`, keeps the version of each 200, takes a 304 as "no change",
and turns each MonitoringAssignment target into the labels kuma_sd gives (`__address__`,
`__scheme__`, `__metrics_path__`, `instance`, `__meta_kuma_*`); it hands them to the real
Prometheus through file_sd, which then scrapes exactly the discovered sidecars.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cross_zone_support import MESH, Mesh, Workload
from tests.integration.test_prometheus_scrape import prom_get, start_prometheus
from tests.support import Procs, free_port, wait_until
from zone_cp.mads import PATH as MADS_PATH
from zone_cp.mads import TYPE_URL

pytestmark = pytest.mark.integration

ZONE = "zone-1"
METRICS_PATH = "/mads-metrics"
MAIN = "main"
OTHER = "prometheus-other"  # no backend names it: it gets the backends without clientId


def post(port: int, body: bytes, query: str = "", method: str = "POST") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, MADS_PATH + query, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def discovery_request(client: str, version: str) -> bytes:
    """As Prometheus marshals it (protojson, UseProtoNames)."""
    return json.dumps(
        {
            "version_info": version,
            "response_nonce": "",
            "type_url": TYPE_URL,
            "resource_names": [],
            "node": {"id": client},
        }
    ).encode()


def kuma_sd_labels(assignment: dict[str, Any]) -> list[dict[str, str]]:
    """Prometheus's convertKumaV1MonitoringAssignment."""
    common = {f"__meta_kuma_label_{k}": v for k, v in assignment.get("labels", {}).items()}
    common |= {"__meta_kuma_mesh": assignment["mesh"], "__meta_kuma_service": assignment["service"]}
    out = []
    for t in assignment.get("targets", []):
        labels = {f"__meta_kuma_label_{k}": v for k, v in t.get("labels", {}).items()} | common
        labels |= {
            "__meta_kuma_dataplane": t["name"],
            "__address__": t["address"],
            "instance": t["name"],
            "__scheme__": t["scheme"],
            "__metrics_path__": t["metrics_path"],
        }
        out.append(labels)
    return out


@dataclass
class KumaSd:
    """Prometheus's kuma_sd fetch loop, feeding a file_sd file (see the module docstring)."""

    mads: int
    client: str
    file: Path
    version: str = ""
    polls: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.file.write_text("[]")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = post(
                    self.mads, discovery_request(self.client, self.version), "?fetch-timeout=1s"
                )
            except OSError:
                time.sleep(0.2)
                continue
            self.polls += 1
            if status == 200:
                answer = json.loads(body)
                assert answer["type_url"] == TYPE_URL
                self.version = answer["version_info"]
                targets = [lab for a in answer["resources"] for lab in kuma_sd_labels(a)]
                groups = [{"targets": [t["__address__"]], "labels": t} for t in targets]
                tmp = self.file.with_suffix(".tmp")
                tmp.write_text(json.dumps(groups))
                tmp.replace(self.file)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@dataclass
class World:
    mesh: Mesh
    mads: int
    prom: int
    port: int  # the sidecars' metrics port (both MeshMetrics)
    main: list[Workload]
    rest: list[Workload]
    sds: list[KumaSd]


def metric(name: str, target: dict[str, Any], port: int, **prom: Any) -> dict[str, Any]:
    backend = {"type": "Prometheus", "prometheus": {"port": port, "path": METRICS_PATH, **prom}}
    spec = {"targetRef": target, "default": {"backends": [backend]}}
    return {"type": "MeshMetric", "name": name, "mesh": MESH, "spec": spec}


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("mads")
    procs = Procs(root)
    sds: list[KumaSd] = []
    try:
        mads = free_port()
        jobs = [
            {"job_name": job, "file_sd_configs": [{"files": [str(root / f"{job}.json")]}]}
            for job in (MAIN, OTHER)
        ]
        for job in (MAIN, OTHER):
            (root / f"{job}.json").write_text("[]")
        prom = start_prometheus(procs, root, jobs)
        mesh = Mesh.start(procs, root, (ZONE,), zone_args=["--mads-address", f"127.0.0.1:{mads}"])
        port = free_port()
        mesh.apply(metric("everyone", {"kind": "Mesh"}, port))
        main_ref = {"kind": "MeshSubset", "tags": {"prometheus": MAIN}}
        mesh.apply(metric("main-only", main_ref, port, clientId=MAIN))
        sds += [KumaSd(mads, job, root / f"{job}.json") for job in (MAIN, OTHER)]
        main = mesh.workload(ZONE, "a-1", "a", tags={"prometheus": MAIN}, wait=False)
        rest = mesh.workload(ZONE, "b-1", "b")
        yield World(mesh, mads, prom, port, [main], [rest], sds)
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        for sd in sds:
            sd.close()
        procs.stop_all()


def test_each_prometheus_scrapes_the_sidecars_of_its_client_id(w: World) -> None:
    def active(job: str) -> dict[str, tuple[str, str]]:
        targets = prom_get(w.prom, "/api/v1/targets")["activeTargets"]
        return {
            t["labels"]["instance"]: (t["health"], t["scrapeUrl"])
            for t in targets
            if t["labels"]["job"] == job
        }

    def expected(sidecars: list[Workload]) -> dict[str, tuple[str, str]]:
        return {s.name: ("up", f"http://{s.address}:{w.port}{METRICS_PATH}") for s in sidecars}

    wanted = {MAIN: expected(w.main), OTHER: expected(w.rest)}
    wait_until(
        lambda: {job: active(job) for job in wanted} == wanted,
        timeout=30,
        interval=0.2,
        what=f"prometheus scraping {wanted}",
    )
    query = {"query": f'up{{instance="{w.main[0].name}",job="{MAIN}"}}'}
    result = prom_get(w.prom, "/api/v1/query", query)["result"]
    assert [r["metric"]["__name__"] for r in result] == ["up"]
    assert all(sd.polls > 0 for sd in w.sds)


def test_an_up_to_date_poll_is_held_until_a_sidecar_joins(w: World) -> None:
    status, body = post(w.mads, discovery_request(MAIN, ""), "?fetch-timeout=0s")
    assert status == 200, body
    version = json.loads(body)["version_info"]
    began = time.monotonic()
    status, _ = post(w.mads, discovery_request(MAIN, version), "?fetch-timeout=1s")
    assert status == 304 and time.monotonic() - began >= 0.9

    _, body = post(w.mads, discovery_request(OTHER, ""), "?fetch-timeout=0s")
    other = json.loads(body)["version_info"]
    answers: dict[str, tuple[int, bytes, float]] = {}

    def hold(client: str, known: str, timeout: str) -> None:
        status, body = post(w.mads, discovery_request(client, known), f"?fetch-timeout={timeout}")
        answers[client] = (status, body, time.monotonic() - began)

    began = time.monotonic()
    held = [
        threading.Thread(target=hold, args=(MAIN, version, "25s")),
        threading.Thread(target=hold, args=(OTHER, other, "3s")),
    ]
    for t in held:
        t.start()
    joined = w.mesh.workload(ZONE, "a-2", "a", tags={"prometheus": MAIN}, wait=False)
    w.main.append(joined)
    for t in held:
        t.join(timeout=30)
    # main's change does not answer the other client, whose list did not change
    assert answers[OTHER][0] == 304 and answers[OTHER][2] >= 2.9, answers
    assert answers[MAIN][0] == 200 and answers[MAIN][2] < 20, answers  # woken, not timed out
    answer = json.loads(answers[MAIN][1])
    assert answer["version_info"] != version
    names = sorted(a["targets"][0]["name"] for a in answer["resources"])
    assert names == ["a-1", "a-2"]


@pytest.mark.parametrize(
    ("method", "query", "body", "status"),
    [
        ("POST", "", b"not json", 400),
        ("POST", "", b'{"node": {"id": 7}}', 400),
        ("POST", "?fetch-timeout=soon", b"{}", 400),
        ("POST", "", b"x" * (65 * 1024), 413),
        ("GET", "", b"", 405),
    ],
)
def test_requests_it_refuses(w: World, method: str, query: str, body: bytes, status: int) -> None:
    got, text = post(w.mads, body, query, method)
    assert got == status, text
