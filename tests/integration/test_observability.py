"""Observability against a real global and zone (issue 15): KDS and store series move after a
policy write, `/global-insight` counts, `--log-format json` lines parse, and `meshctl inspect
dataplanes|meshes` print their tables."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.federation_support import (
    Cluster,
    Http,
    dataplane,
    eventually,
    mt_path,
    timeout_policy,
)
from tests.support import VENV_BIN, Procs

pytestmark = pytest.mark.integration

JSON_LOGS = ("--log-format", "json")


def scrape(http: Http) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(http.base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def meshctl(http: Http, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "meshctl"), "--api", http.base, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **http.meshctl_env()},
    )


def json_lines(log: str) -> list[dict[str, object]]:
    """Every line the program's logging wrote; a line that is not JSON fails the test (grpc's
    C core writes to stderr on its own, never in these runs)."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def test_metrics_insight_json_logs_and_inspect(procs: Procs, tmp_path: Path) -> None:
    cluster = Cluster.create(
        procs, tmp_path, zone_names=("zone-1",), global_args=JSON_LOGS, zone_args=JSON_LOGS
    )
    cluster.start()
    cluster.wait_online()
    glob, zone = cluster.glob.http, cluster.zones["zone-1"].http
    kds = {"zone": "zone-1", "type": "MeshTimeout"}
    before = scrape(glob)

    glob.put(mt_path("t1"), timeout_policy("t1"))
    eventually(lambda: zone.call("GET", mt_path("t1"))[0] == 200, what="the policy reaches zone-1")
    after = eventually(
        lambda: (
            (m := scrape(glob))
            and sample(m, "meshfed_kds_propagation_seconds_count", **kds) >= 1
            and m
        ),
        what="the global counts the zone's ACK",
    )
    for name, extra in (
        ("meshfed_kds_responses_sent_total", {}),
        ("meshfed_kds_response_bytes_sent_total", {}),
        ("meshfed_kds_resources_sent_total", {"op": "upsert"}),
        ("meshfed_kds_replies_received_total", {"result": "ack"}),
    ):
        assert sample(after, name, **kds, **extra) > sample(before, name, **kds, **extra), name
    assert sample(after, "meshfed_kds_propagation_seconds_sum", **kds) > 0
    assert sample(after, "meshfed_kds_zone_connected", zone="zone-1") == 1
    lag = ("meshfed_kds_pending_resources", frozenset(kds.items()))
    assert after[lag] == 0  # ACKed: nothing of the type pending
    write = {"operation": "write_batch", "result": "ok"}
    assert sample(after, "meshfed_store_operation_duration_seconds_count", **write) > sample(
        before, "meshfed_store_operation_duration_seconds_count", **write
    )
    at_zone = scrape(zone)
    assert sample(at_zone, "meshfed_kds_responses_received_total", **kds) >= 1
    assert sample(at_zone, "meshfed_kds_replies_sent_total", **kds, result="ack") >= 1
    assert (
        sample(
            at_zone, "meshfed_kds_streams_started_total", zone="zone-1", direction="zone-to-global"
        )
        >= 1
    )

    # A Dataplane registered at the zone (no proxy: offline) reaches the global's counts.
    zone.put("/meshes/default/dataplanes/web-1", dataplane("web-1"))
    insight = eventually(
        lambda: (i := glob.get("/global-insight"))["dataplanes"]["standard"]["total"] == 1 and i,
        what="the zone's Dataplane in the global's insight",
    )
    assert insight["zones"]["controlPlanes"] == {"online": 1, "offline": 0, "total": 1}
    default = insight["meshes"]["byMesh"]["default"]
    assert default["policies"]["byType"] == {"MeshTimeout": 1}
    assert default["dataplanes"]["offline"] == 1 and default["services"]["total"] == 1
    assert insight["resources"]["MeshTimeout"] == {"total": 1}

    run = meshctl(glob, "inspect", "meshes")
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:5] == ["MESH", "MTLS", "DATAPLANES", "SERVICES", "POLICIES"]
    assert row.split()[:5] == ["default", "off", "0/1", "1/1", "1"]
    run = meshctl(glob, "inspect", "dataplanes")
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.startswith("MESH") and "ZONE" in header and "CERT EXPIRATION" in header
    mesh, name, zone_name, tags, state = row.split()[:5]
    # The global stores a zone's Dataplane as <name>.<hash> (decision 11).
    assert (mesh, zone_name, tags, state) == ("default", "zone-1", "kuma.io/service=web", "offline")
    assert name.startswith("web-1.")
    run = meshctl(zone, "inspect", "meshes")
    assert run.returncode != 0 and "meshes are counted by the global" in run.stderr

    # One JSON object per line, and the KDS connection named with its zone as a field.
    for node, connected in (
        (cluster.glob, "zone-connected"),
        (cluster.zones["zone-1"], "connected"),
    ):
        assert node.proc is not None
        lines = json_lines(node.proc.log())
        assert lines and all({"time", "level", "logger", "message"} <= ln.keys() for ln in lines)
        assert any(ln.get("event") == connected and ln.get("zone") == "zone-1" for ln in lines)
