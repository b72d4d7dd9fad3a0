"""MeshTimeout, MeshRetry and MeshCircuitBreaker `http` fields, each applied at the global,
seen changing real traffic through web's sidecar in a zone, then deleted: the default
returns (issue 13's acceptance, for the fields tests/integration/test_http_timeout_retry.py
and test_mesh_dp_http_resilience.py leave out).

One set of processes for the module (tests/integration/test_http_world_support.py): web
calls `backend` (two instances), `queue` (one) and `pools` (two) over mTLS, and `plain`
(one, `tcp`). `queue` and `pools` serve one test each: what they check depends on the
caller's pool of upstream connections, which every other test fills.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from tests.integration.test_cross_zone_support import MESH
from tests.integration.test_http_world_support import (
    APP,
    ZONE,
    World,
    arrivals,
    control,
    start_world,
    wait_ready,
)
from tests.integration.test_mesh_dp_support import admin_json
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

TIMEOUT = "MeshTimeout"
RETRY = "MeshRetry"
BREAKER = "MeshCircuitBreaker"


@dataclass
class Answer:
    status: int
    error: str  # x-meshfed-error: the sidecar answered itself
    name: str  # the instance that answered /who
    complete: bool  # the body arrived whole (False: the sidecar cut it)
    took: float  # seconds, request to the end of the body (or its cut)


def fetch(host: str, port: int, path: str) -> Answer:
    """One GET on a new connection to web's sidecar."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        error = resp.getheader("x-meshfed-error", "")
        try:
            body, complete = resp.read(), True
        except (http.client.IncompleteRead, ConnectionError):
            body, complete = b"", False
        name = body.split(b'"name": "', 1)[-1].split(b'"', 1)[0].decode() if body else ""
        return Answer(resp.status, error, name, complete, time.monotonic() - start)
    finally:
        conn.close()


