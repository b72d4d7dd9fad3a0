"""A real standalone `zone-cp` process: zone-mode API, ownership rules, persistence, options."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.auth_support import ADMIN_TOKEN_FILE
from tests.integration.federation_support import (
    Http,
    StoreWatch,
    dataplane,
    eventually,
    mt_path,
    timeout_policy,
)
from tests.support import Proc, Procs, free_port, wait_until

pytestmark = pytest.mark.integration


def start_zone(procs: Procs, name: str, data_dir: Path, *extra: str) -> tuple[Proc, Http]:
    port = free_port()
    argv = [procs.script("zone-cp"), "run", "--zone", "zone-1", "--api-address"]
    # Standalone: the zone makes its own admin token, like a global.
    token_file = data_dir / ADMIN_TOKEN_FILE
    argv += [f"127.0.0.1:{port}", "--admin-token-file", str(token_file)]
    proc = procs.start(name, [*argv, "--data-dir", str(data_dir), *extra])
    http = Http(port, token_file)

    def ready() -> bool:
        assert proc.alive(), proc.log()
        return http.ready()

    wait_until(ready, timeout=20, what=f"{name} /ready")
    return proc, http


def stop(proc: Proc) -> None:
    proc.signal(signal.SIGTERM)
    proc.popen.wait(15)
    assert proc.popen.returncode == 0, proc.log()
    assert "stopped" in proc.log()


def test_standalone_zone_serves_its_own_types_and_keeps_them_across_restarts(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "zone-1"
    proc, http = start_zone(procs, "zone-1", data)

    info = http.get("/")
    assert info["mode"] == "zone" and info["zone"] == "zone-1"
    # Standalone there is no global to send a Mesh: the zone starts with the default one.
    assert [m["name"] for m in http.items("/meshes")] == ["default"]

    got = http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
    assert got["labels"] == {"kuma.io/origin": "zone", "kuma.io/zone": "zone-1"}
    assert (
        http.put(
            "/zoneingresses/zi-1",
            {
                "type": "ZoneIngress",
                "name": "zi-1",
                "networking": {"address": "127.0.0.1", "port": 10001},
            },
        )["labels"]["kuma.io/zone"]
        == "zone-1"
    )

    # A policy may be applied at a zone (Kuma 2.6+, decision 149): stored as the zone's.
    got = http.put(mt_path("t1"), timeout_policy("t1"))
    assert got["labels"]["kuma.io/origin"] == "zone" and got["labels"]["kuma.io/zone"] == "zone-1"
    http.delete(mt_path("t1"))
    assert http.call("GET", mt_path("t1"))[0] == 404
    # A Mesh belongs to the global: 405, saying where to apply it.
    status, body = http.call("DELETE", "/meshes/default")
    assert status == 405 and "global control plane" in body["detail"]
    assert body["type"] == "/std-errors"
    # A zone has no KDS status when standalone, and no global-only routes.
    assert http.call("GET", "/_kds")[0] == 404
    assert http.call("GET", "/zones+insights")[0] == 404

    stop(proc)
    proc, http = start_zone(procs, "zone-1-again", data)
    dp = http.get("/meshes/default/dataplanes/dp-1")
    assert dp["networking"]["inbound"][0]["tags"] == {"kuma.io/service": "web"}
    assert http.get("/zoneingresses/zi-1")["name"] == "zi-1"
    stop(proc)


def test_watch_streams_every_change_from_the_request_on(procs: Procs, tmp_path: Path) -> None:
    proc, http = start_zone(procs, "zone-1", tmp_path / "zone-1")
    http.put("/meshes/default/dataplanes/before", dataplane("before"))
    everything = StoreWatch(http)
    only_ingresses = StoreWatch(http, types="ZoneIngress")
    try:
        http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1"))
        http.put("/meshes/default/dataplanes/dp-1", dataplane("dp-1", service="api"))
        http.delete("/meshes/default/dataplanes/dp-1")

        # zone-cp's own VirtualIPs writes (the new service's VIPs) come in between.
        def users() -> list[dict[str, Any]]:
            return [e for e in everything.events if e["type"] != "VirtualIPs"]

        eventually(lambda: len(users()) == 3, what="3 events")
        kinds = [(e["kind"], e["type"], e["name"]) for e in users()]
        assert kinds == [
            ("PUT", "Dataplane", "dp-1"),
            ("PUT", "Dataplane", "dp-1"),
            ("DELETE", "Dataplane", "dp-1"),
        ]
        first = users()[0]
        assert first["mesh"] == "default" and first["labels"]["kuma.io/zone"] == "zone-1"
        revisions = [e["revision"] for e in everything.events]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
        assert only_ingresses.events == []
        status, body = http.call("GET", "/_watch?types=NoSuchType")
        assert status == 400 and body["invalid_parameters"][0]["field"] == "types"
    finally:
        everything.close()
        only_ingresses.close()
    # An open watch does not hold up shutdown.
    watcher = StoreWatch(http)
    try:
        stop(proc)
        assert watcher.ended.wait(5)
    finally:
        watcher.close()


def test_zone_needs_a_name_and_a_valid_global_url(procs: Procs, tmp_path: Path) -> None:
    cases = {
        "no-zone": [],
        "bad-zone": ["--zone", "Zone_1!"],
        "bad-url": ["--zone", "zone-1", "--global-kds", "http://127.0.0.1:1"],  # never dialled
    }
    for name, args in cases.items():
        proc = procs.start(
            name, [procs.script("zone-cp"), "run", *args, "--data-dir", str(tmp_path / name)]
        )
        proc.popen.wait(20)
        assert proc.popen.returncode == 2, (name, proc.log())
        assert "zone" in proc.log() or "grpc://" in proc.log()
    assert "a zone name is required" in procs.started[0].log()
    assert "grpcs://HOST:PORT" in procs.started[2].log()
