"""Every policy field the sidecar enforces changes what a real mesh-dp does.

The mesh has mTLS off here (plain TCP keeps the observations simple) except where TLS is
the point; callee instances are `mesh_dp.echo --mode tcp` processes listening at the
instance's inbound address, so web's outbound connects straight to them and each connection
starts with the answering instance's name. Policies are real resources, matched and turned
into config by meshfed.dpconfig.build; changes reach the running sidecar by SIGHUP.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from meshfed.resources.model import Resource
from tests.integration.test_mesh_dp_support import (
    Instance,
    Launcher,
    Scenario,
    SidecarProc,
    closed_without_data,
    outbound,
    recv_line,
)
from tests.support import Procs, wait_until
from tests.unit.policy.factories import MESH_REF, policy, to

pytestmark = pytest.mark.integration


def mesh_policy(kind: str, default: dict[str, Any]) -> Resource:
    return policy(kind, kind.lower(), MESH_REF, to=[to(MESH_REF, default)])


class World:
    """web's sidecar in front of N backend instances, with policies set per test."""

    def __init__(self, procs: Procs, tmp: Path, *, mtls: bool = False) -> None:
        self.s = Scenario(mtls=mtls)
        self.run = Launcher(procs, tmp)
        self.web = self.s.add_instance("web", "zone-1", "web")
        self.backends: list[Instance] = []
        self.sidecar: SidecarProc | None = None

    def backend(self, name: str, *, start: bool = True) -> Instance:
        inst = self.s.add_instance(name, "zone-1", "backend")
        self.backends.append(inst)
        if start:
            self.run.echo(inst, "tcp", at_inbound=True)
        return inst

    def policies(self, *policies: Resource) -> None:
        for kind in {p.type for p in policies}:
            self.s.set_policies(kind, [p for p in policies if p.type == kind])

    def start(self) -> SidecarProc:
        self.sidecar = self.run.sidecar("web", self.s.sidecar_config(self.web))
        return self.sidecar

    def reload(self) -> None:
        assert self.sidecar is not None
        self.sidecar.reload(self.s.sidecar_config(self.web))

    @property
    def target(self) -> tuple[str, int]:
        assert self.sidecar is not None
        out = outbound(self.sidecar.config, "backend")
        return out.address, out.port

    def stats(self) -> Any:
        assert self.sidecar is not None
        return self.sidecar.outbound("backend")

    def endpoint(self, inst: Instance) -> Any:
        return next(
            e
            for e in self.stats()["endpoints"]
            if (e["address"], e["port"]) == (inst.address, inst.port)
        )

    def call(self) -> str | None:
        """One connection: the answering instance's name, or None when it was refused."""
        with socket.create_connection(self.target, timeout=10) as sock:
            sock.settimeout(10)
            try:
                line = recv_line(sock)
            except ConnectionResetError:
                return None
        return line.split()[0].decode() if line else None

    def open(self) -> tuple[socket.socket, str | None]:
        """A connection to keep open, with who answered it."""
        sock = socket.create_connection(self.target, timeout=10)
        line = recv_line(sock)
        return sock, (line.split()[0].decode() if line else None)

    @contextmanager
    def held(self) -> Iterator[tuple[socket.socket, str | None]]:
        """A connection kept open while the block runs, with who answered it."""
        sock, who = self.open()
        try:
            yield sock, who
        finally:
            sock.close()


@contextmanager
def blackhole(address: str, port: int) -> Iterator[None]:
    """A listener whose accept queue is full: the kernel drops new SYNs, so a connect to it
    neither succeeds nor fails until the caller gives up."""
    listener = socket.socket()
    listener.bind((address, port))
    listener.listen(0)
    filler = socket.create_connection((address, port), timeout=2)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        with pytest.raises(TimeoutError):
            probe.connect((address, port))  # the hole is really black
        yield
    finally:
        for s in (probe, filler, listener):
            s.close()


