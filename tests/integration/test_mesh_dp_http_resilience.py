"""MeshHealthCheck `http` and MeshCircuitBreaker (request limits, outlier detection) applied at
the global and enforced by real sidecars in a zone (issue 13's acceptance).

One global, one zone, mTLS from the mesh's builtin CA; web's sidecar calls two `backend`
instances (`kuma.io/protocol: http`, tests/integration/http_backend.py), whose behaviour the
test sets by talking to each application directly (`PUT /control/...`). Each test applies its
policy at the global, sees it change real traffic through web's sidecar, deletes it and sees
the default come back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import MESH
from tests.integration.test_http_world_support import World, start_world
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("resilience")
    procs = Procs(root)
    try:
        w = start_world(procs, root)
        yield w
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def test_http_health_check_takes_a_failing_instance_out_and_back(world: World) -> None:
    w, b2 = world, world.backends[1]
    interval, threshold = 0.5, 2
    w.apply(
        "MeshHealthCheck",
        "backend-health",
        {
            "interval": "500ms",
            "timeout": "1s",
            "unhealthyThreshold": threshold,
            "healthyThreshold": 1,
            "http": {
                "path": "/health",
                "expectedStatuses": [200],
                "requestHeadersToAdd": {"add": [{"name": "x-check", "value": "1"}]},
            },
        },
    )
    w.wait_policies(lambda p: (p.get("healthCheck") or {}).get("http") is not None, "the check")
    wait_until(lambda: w.endpoint(b2)["checks"] >= 2, timeout=10, what="checks run")
    assert w.endpoint(b2)["healthy"]

    w.control(b2, "health", 503)
    start = time.monotonic()
    wait_until(lambda: not w.endpoint(b2)["healthy"], timeout=10, interval=0.05, what="out")
    took = time.monotonic() - start
    assert took <= interval * threshold + 1.0, took  # one check's time and stats polling
    assert set(w.names()) == {"backend-1"}

    w.control(b2, "health", 200)
    wait_until(lambda: w.endpoint(b2)["healthy"], timeout=10, interval=0.05, what="back")
    assert set(w.names()) == {"backend-1", "backend-2"}

    # Deleted: no checks, so a failing /health keeps nobody out.
    w.delete("meshhealthchecks", "backend-health")
    w.wait_policies(lambda p: p.get("healthCheck") is None, "no check")
    w.control(b2, "health", 503)
    try:
        assert set(w.names()) == {"backend-1", "backend-2"}
        assert w.endpoint(b2)["healthy"]
    finally:
        w.control(b2, "health", 200)


def test_outlier_detection_ejects_a_5xx_instance_and_brings_it_back(world: World) -> None:
    w, b2 = world, world.backends[1]
    base = 2.0
    w.apply(
        "MeshCircuitBreaker",
        "backend-outliers",
        {
            "outlierDetection": {
                "interval": "1s",
                "baseEjectionTime": "2s",
                "maxEjectionPercent": 50,
                "detectors": {"totalFailures": {"consecutive": 3}},
            }
        },
    )
    w.wait_policies(lambda p: p.get("outlier") is not None, "outlier detection")
    before = w.outbound()["http"]["ejections"]
    # 500: Kuma's default MeshRetry retries gateway errors (502-504) only, so every failure
    # reaches the caller.

    w.control(b2, "fail", 500)
    try:
        statuses = []
        while w.endpoint(b2)["outlierEjectedFor"] == 0:
            statuses.append(w.call()[0])
            assert len(statuses) < 20, statuses
        ejected_at = time.monotonic()
        assert statuses.count(500) == 3, statuses  # the third failure in a row ejects
        assert w.outbound()["http"]["ejections"] == before + 1
        # Out for baseEjectionTime: every answer comes from backend-1.
        w.control(b2, "fail", 0)
        while time.monotonic() < ejected_at + base - 0.5:
            assert w.call()[1] == "backend-1"
        wait_until(lambda: "backend-2" in w.names(4), timeout=base + 3, what="backend-2 back")
    finally:
        w.control(b2, "fail", 0)

    # Deleted: a failing instance stays in the rotation.
    w.delete("meshcircuitbreakers", "backend-outliers")
    w.wait_policies(lambda p: p.get("outlier") is None, "no outlier detection")
    w.control(b2, "fail", 500)
    try:
        statuses = [w.call()[0] for _ in range(12)]
        assert statuses.count(500) == 6, statuses  # round robin: every other request
        assert w.endpoint(b2)["outlierEjectedFor"] == 0
    finally:
        w.control(b2, "fail", 0)


def test_max_requests_answers_the_third_concurrent_request_with_503(world: World) -> None:
    w = world

    def in_flight() -> int:
        return sum(int(w.control(b, "inflight")["inflight"]) for b in w.backends)

    def third_while_two_sleep() -> tuple[int, dict[str, str]]:
        results: list[int] = []
        sleepers = [
            threading.Thread(target=lambda: results.append(w.call("/sleep/3")[0])) for _ in (1, 2)
        ]
        for t in sleepers:
            t.start()
        try:
            wait_until(lambda: in_flight() == 2, timeout=10, interval=0.02, what="two in flight")
            status, _, headers = w.call()
        finally:
            for t in sleepers:
                t.join(15)
        assert results == [200, 200]
        return status, headers

    w.apply("MeshCircuitBreaker", "backend-limits", {"connectionLimits": {"maxRequests": 2}})
    w.wait_policies(lambda p: p.get("maxRequests") == 2, "maxRequests 2")
    status, headers = third_while_two_sleep()
    assert status == 503
    assert headers.get("x-meshfed-error") == "circuit-open"

    w.delete("meshcircuitbreakers", "backend-limits")
    w.wait_policies(lambda p: p.get("maxRequests") != 2, "default limits")
    status, headers = third_while_two_sleep()
    assert status == 200, headers


def test_max_retries_caps_the_retries_in_flight(world: World) -> None:
    """MeshRetry asks for two retries of every 5xx; a burst of four requests that all fail
    (each attempt takes 0.8 s) retries only as many requests at once as maxRetries allows:
    the others get the backend's 503 itself, not a circuit-open answer."""
    w = world
    path = "/slow?ms=800&status=503"

    def burst_retries() -> int:
        before = int(w.outbound()["http"]["retries"])
        results: list[tuple[int, dict[str, str]]] = []

        def one() -> None:
            status, _, headers = w.call(path)
            results.append((status, headers))

        callers = [threading.Thread(target=one) for _ in range(4)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(15)
        assert [s for s, _ in results] == [503] * 4, results
        assert not [h for _, h in results if "x-meshfed-error" in h], results
        return int(w.outbound()["http"]["retries"]) - before

    retry = {"http": {"numRetries": 2, "retryOn": ["5xx"], "backOff": {"baseInterval": "1ms"}}}
    w.apply("MeshRetry", "backend-retry", retry)
    w.apply("MeshCircuitBreaker", "backend-retries", {"connectionLimits": {"maxRetries": 1}})
    w.wait_policies(
        lambda p: p.get("maxRetries") == 1 and p.get("httpRetry", {}).get("numRetries") == 2,
        "maxRetries 1 and numRetries 2",
    )
    try:
        # One request holds the only slot through both its retries; three are not retried.
        assert burst_retries() == 2
        w.delete("meshcircuitbreakers", "backend-retries")
        w.wait_policies(lambda p: p.get("maxRetries") != 1, "Envoy's default maxRetries")
        # Envoy's default, 3 retries in flight: three requests retry twice each.
        assert burst_retries() == 6
    finally:
        for plural, name in (
            ("meshcircuitbreakers", "backend-retries"),
            ("meshretries", "backend-retry"),
        ):
            w.mesh.glob.call("DELETE", f"/meshes/{MESH}/{plural}/{name}")
    w.wait_policies(lambda p: "httpRetry" not in p or p["httpRetry"]["numRetries"] != 2, "gone")
