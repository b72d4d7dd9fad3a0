"""What the benchmark scripts share: free ports, waiting for a listener, CPU time from /proc and
stopping a process by PID.

The scripts run as `.venv/bin/python benchmarks/X.py`, which puts this folder first on
sys.path: they import this module as `_support`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host right now (DNS servers, which also need UDP, check both)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Until something accepts TCP connections on host:port; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far; OSError once it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def process_tree(pid: int) -> list[int]:
    """pid and its descendants now (nginx's master and workers, a runner's --workers)."""
    pids = [pid]
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            listed = children.read_text().split()
        except OSError:
            continue  # the task ended between listing and reading
        for child in listed:
            pids.extend(process_tree(int(child)))
    return pids


def total_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time of the processes still there: one that ended meanwhile counts nothing."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its descendants now."""
    return total_cpu_seconds(process_tree(pid))


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
