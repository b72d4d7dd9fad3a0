"""A real Prometheus (Debian's `prometheus` package) scrapes every sidecar on the port and path
a MeshMetric names (issue 18's acceptance): web (zone-1) calls backend (zone-2, through its
ingress) and api (zone-1); Prometheus, started here on a free port, sees every sidecar `up`
and web's outbound request counter non-zero for each upstream service, and each callee's
inbound counter non-zero.

Without the binary it fails, pointing at scripts/install-system-deps.sh (which `make test` runs
first, and which refuses to go on without it when not root), as the etcd and dig tests do."""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from tests.integration.test_cross_zone_support import (
    MESH,
    Mesh,
    Workload,
    allow,
    try_get,
)
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration

PATH = "/prom-metrics"
REQUESTS = "meshfed_dp_http_requests_total"
UPSTREAMS = ("backend", "api")


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("no `prometheus` binary: scripts/install-system-deps.sh installs it")
    return binary


def prom_get(port: int, path: str, query: dict[str, str] | None = None) -> Any:
    """A Prometheus HTTP API answer's `data` (None while it is not ready)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path + (f"?{urlencode(query)}" if query else ""))
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        return None
    answer = json.loads(body)
    return answer["data"] if answer.get("status") == "success" else None


def start_prometheus(
    procs: Procs, root: Path, scrape_configs: list[dict[str, Any]] | None = None
) -> int:
    """Prometheus scraping, every second at PATH, the targets `set_targets` writes (or as
    `scrape_configs` say); returns its API port once it is ready. Started before the sidecars
    exist: it applies new targets only every 5 s (its discovery throttle, no flag for it in
    2.42), a wait that overlaps theirs."""
    if scrape_configs is None:
        set_targets(root, {})
        scrape_configs = [
            {
                "job_name": "sidecars",
                "metrics_path": PATH,
                "file_sd_configs": [{"files": [str(root / "targets.json")]}],
            }
        ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": scrape_configs,
    }
    config_file = root / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = procs.start(
        "prometheus",
        [
            prometheus_binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )

    def ready() -> bool:
        assert proc.alive(), proc.log()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/-/ready")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    wait_until(ready, timeout=30, interval=0.1, what="prometheus ready")
    return port


def set_targets(root: Path, targets: dict[str, str]) -> None:
    """Prometheus's file service discovery: Dataplane name -> address:port, written whole
    (renamed into place, so Prometheus never reads half a file)."""
    groups = [{"targets": [a], "labels": {"dataplane": n}} for n, a in targets.items()]
    tmp = root / "targets.json.tmp"
    tmp.write_text(json.dumps(groups))
    tmp.replace(root / "targets.json")


def test_prometheus_scrapes_every_sidecar_where_the_mesh_metric_says(
    tmp_path: Path, procs: Procs
) -> None:
    prom = start_prometheus(procs, tmp_path)
    mesh = Mesh.start(procs, tmp_path)
    # Started before the sidecars so it stops after them (by PID, in reverse): web's sidecar has
    # closed its pooled connections by then and the ingress's drain on SIGTERM ends at once.
    mesh.ingress("zone-2")
    # Applied before the sidecars start, so it travels to both zones while they come up. The
    # sidecars listen on fresh loopback addresses (one /24 per test) where nothing else binds:
    # a port free on 127.0.0.1 and never handed out again in this run is free there too.
    port = free_port()
    mesh.apply(
        {
            "type": "MeshMetric",
            "name": "prometheus",
            "mesh": MESH,
            "spec": {
                "targetRef": {"kind": "Mesh"},
                "default": {
                    "backends": [{"type": "Prometheus", "prometheus": {"port": port, "path": PATH}}]
                },
            },
        }
    )
    for service in UPSTREAMS:
        mesh.apply(allow(f"web-to-{service}", service, "web"))
    backend = mesh.workload("zone-2", "backend-1", "backend", protocol="http", wait=False)
    api = mesh.workload("zone-1", "api-1", "api", protocol="http", wait=False)
    web = mesh.workload("zone-1", "web-1", "web", reachable=list(UPSTREAMS), protocol="http")
    sidecars: list[Workload] = [web, backend, api]
    targets = {w.name: f"{w.address}:{port}" for w in sidecars}
    set_targets(tmp_path, targets)

    calls = {
        "backend": mesh.target("zone-1", "backend", zones=["zone-2"]),
        "api": mesh.target("zone-1", "api"),
    }
    for service, (vip, vport) in calls.items():
        for _ in range(3):
            wait_until(lambda: try_get(vip, vport), timeout=20, what=f"{service} answers")  # noqa: B023

    def all_up() -> bool:
        active = prom_get(prom, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["dataplane"]: t["health"] for t in active}
        return health == dict.fromkeys(targets, "up")

    wait_until(all_up, timeout=20, interval=0.2, what="every sidecar scraped and up")

    def counters() -> dict[tuple[str, str, str], float]:
        query = f"sum by (dataplane, direction, service) ({REQUESTS})"
        result = prom_get(prom, "/api/v1/query", {"query": query})["result"]
        return {
            (r["metric"]["dataplane"], r["metric"]["direction"], r["metric"]["service"]): float(
                r["value"][1]
            )
            for r in result
        }

    wanted = [("web-1", "outbound", s) for s in UPSTREAMS] + [
        ("backend-1", "inbound", "backend"),
        ("api-1", "inbound", "api"),
    ]

    def counted() -> dict[tuple[str, str, str], float] | None:
        seen = counters()
        return seen if all(seen.get(k, 0) >= 3 for k in wanted) else None

    seen = wait_until(counted, timeout=20, interval=0.2, what=f"{REQUESTS} in prometheus")
    for key in wanted:
        assert seen[key] >= 3, (key, seen)
