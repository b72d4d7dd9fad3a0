"""`meshctl up --demo` end to end, as a user runs it: start it, paste the command it prints,
see backend answer from zone-1 (local first) and, pinned, from zone-2 through the ingress;
then Ctrl-C (SIGTERM) stops all thirteen processes. Two demos run side by side in ranges of
their own, and a demo workload that cannot start fails `up --demo` in one line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from meshctl import config
from meshctl.up.demo import APP_PORT, DEMO_NET_LAST, DemoNet
from meshctl.up.launch import demo_claim_path
from meshctl.up.procs import DataDirLock, pid_alive
from tests.integration.test_up import all_running, zones_connected
from tests.integration.test_up_credentials import ALLOW_WEB, BACKEND_1
from tests.support import VENV_BIN, Proc, Procs, wait_until

pytestmark = [
    pytest.mark.integration,
]

COMMAND = re.compile(r"(curl -s http://\$\(dig .*)$")


# The MeshTimeout of the README's demo section, applied as written there.
README_TIMEOUT = """\
type: MeshTimeout
mesh: default
name: backend-timeout
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshService, name: backend}
      default:
        http: {requestTimeout: 1s}
"""


def paste(command: str) -> dict[str, Any] | None:
    """Runs a printed command in a shell, as a user would; its JSON answer or None."""
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=15, check=False
    )
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return None
    return answer


def resolve(command: str) -> str:
    """The VIP the `dig` inside a printed command answers."""
    found = re.search(r"\$\((dig [^)]*)\)", command)
    assert found is not None, command
    done = subprocess.run(
        ["bash", "-c", found.group(1)], capture_output=True, text=True, timeout=15, check=False
    )
    return done.stdout.strip()


def answered(command: str, zone: str) -> bool:
    answer = paste(command)
    return answer is not None and answer["zone"] == zone


def start_demo(procs: Procs, data: Path, name: str = "up", *extra: str) -> Proc:
    argv = [str(VENV_BIN / "meshctl"), "up", "--demo", "--data-dir", str(data), "--no-status"]
    return procs.start(name, [*argv, "--global-api-port", "0", "--global-kds-port", "0", *extra])


def printed_commands(up: Proc) -> tuple[str, str]:
    wait_until(lambda: "demo: Mesh default has builtin mTLS" in up.log(), timeout=60)
    lines = [m.group(1) for line in up.log().splitlines() if (m := COMMAND.search(line))]
    local, pinned = lines[:2]
    assert "backend.mesh" in local and "backend.zone-2.mesh" in pinned
    return local, pinned


def test_demo_prints_a_command_that_calls_backend(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "up"
    up = start_demo(procs, data)
    local, pinned = printed_commands(up)

    # Until zone-1's own instance is up, zone-2 may answer; then local first, always.
    wait_until(lambda: answered(local, "zone-1"), timeout=60, interval=0.5, what="backend.mesh")
    assert all(answered(local, "zone-1") for _ in range(5))
    wait_until(lambda: paste(pinned), timeout=60, interval=0.5, what="backend.zone-2.mesh")
    # Both zone-2 instances answer once the second sidecar has registered too (round robin
    # through zone-2's ingress); every answer comes from zone-2.
    seen: set[str] = set()

    def both_instances_answered() -> bool:
        answer = paste(pinned)
        assert answer is None or answer["zone"] == "zone-2", answer
        if answer is not None:
            seen.add(answer["instance"])
        return seen == {"backend-z2-1", "backend-z2-2"}

    wait_until(both_instances_answered, timeout=60, interval=0.2, what="both zone-2 instances")

    # The demo's MeshAccessLog: both sides of web -> backend in one file; its MeshMetric:
    # web's sidecar serves its metrics for Prometheus where the banner says.
    access_log = data / "demo" / "access.log"

    def logged_both_sides() -> bool:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        ours = [line for line in lines if '"web" "backend"' in line]
        # Kuma's default format ends with the upstream host: the app (port 8080) on backend's
        # side, backend's sidecar or zone-2's ingress on web's
        return {line.endswith(':8080"') for line in ours} == {True, False}

    wait_until(logged_both_sides, timeout=10, what="web -> backend in the demo's access log")
    found = re.search(r"curl -s (http://\S+:5670/metrics)", up.log())
    assert found is not None, up.log()[-2000:]
    with urllib.request.urlopen(found.group(1), timeout=10) as resp:
        assert b"meshfed_dp_" in resp.read()

    state = json.loads((data / "state.json").read_text())
    assert len(state["components"]) == 13
    pids = [c["pid"] for c in state["components"]]
    assert all(c["state"] == "running" for c in state["components"])
    up.signal(signal.SIGTERM)
    assert up.popen.wait(60) == 0
    assert not any(pid_alive(pid) for pid in pids)


def test_two_demos_run_side_by_side(procs: Procs, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    ups = [start_demo(procs, first, "one"), start_demo(procs, second, "two")]
    commands = [printed_commands(up)[0] for up in ups]
    nets = [json.loads((d / "state.json").read_text())["demoNetwork"] for d in (first, second)]
    assert nets[0] != nets[1]
    for command in commands:  # each calls its own backend through its own DNS and VIP
        wait_until(lambda c=command: answered(c, "zone-1"), timeout=90, interval=0.5)
    vips = {resolve(c) for c in commands}
    assert len(vips) == 2 and all(vips), vips
    for data, net in zip((first, second), nets, strict=True):
        status = subprocess.run(
            [str(VENV_BIN / "meshctl"), "up", "status", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert f"demo addresses and VIPs in {net}" in status.stdout
        prefix = net.split(".0.0/")[0]
        assert f"http://{prefix}.0.2:9901" in status.stdout  # web-1's admin
    for up in ups:
        up.signal(signal.SIGTERM)
    assert [up.popen.wait(60) for up in ups] == [0, 0]


def free_claim() -> DemoNet:
    """A range no running demo claims (from the top, away from where `up` starts looking)."""
    for octet in range(DEMO_NET_LAST, DEMO_NET_LAST - 20, -1):
        lock = DataDirLock(demo_claim_path(DemoNet(octet)))
        if lock.acquire():
            lock.release()
            return DemoNet(octet)
    raise AssertionError("no unclaimed demo range")


def test_a_workload_that_cannot_start_fails_up_in_one_line(procs: Procs, tmp_path: Path) -> None:
    net = free_claim()
    address = net.address(1, 1)  # app-backend-z2-1
    with socket.socket() as squatter:
        squatter.bind((address, APP_PORT))
        squatter.listen()
        up = start_demo(procs, tmp_path / "up", "up", "--demo-net", str(net.octet))
        assert up.popen.wait(90) == 1
    log = up.log()
    why = f"app-backend-z2-1 could not start: echo backend-z2-1: cannot listen on {address}:"
    assert why in log
    assert log.rstrip().splitlines()[-1].startswith("up ")
    assert f"failed: {why}" in log.rstrip().splitlines()[-1]
    assert "Traceback" not in log


def test_the_readme_in_order_with_reset(procs: Procs, tmp_path: Path) -> None:
    """The README's first section (allow-web, backend-1), then `up --reset --demo` as it says:
    local first, and deleting the demo's permission refuses calls."""
    cfg = tmp_path / "meshctl.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_API")}
    env["MESHCTL_CONFIG"] = str(cfg)

    def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(VENV_BIN / "meshctl"), *args]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, env=env, check=False
        )

    data = tmp_path / "up"
    base = [str(VENV_BIN / "meshctl"), "up", "--data-dir", str(data), "--no-status"]
    base += ["--global-api-port", "0", "--global-kds-port", "0"]
    first = procs.start("first", base, env=env)
    comps = wait_until(lambda: all_running(data / "state.json"), timeout=30, what="first up")
    wait_until(lambda: zones_connected(comps["global"]["api"]), timeout=30)
    (tmp_path / "allow-web.yaml").write_text(ALLOW_WEB)
    (tmp_path / "backend-1.yaml").write_text(BACKEND_1)
    wait_until(lambda: meshctl("apply", "-f", str(tmp_path / "allow-web.yaml")).returncode == 0)
    zone1 = ["--api", comps["zone-1"]["api"]]
    backend = str(tmp_path / "backend-1.yaml")
    wait_until(lambda: meshctl(*zone1, "apply", "-f", backend).returncode == 0, timeout=30)
    first.signal(signal.SIGTERM)
    assert first.popen.wait(30) == 0

    up = procs.start("up", [*base, "--reset", "--demo"], env=env)
    local, _ = printed_commands(up)
    assert "--reset: removed the previous data" in up.log()
    token = (data / "global" / "admin-token").read_text().strip()
    wait_until(lambda: config.load(cfg).current == "up" and _token(cfg) == token, timeout=30)
    listed = meshctl("get", "mtp")
    assert listed.returncode == 0, listed.stderr
    assert "allow-web" not in listed.stdout and "web-to-backend" in listed.stdout
    wait_until(lambda: answered(local, "zone-1"), timeout=90, interval=0.5, what="local first")
    assert all(answered(local, "zone-1") for _ in range(5))
    assert "backend-1" not in meshctl("get", "dataplanes").stdout

    # A policy at the global changes a call (README): MeshTimeout http.requestTimeout 1s
    # answers a 2 s call with 504 from web's sidecar; deleted, the call succeeds again.
    timeout_yaml = tmp_path / "backend-timeout.yaml"
    timeout_yaml.write_text(README_TIMEOUT)
    applied = meshctl("apply", "-f", str(timeout_yaml))
    assert applied.returncode == 0, applied.stderr
    slow = local.replace("curl -s ", "curl -s -o /dev/null -w '%{http_code}' ").removesuffix(
        "; echo"
    )
    assert ":8080/" in slow, slow
    slow = slow.replace(":8080/", ":8080/delay/2000")

    def slow_status() -> str:
        done = subprocess.run(
            ["bash", "-c", slow], capture_output=True, text=True, timeout=15, check=False
        )
        return done.stdout

    wait_until(lambda: slow_status() == "504", timeout=30, interval=0.5, what="504")
    removed = meshctl("delete", "meshtimeout", "backend-timeout")
    assert removed.returncode == 0, removed.stderr
    wait_until(lambda: slow_status() == "200", timeout=30, interval=0.5, what="200 again")

    deleted = meshctl("delete", "mtp", "web-to-backend")
    assert deleted.returncode == 0, deleted.stderr
    status = local.replace("curl -s ", "curl -s -o /dev/null -w '%{http_code}' ").removesuffix(
        "; echo"
    )
    codes: list[str] = []

    def refused() -> bool:
        done = subprocess.run(
            ["bash", "-c", status], capture_output=True, text=True, timeout=15, check=False
        )
        codes.append(done.stdout)
        return done.stdout == "403"

    # The permission is checked per HTTP request (README): the deletion reaches backend's
    # sidecar over KDS and its dataplane config, then the next call on web's pooled
    # connection is refused.
    wait_until(refused, timeout=30, interval=0.5, what="403")
    assert codes[-1] == "403", codes
    up.signal(signal.SIGTERM)
    assert up.popen.wait(60) == 0


def _token(cfg: Path) -> str | None:
    planes = {cp.name: cp for cp in config.load(cfg).control_planes}
    return planes["up"].token if "up" in planes else None