def test_connection_timeout_gives_up_on_a_blackhole(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    hole = w.backend("hole", start=False)
    w.policies(
        mesh_policy("MeshTimeout", {"connectionTimeout": "300ms"}),
        mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 1}}),
    )
    with blackhole(hole.address, hole.port):
        w.start()
        started = time.monotonic()
        assert w.call() is None
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2.0  # the default would wait 5 s
        # A longer timeout really waits longer.
        w.policies(mesh_policy("MeshTimeout", {"connectionTimeout": "1500ms"}))
        w.reload()
        started = time.monotonic()
        assert w.call() is None
        assert 1.4 <= time.monotonic() - started < 4.0
    assert w.endpoint(hole)["failures"] == 2
    assert w.stats()["noEndpoint"] == 2


def test_connection_timeout_covers_the_tls_handshake(procs: Procs, tmp_path: Path) -> None:
    """With mTLS, a callee that accepts TCP but never answers the ClientHello times out too."""
    w = World(procs, tmp_path, mtls=True)
    silent = w.backend("silent", start=False)
    w.policies(
        mesh_policy("MeshTimeout", {"connectionTimeout": "400ms"}),
        mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 1}}),
    )
    with socket.create_server((silent.address, silent.port)) as listener:
        w.start()
        started = time.monotonic()
        assert w.call() is None
        assert 0.35 <= time.monotonic() - started < 2.5
        listener.accept()[0].close()  # it was reached: only the handshake stalled
    assert w.endpoint(silent)["failures"] == 1


def test_idle_timeout_closes_quiet_connections_only(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    w.backend("b1")
    w.policies(mesh_policy("MeshTimeout", {"idleTimeout": "600ms"}))
    w.start()
    with w.held() as (quiet, who), w.held() as (busy, _):
        assert who == "b1"
        started = time.monotonic()
        # `busy` sends a byte every 200 ms for 2 s and keeps getting its echo.
        while time.monotonic() - started < 2.0:
            busy.sendall(b"x")
            assert busy.recv(1) == b"x"
            time.sleep(0.2)
        quiet.settimeout(0.1)
        assert quiet.recv(1) == b""  # closed by the sidecar meanwhile
    assert w.stats()["idleClosed"] >= 1


def test_max_connect_attempts(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    for i in range(3):
        w.backend(f"dead{i}", start=False)  # nothing listens there: connects are refused
    w.policies(mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 2}}))
    w.start()

    assert w.call() is None
    assert sum(e["attempts"] for e in w.stats()["endpoints"]) == 2

    w.policies(mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 3}}))
    w.reload()
    assert w.call() is None
    assert sum(e["attempts"] for e in w.stats()["endpoints"]) == 5  # 2 + 3: each tried once

    w.backend("live")
    w.policies(mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 4}}))
    w.reload()
    for _ in range(5):
        assert w.call() == "live"  # dead endpoints may be tried first, then the live one


def test_health_checks_eject_and_restore(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    alive = w.backend("alive")
    flaky = w.backend("flaky", start=False)
    w.policies(mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 1}}))
    w.start()
    # Without health checks, round robin sends every other new connection to the dead one.
    answers = [w.call() for _ in range(2)]
    assert None in answers

    w.policies(
        mesh_policy("MeshRetry", {"tcp": {"maxConnectAttempt": 1}}),
        mesh_policy(
            "MeshHealthCheck",
            {
                "interval": "200ms",
                "timeout": "300ms",
                "unhealthyThreshold": 3,
                "healthyThreshold": 2,
                "tcp": {},
            },
        ),
    )
    w.reload()
    wait_until(lambda: not w.endpoint(flaky)["healthy"], what="flaky ejected")
    assert w.endpoint(flaky)["changedAfter"] == 3  # unhealthyThreshold failures in a row
    assert w.endpoint(alive)["healthy"]
    attempts = w.endpoint(flaky)["attempts"]
    # Once the passive ejection after the earlier failure has lapsed, only the health
    # check keeps connections away from it.
    wait_until(lambda: w.endpoint(flaky)["ejectedFor"] == 0, what="passive ejection over")
    assert [w.call() for _ in range(10)] == ["alive"] * 10
    assert w.endpoint(flaky)["attempts"] == attempts

    w.run.echo(flaky, "tcp", at_inbound=True)
    wait_until(lambda: w.endpoint(flaky)["healthy"], what="flaky restored")
    assert w.endpoint(flaky)["changedAfter"] == 2  # healthyThreshold successes in a row
    assert set(w.call() for _ in range(4)) == {"alive", "flaky"}


