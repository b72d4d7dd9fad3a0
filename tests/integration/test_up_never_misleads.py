"""`meshctl up` never misleads (issue 15): the preferred global port is retaken once it frees
(a fallback does not stick), `up start|restart` succeed only once the component is ready and
fail with its exit status and last lines when it cannot bind, `up status` shows every address,
and `inspect zones` asked of a zone says the global lists zones. Real processes; the preferred
port is a free port this test holds, never 5681."""

from __future__ import annotations

import signal
import socket
import urllib.parse
from pathlib import Path

import pytest

from tests.integration.test_up import MESHCTL, components, get_json, meshctl, read_state
from tests.support import Procs, free_port, wait_until

pytestmark = pytest.mark.integration


def listening(port: int) -> socket.socket:
    """SO_REUSEADDR like the servers themselves: a stopped component's port can still hold
    TIME_WAIT connections, which only a listener (not they) should keep us off."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def running(state_file: Path, count: int) -> bool:
    comps = components(state_file) if state_file.exists() else {}
    return len(comps) == count and all(c["state"] == "running" for c in comps.values())


def port_of(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    return port


def test_up_ports_readiness_and_addresses(procs: Procs, tmp_path: Path) -> None:
    data, preferred = tmp_path / "up", free_port()
    state_file = data / "state.json"
    argv = [MESHCTL, "up", "--zones", "1", "--data-dir", str(data), "--no-status"]
    argv += ["--global-api-port", str(preferred), "--global-kds-port", "0"]

    # The preferred port is busy: the global takes another and `up` says which.
    blocker = listening(preferred)
    try:
        up = procs.start("up", argv)
        wait_until(lambda: running(state_file, 2), timeout=30, what="global and zone-1")
        glob, zone = components(state_file)["global"], components(state_file)["zone-1"]
        assert port_of(glob["api"]) != preferred
        wait_until(lambda: f"port {preferred} is in use: the global's API took" in up.log())
        assert f"the global's API took {glob['api']}" in up.log()
    finally:
        blocker.close()

    # "running" is the process; its API answers once it is ready.
    wait_until(
        lambda: get_json(f"{zone['api']}/ready") is not None, timeout=30, what="zone-1 ready"
    )

    # `up status`: every address, without reading state.json.
    status = meshctl("up", "status", "--data-dir", str(data))
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:]}
    assert rows["global"][4:6] == [glob["api"], glob["kds"]]
    assert rows["zone-1"][4:] == [zone["api"], "-", zone["dns"], zone["dpServer"], "-"]

    # Asked of a zone, `inspect zones` points at the global instead of a 404.
    asked = meshctl("inspect", "zones", api=zone["api"])
    assert asked.returncode == 1
    assert "zones are listed by the global" in asked.stderr and "404" not in asked.stderr

    # A zone that cannot bind its API: `up start` fails with its exit status and last lines.
    stopped = meshctl("up", "stop", "zone-1", "--data-dir", str(data))
    assert stopped.returncode == 0, stopped.stderr
    squatter = listening(port_of(zone["api"]))
    try:
        failed = meshctl("up", "start", "zone-1", "--data-dir", str(data))
        assert failed.returncode == 1, failed.stdout
        first, *tail = failed.stderr.splitlines()
        assert first.startswith("Error: zone-1 did not start: exited with code ")
        assert f"its last lines (all in {zone['log']})" in first
        assert any("in use" in line for line in tail), failed.stderr
        assert "Traceback" not in failed.stderr
        failed = meshctl("up", "restart", "zone-1", "--data-dir", str(data))
        assert failed.returncode == 1 and "zone-1 did not start" in failed.stderr
    finally:
        squatter.close()
    started = meshctl("up", "restart", "zone-1", "--data-dir", str(data))
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("zone-1 restarted and ready (pid ")
    # "Ready" is the truth at the moment of the reply: its /ready answers.
    assert meshctl("--api", zone["api"], "get", "meshes").returncode == 0

    # Once the preferred port is free, the next `up` takes it again.
    up.signal(signal.SIGTERM)
    assert up.popen.wait(30) == 0
    again = procs.start("again", argv)
    wait_until(
        lambda: read_state(state_file)["pid"] == again.pid and running(state_file, 2),
        timeout=30,
        what="the next up running",
    )
    assert components(state_file)["global"]["api"] == f"http://127.0.0.1:{preferred}"
    assert f"global API http://127.0.0.1:{preferred}" in again.log()
    assert "is in use" not in again.log()
    again.signal(signal.SIGTERM)
    assert again.popen.wait(30) == 0
