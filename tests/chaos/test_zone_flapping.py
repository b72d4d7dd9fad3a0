"""Chaos: zone-1 flaps while policies churn at the global (issue 16, suite 2).

zone-1 is killed and restarted CYCLES times (8 in `make test`, 50 under `make soak`), SIGKILL
and clean stops mixed, while a writer creates, updates and deletes policies at the global.
zone-2's store is watched throughout:

- no resource of zone-1 (its ZoneIngress, relayed to zone-2) ever disappears from zone-2: no
  DELETE event, and it is always listed;
- at the end every zone's digest matches the global's, and zone-1's ingress is where it was.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bounds import bound, run_timeout
from tests.integration.federation_support import (
    Cluster,
    StoreWatch,
    eventually,
    mt_path,
    timeout_policy,
    zone_ingress,
)
from tests.support import Procs

pytestmark = pytest.mark.integration

CYCLES = bound(8, 50)


@pytest.fixture
def watches() -> Iterator[list[StoreWatch]]:
    opened: list[StoreWatch] = []
    yield opened
    for w in opened:
        w.close()


def churn(cluster: Cluster, stop: threading.Event, errors: list[str]) -> None:
    """Creates, updates and deletes policies at the global until `stop`."""
    g = cluster.glob.http
    rng = random.Random(16)
    i = 0
    while not stop.is_set():
        i += 1
        name = f"churn-{rng.randrange(12)}"
        if rng.random() < 0.25:
            status, body = g.call("DELETE", mt_path(name))
            ok = status in (200, 404)
        else:
            status, body = g.call("PUT", mt_path(name), timeout_policy(name, f"{i % 50 + 1}s"))
            ok = status in (200, 201)
        if not ok:
            errors.append(f"{status} {body}")
        stop.wait(0.05)


@pytest.mark.timeout(run_timeout(240, 1800))
def test_zone_flapping_never_removes_its_resources_elsewhere(
    procs: Procs, tmp_path: Path, watches: list[StoreWatch]
) -> None:
    cluster = Cluster.create(procs, tmp_path)
    cluster.start()
    cluster.wait_online()
    z1, z2 = cluster.zones["zone-1"], cluster.zones["zone-2"]
    z1.http.put("/zoneingresses/zi-1", zone_ingress("zi-1"))
    eventually(lambda: len(z2.http.items("/zoneingresses")) == 1, what="zi-1 in zone-2")
    watch = StoreWatch(z2.http, types="ZoneIngress")
    watches.append(watch)

    stop, errors = threading.Event(), []
    writer = threading.Thread(target=churn, args=(cluster, stop, errors), daemon=True)
    writer.start()
    rng = random.Random(1616)
    listed: list[int] = []
    try:
        for cycle in range(CYCLES):
            cluster.stop(z1, signal.SIGKILL if rng.random() < 0.5 else signal.SIGTERM)
            listed.append(len(z2.http.items("/zoneingresses")))
            cluster.start(z1)
            if cycle % 2:
                cluster.wait_online("zone-1")  # sometimes fully back, sometimes not yet
            listed.append(len(z2.http.items("/zoneingresses")))
    finally:
        stop.set()
        writer.join(10)
    cluster.wait_online()
    cluster.wait_converged(timeout=60)

    assert errors == [], errors[:5]
    assert watch.kinds("DELETE") == [], watch.kinds("DELETE")
    assert watch.error is None and not watch.ended.is_set()
    assert set(listed) == {1}, listed
    [ingress] = z2.http.items("/zoneingresses")
    assert ingress["labels"]["kuma.io/zone"] == "zone-1"
    assert z1.restarts == CYCLES + 1
