"""Process facts for `meshctl up`: the data directory lock, liveness, leftovers of a crash.

One `up` per data directory: two would fight over ports and SQLite files. An advisory lock
(flock) is released by the kernel when its holder dies, however it dies, so it never goes stale.
A PID alone can be reused by an unrelated process, so "is this still our component?" compares
the process's command line with the argv we started it with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from meshctl.up.state import RUNNING, ComponentRecord, UpState

LOCK_NAME = "up.lock"


class DataDirLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when we now hold it; False when another live process does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """PID written by the holder, when readable."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def is_locked(data_dir: Path) -> bool:
    """Whether a live `up` holds the lock of `data_dir` (probes by trying to take it)."""
    path = data_dir / LOCK_NAME
    if not path.exists():
        return False
    lock = DataDirLock(path)
    if lock.acquire():
        lock.release()
        return False
    return True


def pid_alive(pid: int) -> bool:
    """Exists and is not a zombie (an exited child nobody has reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    # Format: "pid (comm) S ..."; comm may hold spaces and parentheses, so split at the last ')'.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def runs(pid: int, argv: list[str]) -> bool:
    """Whether `pid` is alive and running `argv`. A console script shows up as
    `python /path/script args...`, so the command line must end with argv."""
    found = cmdline(pid)
    return bool(argv) and found is not None and found[-len(argv) :] == argv


def liveness(record: ComponentRecord, running: Callable[[int, list[str]], bool]) -> str:
    """`running`, `exited`, or `gone` (the file says running, but its process is not)."""
    if record.state != RUNNING:
        return "exited"
    if record.pid is not None and running(record.pid, record.argv):
        return "running"
    return "gone"


def leftovers(state: UpState, running: Callable[[int, list[str]], bool]) -> list[ComponentRecord]:
    """Components of a previous `up` that died without stopping them (SIGKILL, crash)."""
    return [c for c in state.components if c.pid is not None and running(c.pid, c.argv)]


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when the process is gone. For processes
    that are not our children (leftovers), so it polls instead of waiting on them."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for sig_after, deadline in ((signal.SIGKILL, timeout), (None, 5.0)):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
        if sig_after is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig_after)
    return not pid_alive(pid)
