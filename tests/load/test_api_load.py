"""Load: concurrent API clients creating, updating and deleting policies at the global
(issue 16, suite 5). CLIENTS clients (20 in `make test`, 50 under `make soak`) for DURATION
seconds (15 s / 60 s), each on its own names so that its last acknowledged write is the truth:

- no answer is a 5xx (a 409 on a racing create is a correct answer, not a failure);
- afterwards every acknowledged write is in place at the global and in every zone: the last
  acknowledged value of each name, and no name whose delete was acknowledged.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bounds import bound, run_timeout
from tests.integration.federation_support import Cluster, Http, mt_path, timeout_policy
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

CLIENTS = bound(20, 50)
DURATION = bound(15.0, 60.0)
NAMES_PER_CLIENT = 5


@dataclass
class Client:
    index: int
    http: Http
    # name -> last acknowledged idleTimeout, or None once its delete was acknowledged.
    truth: dict[str, str | None] = field(default_factory=dict)
    unsure: set[str] = field(default_factory=set)  # a write with no answer: either outcome
    answers: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)

    def run(self, until: float) -> None:
        rng = random.Random(self.index)
        i = 0
        while time.monotonic() < until:
            i += 1
            name = f"c{self.index}-{rng.randrange(NAMES_PER_CLIENT)}"
            delete = rng.random() < 0.3
            idle = f"{self.index * 1000 + i}ms"
            try:
                if delete:
                    status, body = self.http.call("DELETE", mt_path(name))
                else:
                    status, body = self.http.call("PUT", mt_path(name), timeout_policy(name, idle))
            except OSError:
                self.unsure.add(name)
                continue
            self.answers[status] = self.answers.get(status, 0) + 1
            if status >= 500:
                self.server_errors.append(f"{status} {body}")
            elif delete and status in (200, 404):
                self.truth[name] = None
                self.unsure.discard(name)
            elif not delete and status in (200, 201):
                self.truth[name] = idle
                self.unsure.discard(name)


def holds(http: Http, truth: dict[str, str | None]) -> bool:
    have = {
        p["name"]: p["spec"]["to"][0]["default"]["idleTimeout"]
        for p in http.items("/meshes/default/meshtimeouts")
    }
    return all(have.get(name) == idle for name, idle in truth.items())


@pytest.mark.timeout(run_timeout(150, 400))
def test_concurrent_clients_every_acknowledged_write_everywhere(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path)
    cluster.start()
    cluster.wait_online()
    clients = [
        Client(i, Http(cluster.glob.http.port, cluster.glob.http.token_file))
        for i in range(CLIENTS)
    ]
    until = time.monotonic() + DURATION
    threads = [threading.Thread(target=c.run, args=(until,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION + 60)

    errors = [e for c in clients for e in c.server_errors]
    assert errors == [], errors[:5]
    answers: dict[int, int] = {}
    for c in clients:
        for status, n in c.answers.items():
            answers[status] = answers.get(status, 0) + n
    truth = {name: idle for c in clients for name, idle in c.truth.items() if name not in c.unsure}
    print(f"{sum(answers.values())} answers in {DURATION:.0f}s: {answers}")  # shown with -s
    assert sum(answers.values()) >= CLIENTS * 10, answers
    assert len(truth) >= CLIENTS * NAMES_PER_CLIENT // 2
    for node in cluster.nodes():
        wait_until(lambda node=node: holds(node.http, truth), timeout=30, what=node.name)
    cluster.wait_converged(timeout=30)
