"""After `meshctl up`, the README's meshctl commands work with no extra step: `up` records the
global (current) and its zones with the admin token in meshctl's configuration."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshctl import config
from tests.integration.test_up import MESHCTL, all_running, zones_connected
from tests.support import Procs, wait_until

pytestmark = pytest.mark.integration

ALLOW_WEB = """\
type: MeshTrafficPermission
name: allow-web
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
    - targetRef:
        kind: MeshService
        name: web
      default:
        action: Allow
"""
BACKEND_1 = """\
type: Dataplane
name: backend-1
mesh: default
networking:
  address: 127.0.0.1
  inbound:
    - port: 20001
      servicePort: 8080
      tags:
        kuma.io/service: backend
"""


def test_readme_commands_work_after_up_with_no_token_or_address_given(
    procs: Procs, tmp_path: Path
) -> None:
    cfg = tmp_path / "home" / "meshctl.yaml"
    # As a user's shell: no MESHFED_API, no token; only where the config lives (not $HOME).
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_API")}
    env["MESHCTL_CONFIG"] = str(cfg)

    def meshctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MESHCTL, *args], capture_output=True, text=True, timeout=30, env=env, check=False
        )

    data = tmp_path / "up"
    argv = [MESHCTL, "up", "--zones", "2", "--data-dir", str(data), "--no-status"]
    up = procs.start("up", [*argv, "--global-api-port", "0", "--global-kds-port", "0"], env=env)
    comps = wait_until(lambda: all_running(data / "state.json"), timeout=20, what="components")
    glob, zone1 = comps["global"], comps["zone-1"]
    wait_until(lambda: config.load(cfg).current == "up", timeout=20, what="up in the config")
    assert "control plane 'up' (the global, admin token) is current" in up.log()
    planes = {cp.name: cp for cp in config.load(cfg).control_planes}
    assert planes["up"].address == glob["api"] and planes["up-zone-1"].address == zone1["api"]
    token = (data / "global" / "admin-token").read_text().strip()
    assert planes["up"].token == token

    wait_until(lambda: zones_connected(glob["api"]), timeout=20, what="zones online")
    (tmp_path / "allow-web.yaml").write_text(ALLOW_WEB)
    (tmp_path / "backend-1.yaml").write_text(BACKEND_1)
    applied = meshctl("apply", "-f", str(tmp_path / "allow-web.yaml"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == 'MeshTrafficPermission "allow-web" created\n'
    listed = json.loads(meshctl("get", "mtp", "-o", "json").stdout)
    assert [m["name"] for m in listed] == ["allow-web"]

    # `meshctl --api $Z1 apply`: zone-1's control plane carries the same admin token, which
    # zone-1 accepts once the global's user-token keys reached it.
    def applied_in_zone() -> subprocess.CompletedProcess[str] | None:
        done = meshctl("--api", zone1["api"], "apply", "-f", str(tmp_path / "backend-1.yaml"))
        return done if done.returncode == 0 else None

    wait_until(applied_in_zone, timeout=20, what="dataplane applied in zone-1")
    wait_until(
        lambda: "backend-1" in meshctl("get", "dataplanes").stdout,
        timeout=20,
        what="the zone's dataplane at the global",
    )
    refused = meshctl("--api", zone1["api"], "apply", "-f", str(tmp_path / "allow-web.yaml"))
    assert refused.returncode == 1 and "global" in refused.stderr

    # The file holds the token: readable by its owner only; `config view` does not print it.
    assert cfg.stat().st_mode & 0o077 == 0
    view: Any = yaml.safe_load(meshctl("config", "view").stdout)
    assert token not in json.dumps(view)

    # Another address given with --api gets no token: an anonymous write there is refused.
    anonymous = {**env, "MESHCTL_CONFIG": str(tmp_path / "empty.yaml")}
    done = subprocess.run(
        [MESHCTL, "--api", glob["api"], "delete", "mtp", "allow-web"],
        capture_output=True,
        text=True,
        timeout=30,
        env=anonymous,
        check=False,
    )
    assert done.returncode == 1 and "401" not in done.stdout
    assert "Unauthorized" in done.stderr and "no user token was sent" in done.stderr
    assert [m["name"] for m in json.loads(meshctl("get", "mtp", "-o", "json").stdout)] == [
        "allow-web"
    ]