def together(*calls: Callable[[], Answer]) -> list[Answer]:
    """The calls at once, each on its own connection; their answers in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures: list[Future[Answer]] = [pool.submit(c) for c in calls]
        return [f.result(timeout=30) for f in futures]


@pytest.fixture(scope="module", name="w")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("fields")
    procs = Procs(root)
    try:
        w = start_world(procs, root, reachable=["queue", "pools", "plain"])
        for name, service, protocol in (
            ("queue-1", "queue", "http"),
            ("pools-1", "pools", "http"),
            ("pools-2", "pools", "http"),
            ("plain-1", "plain", None),  # tcp: its sidecars relay bytes
        ):
            w.others[name] = w.mesh.workload(
                ZONE, name, service, protocol=protocol, app_module=APP, wait=False
            )
        wait_ready(list(w.others.values()))
        yield w
    except BaseException:
        print(procs.dump_logs())
        raise
    finally:
        procs.stop_all()


def get(w: World, path: str, service: str = "backend") -> Callable[[], Answer]:
    if service == "backend":
        return lambda: fetch(w.vip, w.port, path)
    vip, port = w.mesh.target(ZONE, service)
    return lambda: fetch(vip, port, path)


# -- MeshTimeout -------------------------------------------------------------------------------


def test_stream_idle_timeout_bounds_the_quiet_time_not_the_whole_exchange(w: World) -> None:
    slow_head, stall, trickle = (
        get(w, "/slow?ms=1600"),  # the head after 1.6 s of silence
        get(w, "/chunks?n=2&ms=1600"),  # the head, then 1.6 s of silence
        get(w, "/chunks?n=6&ms=250"),  # a byte every 0.25 s for 1.5 s
    )
    w.enforce(TIMEOUT, "idle", {"http": {"streamIdleTimeout": "1s"}})
    head, mid, steady = together(slow_head, stall, trickle)
    assert (head.status, head.error) == (504, "timeout"), head
    assert 0.9 <= head.took < 1.55, head
    assert mid.status == 200 and not mid.complete, mid  # cut after the head
    assert 0.9 <= mid.took < 1.55, mid
    assert steady.status == 200 and steady.complete, steady  # never quiet for 1 s
    assert steady.took >= 1.4, steady

    w.withdraw(TIMEOUT, "idle")  # Kuma's default: 30 min
    head, mid = together(slow_head, stall)
    assert head.status == 200 and head.complete, head
    assert mid.status == 200 and mid.complete, mid


def test_max_stream_duration_cuts_an_exchange_that_is_never_idle(w: World) -> None:
    slow_head, trickle = get(w, "/slow?ms=1800"), get(w, "/chunks?n=8&ms=250")
    w.enforce(TIMEOUT, "duration", {"http": {"maxStreamDuration": "1s"}})
    kept, opened = _inbound(w, "active"), _opened(w)
    head, steady = together(slow_head, trickle)
    assert (head.status, head.error) == (504, "timeout"), head
    assert 0.9 <= head.took < 1.7, head
    assert steady.status == 200 and not steady.complete, steady  # cut after a second
    assert 0.9 <= steady.took < 1.7, steady
    # Both upstream connections were given up, not left open (or pooled) mid-exchange.
    expected = kept + _opened(w) - opened - 2
    wait_until(lambda: _inbound(w, "active") == expected, timeout=5, what="both closed")

    w.withdraw(TIMEOUT, "duration")  # Kuma's default: no limit
    (steady,) = together(trickle)
    assert steady.status == 200 and steady.complete, steady
    assert steady.took >= 1.9, steady


def _new_upstream_connections(w: World, run_for: float) -> tuple[int, int]:
    """Requests through web for `run_for` seconds, one after the other: (requests, mTLS
    connections the backends' sidecars accepted meanwhile)."""

    def accepted() -> int:
        return sum(int(b.stats()["inbounds"][0]["connectionsTotal"]) for b in w.backends)

    before, n = accepted(), 0
    end = time.monotonic() + run_for
    while time.monotonic() < end:
        assert fetch(w.vip, w.port, "/who").status == 200
        n += 1
    return n, accepted() - before


def test_max_connection_duration_retires_upstream_connections(w: World) -> None:
    w.enforce(TIMEOUT, "conn-age", {"http": {"maxConnectionDuration": "400ms"}})
    requests, opened = _new_upstream_connections(w, 1.5)
    # Each instance's connection is replaced about every 0.4 s: 3 or 4 each; a connection
    # per request would be many more.
    assert 4 <= opened <= requests // 2, (requests, opened)

    w.withdraw(TIMEOUT, "conn-age")  # Kuma's default: no limit, connections are kept
    requests, opened = _new_upstream_connections(w, 1.5)
    assert opened <= 2, (requests, opened)


def _partial_head(w: World) -> socket.socket:
    sock = socket.create_connection((w.vip, w.port), timeout=5)
    sock.sendall(b"GET /who HTTP/1.1\r\nHost: backend\r\n")  # the head's end never comes
    return sock


def test_request_headers_timeout_answers_408_to_a_slow_head(w: World) -> None:
    w.enforce(TIMEOUT, "head", {"http": {"requestHeadersTimeout": "1s"}})
    start = time.monotonic()
    with _partial_head(w) as sock:
        sock.settimeout(5)
        answer = sock.recv(4096)
        took = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"x-meshfed-error: request-headers-timeout" in answer, answer
        assert 0.9 <= took < 2.0, took
        wait_until(lambda: sock.recv(4096) == b"", timeout=5, what="closed")

    w.withdraw(TIMEOUT, "head")  # Kuma's default: no limit
    with _partial_head(w) as sock:
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # 1.5 s and still waiting for the rest of the head
        sock.settimeout(5)
        sock.sendall(b"\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


# -- MeshRetry ---------------------------------------------------------------------------------


def test_per_try_timeout_moves_a_slow_attempt_to_the_other_instance(w: World) -> None:
    slow = w.backends[1]  # backend-2 takes 2 s to answer anything
    control(slow, "delay", 2000)
    try:
        w.enforce(RETRY, "per-try", {"http": {"perTryTimeout": "500ms"}})
        before = len(arrivals([slow], "/who"))
        answers = [fetch(w.vip, w.port, "/who") for _ in range(4)]
        assert [(a.status, a.name) for a in answers] == [(200, "backend-1")] * 4, answers
        assert all(a.took < 1.5 for a in answers), answers  # ~0.5 s on backend-2, then 1
        assert len(arrivals([slow], "/who")) - before >= 2  # round robin sent some there

        w.withdraw(RETRY, "per-try")  # Kuma's default: 16 s (above the 15 s request timeout)
        answers = together(get(w, "/who"), get(w, "/who"))
        by_slow = [a for a in answers if a.name == "backend-2"]
        assert [a.status for a in answers] == [200, 200], answers
        assert by_slow and by_slow[0].took >= 1.9, answers
    finally:
        control(slow, "delay", 0)


def _gaps(w: World, targets: list[str]) -> list[list[float]]:
    """Each target's arrivals at the backends as the gaps between its attempts."""
    out = []
    for target in targets:
        times = arrivals(w.backends, target)
        out.append([b - a for a, b in pairwise(times)])
    return out


def test_back_off_spaces_the_attempts_at_the_backend(w: World) -> None:
    """Envoy's fully jittered back-off: before retry N a wait drawn in [0, (2^N - 1) x
    baseInterval), capped at maxInterval. Eight requests answered 503 by every attempt, at
    once (a MeshCircuitBreaker lets them all retry), give 32 waits to look at."""
    slack = 0.4  # scheduling on a loaded machine
    retry = {
        "numRetries": 4,
        "retryOn": ["503"],
        "backOff": {"baseInterval": "400ms", "maxInterval": "500ms"},
    }
    w.enforce(BREAKER, "back-off-retries", {"connectionLimits": {"maxRetries": 8}})
    w.enforce(RETRY, "back-off", {"http": retry})
    targets = [f"/status/503?back-off={i}" for i in range(8)]
    answers = together(*(get(w, t) for t in targets))
    assert [a.status for a in answers] == [503] * 8, answers
    gaps = _gaps(w, targets)
    assert [len(g) for g in gaps] == [4] * 8, gaps  # numRetries 4: five attempts each
    flat = [g for each in gaps for g in each]
    # maxInterval: uncapped, the third and fourth waits would be drawn up to 2.8 s and 4 s.
    assert max(flat) <= 0.5 + slack, gaps
    # baseInterval: the waits average about 0.24 s; with Kuma's default (25 ms base, 250 ms
    # cap) they would average 0.07 s. Under 0.14 s has odds below 1 in 10^4.
    assert sum(flat) / len(flat) >= 0.14, gaps

    w.withdraw(RETRY, "back-off")  # Kuma's default: 5 retries of gateway errors, 25 ms base
    w.withdraw(BREAKER, "back-off-retries")  # Envoy's default: 3 retries at once
    targets = [f"/status/503?default={i}" for i in range(3)]
    answers = together(*(get(w, t) for t in targets))
    assert [a.status for a in answers] == [503] * 3, answers
    ceilings = [min((2**n - 1) * 0.025, 0.25) for n in range(1, 6)]
    for each in _gaps(w, targets):
        assert len(each) == 5, each
        assert all(g <= c + slack for g, c in zip(each, ceilings, strict=True)), each


# -- MeshCircuitBreaker ------------------------------------------------------------------------


def test_max_pending_requests_queues_one_and_refuses_the_next(w: World) -> None:
    queue = w.others["queue-1"]
    hold, quick = get(w, "/sleep/1.5", "queue"), get(w, "/who", "queue")

    def while_one_holds_the_connection() -> tuple[Answer, list[Answer]]:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(hold)
            wait_until(lambda: control(queue, "inflight")["inflight"] == 1, timeout=10)
            others = together(quick, quick)
            return first.result(timeout=15), others

    limits = {"maxConnections": 1, "maxPendingRequests": 1}
    w.enforce(BREAKER, "queue", {"connectionLimits": limits}, "queue")
    first, others = while_one_holds_the_connection()
    assert first.status == 200, first
    refused = [a for a in others if a.status == 503]
    queued = [a for a in others if a.status == 200]
    assert len(refused) == len(queued) == 1, others
    assert refused[0].error == "circuit-open", refused
    assert refused[0].took < 1.0 <= queued[0].took, others  # at once / after the first

    w.withdraw(BREAKER, "queue", "queue")  # Envoy's defaults: 1024 connections, 1024 pending
    first, others = while_one_holds_the_connection()
    assert [first.status] + [a.status for a in others] == [200] * 3, (first, others)
    assert all(a.took < 1.0 for a in others), others


def test_max_connection_pools_keeps_the_other_instance_out(w: World) -> None:
    call = get(w, "/who", "pools")
    w.enforce(BREAKER, "pools", {"connectionLimits": {"maxConnectionPools": 1}}, "pools")
    answers = [call() for _ in range(6)]
    served = {a.name for a in answers if a.status == 200}
    refused = [a for a in answers if a.status == 503]
    assert len(served) == 1, answers  # the first instance reached has the only pool
    assert len(refused) >= 2 and {a.error for a in refused} == {"circuit-open"}, answers

    w.withdraw(BREAKER, "pools", "pools")  # Envoy's default: no limit
    answers = [call() for _ in range(6)]
    assert {a.status for a in answers} == {200}, answers
    assert {a.name for a in answers} == {"pools-1", "pools-2"}, answers


def _ejects_the_failing_instance(w: World, name: str, detector: dict[str, object]) -> None:
    """backend-2 answers 500 to everything; with only `detector` on, it is ejected at an
    interval's end and traffic goes to backend-1; without the policy it stays in."""
    failing = w.backends[1]
    outlier = {
        "interval": "1s",
        "baseEjectionTime": "30s",  # out for the rest of the test: deleting brings it back
        "maxEjectionPercent": 50,
        "detectors": detector,
    }
    w.enforce(BREAKER, name, {"outlierDetection": outlier})
    before = w.outbound()["http"]["ejections"]
    control(failing, "fail", 500)  # not retried: Kuma's default retries gateway errors
    try:

        def ejected() -> bool:
            fetch(w.vip, w.port, "/who")
            return float(w.endpoint(failing)["outlierEjectedFor"]) > 0

        wait_until(ejected, timeout=10, interval=0.01, what="backend-2 ejected")
        assert w.outbound()["http"]["ejections"] == before + 1
        answers = [fetch(w.vip, w.port, "/who") for _ in range(6)]
        assert [(a.status, a.name) for a in answers] == [(200, "backend-1")] * 6, answers

        w.withdraw(BREAKER, name)  # no outlier detection: the failing instance is back
        statuses = [fetch(w.vip, w.port, "/who").status for _ in range(6)]
        assert sorted(statuses) == [200] * 3 + [500] * 3, statuses  # round robin
    finally:
        control(failing, "fail", 0)


def test_failure_percentage_ejects_an_instance_failing_over_the_threshold(w: World) -> None:
    _ejects_the_failing_instance(
        w,
        "failure-percentage",
        {"failurePercentage": {"requestVolume": 4, "minimumHosts": 2, "threshold": 50}},
    )


def test_success_rate_ejects_an_instance_far_below_the_mean(w: World) -> None:
    # Two hosts at 100 % and 0 %: mean 50, deviation 50, floor 50 - 0.5 x 50 = 25.
    _ejects_the_failing_instance(
        w,
        "success-rate",
        {
            "successRate": {
                "requestVolume": 4,
                "minimumHosts": 2,
                "standardDeviationFactor": "0.5",
            }
        },
    )


# -- MeshTimeout rules (inbound) ---------------------------------------------------------------


def inbound_rules(name: str, service: str, default: dict[str, object]) -> dict[str, object]:
    """A MeshTimeout with `rules` for the inbounds of `service`'s instances."""
    return {
        "type": TIMEOUT,
        "name": name,
        "mesh": MESH,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": service},
            "rules": [{"default": default}],
        },
    }


def _inbound(w: World, key: str) -> int:
    """A counter of the backends' inbounds, summed (`active`: caller connections open)."""
    return sum(int(b.stats()["inbounds"][0][key]) for b in w.backends)


def _opened(w: World) -> int:
    """Connections web's sidecar opened to backend's instances so far."""
    return sum(int(e["connections"]) for e in w.outbound()["endpoints"])


def _inbound_timeouts(w: World) -> int:
    return sum(int(b.stats()["inbounds"][0]["http"]["timeouts"]) for b in w.backends)


def test_inbound_rules_bound_the_exchange_with_the_application(w: World) -> None:
    """A `rules` MeshTimeout on backend's inbounds: backend's own sidecar cuts an answer that
    streams past requestTimeout (web's outbound would allow 15 s), and closes a caller's
    connection quiet for idleTimeout (web keeps it in its pool otherwise)."""
    name = "backend-inbound"
    doc = inbound_rules(name, "backend", {"idleTimeout": "500ms", "http": {"requestTimeout": "1s"}})
    trickle = get(w, "/chunks?n=4&ms=500")  # 2 s of body
    w.mesh.apply(doc)
    source = f"{TIMEOUT}/{name}"
    for b in w.backends:
        wait_until(
            lambda: (
                admin_json(b.admin, "/config")["inbounds"][0]["timeouts"]["sources"]  # noqa: B023
                == [source]
            ),
            timeout=20,
            what=f"{source} at {b.name}",
        )
    before = _inbound_timeouts(w)
    (cut,) = together(trickle)
    assert cut.status == 200 and not cut.complete, cut
    assert 0.9 <= cut.took < 1.7, cut
    assert _inbound_timeouts(w) == before + 1  # the backend's sidecar timed it out
    # A kept-alive caller quiet for idleTimeout after a request is closed by the backend's
    # sidecar. A connection already waiting when the policy came keeps its old wait, so
    # sixteen overlapping requests first put every connection web pooled (no earlier test
    # had more than eight at once) and some new ones to use.
    overlapping = together(*[get(w, "/slow?ms=700")] * 16)
    assert {a.status for a in overlapping} == {200}, overlapping
    wait_until(lambda: _inbound(w, "active") == 0, timeout=5, interval=0.05, what="closed")

    w.mesh.glob.delete(f"/meshes/{MESH}/meshtimeouts/{name}")
    for b in w.backends:
        wait_until(
            lambda: admin_json(b.admin, "/config")["inbounds"][0]["timeouts"]["sources"] == [],  # noqa: B023
            timeout=20,
            what=f"{source} gone from {b.name}",
        )
    (whole,) = together(trickle)
    assert whole.status == 200 and whole.complete and whole.took >= 1.9, whole
    assert fetch(w.vip, w.port, "/who").status == 200  # web pools that connection again
    end = time.monotonic() + 1.5  # three idleTimeouts of the deleted policy
    while time.monotonic() < end:
        assert _inbound(w, "active") >= 1, "a kept-alive caller connection was closed"
        time.sleep(0.1)  # the poll's pace: the check is that nothing happens


def _quiet_after_an_answer(w: World) -> socket.socket:
    """A TCP connection through web to `plain` that got one HTTP answer and is now quiet."""
    sock = socket.create_connection(w.mesh.target(ZONE, "plain"), timeout=5)
    sock.sendall(b"GET /who HTTP/1.1\r\nHost: plain\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):
        chunk = sock.recv(4096)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    return sock


def test_inbound_rules_close_a_quiet_tcp_connection(w: World) -> None:
    plain = w.others["plain-1"]
    name = "plain-inbound"
    doc = inbound_rules(name, "plain", {"idleTimeout": "500ms"})

    def sources() -> list[str]:
        return list(admin_json(plain.admin, "/config")["inbounds"][0]["timeouts"]["sources"])

    w.mesh.apply(doc)
    wait_until(lambda: sources() == [f"{TIMEOUT}/{name}"], timeout=20, what="at plain's sidecar")
    with _quiet_after_an_answer(w) as sock:
        quiet_since = time.monotonic()
        assert sock.recv(4096) == b""  # plain's sidecar closed the link, web's followed
        assert 0.4 <= time.monotonic() - quiet_since < 2.0

    w.mesh.glob.delete(f"/meshes/{MESH}/meshtimeouts/{name}")
    wait_until(lambda: sources() == [], timeout=20, what="gone from plain's sidecar")
    with _quiet_after_an_answer(w) as sock:
        sock.settimeout(1.5)  # three of the deleted idleTimeouts
        with pytest.raises(TimeoutError):
            sock.recv(4096)
