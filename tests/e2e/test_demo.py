"""`meshctl up --demo` end to end, as a user runs it: start it, paste the command it prints,
see backend answer from zone-1 (local first) and, pinned, from zone-2 through the ingress;
then Ctrl-C (SIGTERM) stops all thirteen processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from meshctl.up.procs import pid_alive
from tests.support import VENV_BIN, Procs, wait_until

pytestmark = [
    pytest.mark.integration,
]

COMMAND = re.compile(r"(curl -s http://\$\(dig .*)$")


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


def answered(command: str, zone: str) -> bool:
    answer = paste(command)
    return answer is not None and answer["zone"] == zone


def test_demo_prints_a_command_that_calls_backend(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "up"
    up = procs.start(
        "up",
        [
            str(VENV_BIN / "meshctl"),
            "up",
            "--demo",
            "--data-dir",
            str(data),
            "--global-api-port",
            "0",
            "--global-kds-port",
            "0",
            "--no-status",
        ],
    )
    wait_until(lambda: "demo: Mesh default has builtin mTLS" in up.log(), timeout=60)
    lines = [m.group(1) for line in up.log().splitlines() if (m := COMMAND.search(line))]
    local, pinned = lines[:2]
    assert "backend.mesh" in local and "backend.zone-2.mesh" in pinned

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

    state = json.loads((data / "state.json").read_text())
    assert len(state["components"]) == 13
    pids = [c["pid"] for c in state["components"]]
    assert all(c["state"] == "running" for c in state["components"])
    up.signal(signal.SIGTERM)
    assert up.popen.wait(60) == 0
    assert not any(pid_alive(pid) for pid in pids)