def test_health_check_timeout_and_disabling(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    w.backend("alive")
    hole = w.backend("hole", start=False)
    check = {"interval": "200ms", "timeout": "250ms", "unhealthyThreshold": 1, "tcp": {}}
    w.policies(mesh_policy("MeshHealthCheck", check))
    with blackhole(hole.address, hole.port):
        w.start()
        # Connects to the hole hang; only the check's own timeout (not the 15 s default)
        # can fail them this soon.
        wait_until(lambda: not w.endpoint(hole)["healthy"], timeout=3, what="hole ejected")
        # Checks repeat every `interval` (Kuma's default would be once a minute).
        wait_until(lambda: w.endpoint(hole)["checks"] >= 5, timeout=4, what="five checks")
        w.policies(mesh_policy("MeshHealthCheck", {**check, "tcp": {"disabled": True}}))
        w.reload()
        assert w.endpoint(hole)["healthy"]  # no checks: nothing keeps it out


def test_max_connections_refuses_the_next_one(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    w.backend("b1")
    w.policies(mesh_policy("MeshCircuitBreaker", {"connectionLimits": {"maxConnections": 2}}))
    w.start()
    with w.held() as (_, first), w.held() as (_, second):
        assert first == second == "b1"
        with socket.create_connection(w.target, timeout=5) as third:
            assert closed_without_data(third)
        assert w.stats()["overflow"] == 1
    wait_until(lambda: w.stats()["active"] == 0)
    with w.held() as (_, again), w.held() as (_, and_again):
        assert again == and_again == "b1"


def test_round_robin_cycles_in_order(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    for name in ("b1", "b2", "b3"):
        w.backend(name)
    w.start()
    seen = [w.call() for _ in range(9)]
    assert sorted(str(x) for x in seen[:3]) == ["b1", "b2", "b3"]
    assert seen == seen[:3] * 3


def test_random_is_not_a_cycle(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    for name in ("b1", "b2", "b3"):
        w.backend(name)
    w.policies(mesh_policy("MeshLoadBalancingStrategy", {"loadBalancer": {"type": "Random"}}))
    w.start()
    seen = [w.call() for _ in range(45)]
    assert set(seen) == {"b1", "b2", "b3"}
    assert seen != seen[:3] * 15  # what round robin would do


def test_least_request_picks_the_least_busy(procs: Procs, tmp_path: Path) -> None:
    w = World(procs, tmp_path)
    for name in ("b1", "b2", "b3"):
        w.backend(name)
    w.policies(
        mesh_policy(
            "MeshLoadBalancingStrategy",
            {"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3}}},
        )
    )
    w.start()
    conns: dict[str | None, socket.socket] = {}
    for _ in range(3):
        sock, who = w.open()
        conns[who] = sock
    try:
        assert set(conns) == {"b1", "b2", "b3"}
        for freed in ("b2", "b1", "b3", "b2"):
            # Free one instance: the next connection goes exactly there, whatever the order.
            conns.pop(freed).close()
            wait_until(lambda: sum(e["active"] for e in w.stats()["endpoints"]) == 2)
            sock, who = w.open()
            assert who == freed
            conns[freed] = sock
    finally:
        for sock in conns.values():
            sock.close()
