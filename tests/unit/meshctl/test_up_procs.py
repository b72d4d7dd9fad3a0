"""One `up` per data directory, liveness by command line, leftovers of a crashed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from meshctl.up import procs
from meshctl.up.state import EXITED, RUNNING, ComponentRecord, UpState
from tests.support import wait_until


def _rec(name: str, pid: int | None, state: str, argv: list[str]) -> ComponentRecord:
    return ComponentRecord(
        name=name, role="zone", argv=argv, api="", data_dir="", log="", pid=pid, state=state
    )


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first = procs.DataDirLock(tmp_path / procs.LOCK_NAME)
    assert not procs.is_locked(tmp_path)
    assert first.acquire()
    assert procs.is_locked(tmp_path)
    second = procs.DataDirLock(tmp_path / procs.LOCK_NAME)
    assert not second.acquire()
    assert second.holder() == first.holder() is not None
    first.release()
    assert not procs.is_locked(tmp_path)
    assert second.acquire()
    second.release()


def test_liveness_and_leftovers_compare_argv() -> None:
    alive = {(11, "zone-cp run"), (12, "global-cp run")}

    def running(pid: int, argv: list[str]) -> bool:
        return (pid, " ".join(argv)) in alive

    z1 = _rec("zone-1", 11, RUNNING, ["zone-cp", "run"])
    z2 = _rec("zone-2", 13, RUNNING, ["zone-cp", "run"])  # pid gone
    z3 = _rec("zone-3", 12, RUNNING, ["zone-cp", "run"])  # pid reused by something else
    z4 = _rec("zone-4", None, EXITED, ["zone-cp", "run"])
    assert [procs.liveness(z, running) for z in (z1, z2, z3, z4)] == [
        "running",
        "gone",
        "gone",
        "exited",
    ]
    state = UpState(pid=1, data_dir="/d", control="/c", components=[z1, z2, z3, z4])
    assert procs.leftovers(state, running) == [z1]


def test_runs_and_terminate_on_a_real_process() -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    child = subprocess.Popen(argv)
    try:
        assert procs.pid_alive(child.pid)
        # Right after Popen the child may not have exec'd yet (its command line is still
        # pytest's): wait for the exec, never a fixed sleep.
        wait_until(lambda: procs.runs(child.pid, argv), timeout=10, what="the child to exec")
        assert procs.runs(child.pid, argv[1:])  # a script run through its interpreter
        assert not procs.runs(child.pid, [*argv[:-1], "other"])
        assert not procs.runs(child.pid, [])
        # terminate() polls, as for a process that is not our child; reap it meanwhile.
        assert procs.terminate(child.pid, 5.0) or child.poll() is not None
    finally:
        child.kill()
        child.wait()
    assert not procs.pid_alive(child.pid)
    assert not procs.runs(child.pid, argv)
