"""MeshTimeout http and MeshRetry http, applied at the global, enforced by a zone's sidecars
on real HTTP traffic (issue 13), then deleted: the defaults come back.

One global and one zone; `backend` is `tests.integration.http_backend` tagged
`kuma.io/protocol: http` behind its sidecar; the test calls it through `web`'s sidecar (its
VIP outbound), with builtin mTLS between the sidecars.

- requestTimeout 1s: a backend taking 3 s answers 504 (`x-meshfed-error: timeout`) after about
  1 s; without the policy Kuma's default (15 s) lets it answer.
- numRetries 3, retryOn 5xx: a backend failing every other request with 503 or 500 is fully
  masked (the sidecar's retries counter grows); without the policy Kuma's default MeshRetry
  (GatewayError, ConnectFailure, RefusedStream) still masks the 503s, not the 500s.
- A POST body above the retry buffer (64 KiB) is not retried: its 503 reaches the caller.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh_dp.http.retry import MAX_REPLAY
from tests.integration.test_cross_zone_support import MESH, Mesh, Workload, allow
from tests.integration.test_mesh_dp_support import admin_json, metrics_text
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

ZONE = "zone-1"
BACKEND = "backend"


def call(
    vip: str, port: int, path: str, *, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, str]:
    """One request on a new connection: (status, x-meshfed-error or "")."""
    conn = http.client.HTTPConnection(vip, port, timeout=timeout)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("x-meshfed-error", "")
    finally:
        conn.close()


PLURALS = {"MeshTimeout": "meshtimeouts", "MeshRetry": "meshretries"}


def policy_path(kind: str, name: str) -> str:
    return f"/meshes/{MESH}/{PLURALS[kind]}/{name}"


def to_all(kind: str, name: str, default: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": BACKEND}, "default": default}],
        },
    }


def sources(web: Workload) -> list[str]:
    """The policies web's sidecar applies to its outbound to backend."""
    cfg = admin_json(web.admin, "/config")
    for o in cfg["outbounds"]:
        if o["service"] == BACKEND and o.get("zone") is None:
            return list(o["policies"].get("sources", []))
    return []


@pytest.fixture
def world(procs: Procs, tmp_path: Path) -> Iterator[tuple[Mesh, Workload, str, int]]:
    mesh = Mesh.start(procs, tmp_path, zone_names=(ZONE,))
    mesh.apply(allow("allow-web", BACKEND, "web"))
    mesh.workload(
        ZONE, "backend-1", BACKEND, app_module="tests.integration.http_backend", protocol="http"
    )
    web = mesh.workload(ZONE, "web-1", "web", reachable=[BACKEND])
    vip, port = mesh.target(ZONE, BACKEND)
    wait_until(lambda: _ok(vip, port), timeout=20, what="backend answering through web")
    yield mesh, web, vip, port


def _ok(vip: str, port: int) -> bool:
    try:
        return call(vip, port, "/who", timeout=2)[0] == 200
    except OSError:
        return False


def apply_and_wait(mesh: Mesh, web: Workload, doc: dict[str, Any]) -> None:
    mesh.glob.put(policy_path(doc["type"], doc["name"]), doc)
    source = f"{doc['type']}/{doc['name']}"
    wait_until(lambda: source in sources(web), timeout=20, what=f"{source} at the sidecar")


def delete_and_wait(mesh: Mesh, web: Workload, doc: dict[str, Any]) -> None:
    mesh.glob.call("DELETE", policy_path(doc["type"], doc["name"]))
    source = f"{doc['type']}/{doc['name']}"
    wait_until(lambda: source not in sources(web), timeout=20, what=f"{source} gone")


def retries(web: Workload) -> float:
    total = 0.0
    for line in metrics_text(web.admin).splitlines():
        if line.startswith("meshfed_dp_http_retries_total") and f'service="{BACKEND}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_request_timeout_answers_504_then_the_default_returns(
    world: tuple[Mesh, Workload, str, int],
) -> None:
    mesh, web, vip, port = world
    doc = to_all("MeshTimeout", "backend-timeout", {"http": {"requestTimeout": "1s"}})
    apply_and_wait(mesh, web, doc)
    start = time.monotonic()
    assert call(vip, port, "/slow?ms=3000") == (504, "timeout")
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.5, elapsed
    assert call(vip, port, "/slow?ms=200")[0] == 200  # within the timeout
    delete_and_wait(mesh, web, doc)
    assert call(vip, port, "/slow?ms=3000")[0] == 200  # Kuma's default: 15 s


def test_retries_mask_a_backend_failing_every_other_request(
    world: tuple[Mesh, Workload, str, int],
) -> None:
    mesh, web, vip, port = world
    # Kuma's default MeshRetry retries gateway errors only: a 500 gets through.
    assert {call(vip, port, "/flaky/500")[0] for _ in range(4)} == {200, 500}
    doc = to_all("MeshRetry", "backend-retry", {"http": {"numRetries": 3, "retryOn": ["5xx"]}})
    apply_and_wait(mesh, web, doc)
    before = retries(web)
    for path in ("/flaky/503", "/flaky/500"):
        assert [call(vip, port, path)[0] for _ in range(10)] == [200] * 10, path
    assert retries(web) - before >= 10  # every other request was retried at least once
    # A POST body above the retry buffer is sent once: its 503 reaches the caller.
    big = b"x" * (MAX_REPLAY + 1)
    small = b"y" * 1000
    statuses = [call(vip, port, "/flaky/502", body=big)[0] for _ in range(4)]
    assert sorted(statuses) == [200, 200, 502, 502], statuses
    assert [call(vip, port, "/flaky/504", body=small)[0] for _ in range(4)] == [200] * 4
    delete_and_wait(mesh, web, doc)
    assert {call(vip, port, "/flaky/500")[0] for _ in range(4)} == {200, 500}
    assert [call(vip, port, "/flaky/503")[0] for _ in range(4)] == [200] * 4  # the default
