"""The real `meshctl up --zones 2`: real global-cp and zone-cp children on free loopback ports,
driven through the real `meshctl up stop|restart|status` and `meshctl inspect zones`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from meshctl.up.procs import pid_alive, runs, terminate
from tests.support import VENV_BIN, Proc, Procs, wait_until

pytestmark = pytest.mark.integration

MESHCTL = str(VENV_BIN / "meshctl")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str) -> Any:
    with _OPENER.open(url, timeout=2) as resp:
        return json.load(resp)


def meshctl(*args: str, api: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"MESHFED_API": api} if api else {})}
    return subprocess.run(
        [MESHCTL, *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def read_state(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def components(path: Path) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in read_state(path)["components"]}


def all_running(path: Path) -> dict[str, dict[str, Any]] | None:
    comps = components(path)
    ok = len(comps) == 3 and all(c["state"] == "running" and c["pid"] for c in comps.values())
    return comps if ok else None


def zones_connected(api: str) -> bool:
    items = get_json(f"{api}/zones+insights")["items"]
    states = {i["name"]: (i["zoneInsight"]["state"], i["zoneInsight"]["inSync"]) for i in items}
    return states == {"zone-1": ("online", True), "zone-2": ("online", True)}


def start_up(procs: Procs, data: Path) -> Proc:
    # Any free ports: a test never takes the default ports a user may be running on.
    argv = [MESHCTL, "up", "--zones", "2", "--data-dir", str(data)]
    return procs.start("up", [*argv, "--global-api-port", "0", "--global-kds-port", "0"])


def test_up_runs_stops_restarts_and_shuts_down_a_federation(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "up"
    state_file = data / "state.json"
    up = start_up(procs, data)

    comps = wait_until(lambda: all_running(state_file), timeout=20, what="3 running components")
    state = read_state(state_file)
    assert state["pid"] == up.pid
    assert state["dataDir"] == str(data)
    glob, zone1, zone2 = comps["global"], comps["zone-1"], comps["zone-2"]
    assert (glob["role"], zone1["role"], zone1["zone"]) == ("global", "zone", "zone-1")
    assert glob["kds"].startswith("grpcs://127.0.0.1:")
    assert f"--global-kds {glob['kds']}" in " ".join(zone1["argv"])
    # KDS over TLS pinned to the global's CA; each zone has its own token, readable by us only.
    ca = data / "global" / "kds-ca.crt"
    assert f"--kds-ca-file {ca}" in " ".join(zone1["argv"])
    api = glob["api"]
    wait_until(lambda: zones_connected(api), timeout=20, what="both zones connected")
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    for zone in ("zone-1", "zone-2"):
        token = data / zone / "zone-token"
        assert f"--zone-token-file {token}" in " ".join(comps[zone]["argv"])
        assert token.stat().st_mode & 0o777 == 0o600
    assert (data / "global" / "admin-token").stat().st_mode & 0o777 == 0o600
    assert "issued zone tokens for zone-1, zone-2" in up.log()
    wanted = ["status | zone-1  connected", "status | zone-2  connected"]
    wait_until(lambda: all(line in up.log() for line in wanted), timeout=10, what="status lines")
    log = up.log()
    assert "global | " in log and "zone-1 | " in log
    assert "by=meshctl-up" not in log  # up's own polls stay off the screen

    # A second `up` on the same directory is refused while this one runs.
    second = meshctl("up", "--data-dir", str(data))
    assert second.returncode == 1
    assert f"meshctl up is already running on {data} (pid {up.pid})" in second.stderr

    # `meshctl inspect zones` and `meshctl up status`.
    inspect = meshctl("inspect", "zones", api=api)
    assert inspect.returncode == 0, inspect.stderr
    rows = [line.split() for line in inspect.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("zone-1", "online", "in", "sync"),
        ("zone-2", "online", "in", "sync"),
    ]
    as_json = json.loads(meshctl("inspect", "zones", "-o", "json", api=api).stdout)
    assert [z["type"] for z in as_json] == ["ZoneOverview", "ZoneOverview"]
    status = meshctl("up", "status", "--data-dir", str(data))
    assert status.returncode == 0, status.stderr
    assert f"meshctl up is running (pid {up.pid})" in status.stdout
    assert [line.split()[2] for line in status.stdout.splitlines()[2:]] == ["running"] * 3

    # Stop the global: zones keep serving, `up` keeps running, the status says so.
    stopped = meshctl("up", "stop", "global", "--data-dir", str(data))
    assert (stopped.returncode, stopped.stdout) == (0, "global stopped\n"), stopped.stderr
    assert not pid_alive(glob["pid"])
    assert components(state_file)["global"]["state"] == "exited"
    assert up.alive()
    for zone in (zone1, zone2):
        assert pid_alive(zone["pid"])
        meshes = get_json(f"{zone['api']}/meshes")["items"]
        assert [m["name"] for m in meshes] == ["default"]  # synced before, still served
    wait_until(
        lambda: get_json(f"{zone1['api']}/_kds")["state"] != "connected",
        timeout=10,
        what="zone-1 sees the global gone",
    )
    wait_until(lambda: "status | global  DOWN (stopped)" in up.log(), timeout=10)
    wait_until(lambda: "zone-1  offline (global down; zone sees: " in up.log(), timeout=10)
    assert "global stopped unexpectedly" not in up.log()
    status = meshctl("up", "status", "--data-dir", str(data))
    assert [line.split()[2] for line in status.stdout.splitlines()[2:]] == [
        "stopped",
        "running",
        "running",
    ]

    # Restart it: same argv and ports, zones reconnect.
    restarted = meshctl("up", "restart", "global", "--data-dir", str(data))
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith("global restarted and ready (pid ")
    new_glob = components(state_file)["global"]
    assert new_glob["pid"] != glob["pid"] and new_glob["state"] == "running"
    assert (new_glob["api"], new_glob["kds"], new_glob["argv"]) == (
        glob["api"],
        glob["kds"],
        glob["argv"],
    )
    wait_until(lambda: zones_connected(api), timeout=20, what="zones reconnect")
    wait_until(lambda: get_json(f"{zone1['api']}/_kds")["state"] == "connected", timeout=10)

    # A zone that dies is reported with its last lines; the others keep running.
    os.kill(zone2["pid"], signal.SIGKILL)
    wait_until(lambda: "zone-2 killed by SIGKILL unexpectedly; its last lines:" in up.log())
    wait_until(lambda: "status | zone-2  killed by SIGKILL" in up.log(), timeout=10)
    assert components(state_file)["zone-2"]["exitCode"] == -9
    assert pid_alive(new_glob["pid"]) and pid_alive(zone1["pid"]) and up.alive()
    assert meshctl("up", "restart", "zone-2", "--data-dir", str(data)).returncode == 0
    zone2 = components(state_file)["zone-2"]
    wait_until(lambda: zones_connected(api), timeout=20, what="zone-2 back")

    # SIGTERM to `up`: every child gone, exit 0.
    children = [new_glob["pid"], zone1["pid"], zone2["pid"]]
    up.signal(signal.SIGTERM)
    assert up.popen.wait(20) == 0
    assert not any(pid_alive(pid) for pid in children)
    final = components(state_file)
    assert all(c["state"] == "exited" and c["pid"] is None for c in final.values())
    assert "up     | all components stopped" in up.log()

    # A later `up` on the same directory takes the same ports again.
    again = start_up(procs, data)
    comps = wait_until(lambda: all_running(state_file), timeout=20, what="second run")
    assert read_state(state_file)["pid"] == again.pid
    assert [comps[n]["api"] for n in ("global", "zone-1", "zone-2")] == [
        glob["api"],
        zone1["api"],
        zone2["api"],
    ]
    assert comps["global"]["kds"] == glob["kds"]

    # `up` killed outright leaves its children (they have their own process group); the next
    # `up` on the directory stops them before taking their ports.
    orphans = [c["pid"] for c in comps.values()]
    argvs = {c["pid"]: c["argv"] for c in comps.values()}
    try:
        again.kill()
        assert all(pid_alive(pid) for pid in orphans)
        third = start_up(procs, data)
        wait_until(
            lambda: read_state(state_file)["pid"] == third.pid and all_running(state_file),
            timeout=30,  # stops three orphans, then starts three components
            what="the third up running after stopping the orphans",
        )
        assert third.log().count("left running by a previous run: stopped") == 3
        assert not any(pid_alive(pid) for pid in orphans)
        assert components(state_file)["global"]["api"] == glob["api"]
        third.signal(signal.SIGTERM)
        assert third.popen.wait(20) == 0
    finally:  # if anything above failed, stop the orphans (only if still running our argv)
        for pid in orphans:
            if runs(pid, argvs[pid]):
                terminate(pid, 5.0)
