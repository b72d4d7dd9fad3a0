"""Shared test plumbing: free ports, waiting on conditions, real processes cleaned up by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_EPHEMERAL = _ephemeral_range()
_GIVEN: set[int] = set()
# Under pytest-xdist (`make test` runs two workers) each worker takes its own residue class of
# port numbers, so two workers never pick the same port in the moment before it is bound.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % _WORKERS
# Kuma's and meshfed's default ports: never handed out, another meshfed may want them.
_DEFAULTS = frozenset({5653, 5678, 5681, 5685, 9901, 10001})


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on `host` (DNS servers need both).

    Taken below the kernel's ephemeral range: a process told to bind port 0 (a zone's DNS,
    a client's socket) gets its port from that range, so it can never take the port a test
    picked here for another listener before that listener binds it. No port is handed out
    twice in one test run, nor by two xdist workers.
    """
    low = 15000 if _EPHEMERAL[0] > 16000 else 1024
    high = min(_EPHEMERAL[0], 65536) - 1
    for _ in range(1000):
        port = random.randint(low, high)
        port -= (port - _WORKER) % _WORKERS
        if port < low or port in _GIVEN or port in _DEFAULTS:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, port))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
        except OSError:
            continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port found")


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Polls `predicate` until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: {last_exc!r}"
    )


async def async_wait_until(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        await asyncio.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate}: {last_exc!r}"
    )


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


class Proc:
    """A real child process with its output in a log file; stopped by PID on cleanup."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)


class Procs:
    """Starts processes for one test and stops every one of them (by PID) at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        # Every zone-cp serves DNS; unless a test picks the address, any free port, so zones
        # started by parallel tests never fight over the default 5653.
        full_env.setdefault("MESHFED_DNS_ADDRESS", "127.0.0.1:0")
        # Likewise the dataplane config server (default 5678).
        full_env.setdefault("MESHFED_DP_SERVER_ADDRESS", "127.0.0.1:0")
        if env:
            full_env.update(env)
        proc = Proc(name, argv, self.log_dir, full_env)
        self.started.append(proc)
        return proc

    def script(self, script: str) -> str:
        """Path of a console script installed in this venv (global-cp, zone-cp, meshctl...)."""
        return str(VENV_BIN / script)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()

    def dump_logs(self) -> str:
        """Printed for a failed test only: long enough to hold a whole `meshctl up --demo`
        start (a rare failure is diagnosed from this alone, on a CI machine that is gone)."""
        return "\n".join(f"===== {p.name} =====\n{p.log()[-30000:]}" for p in self.started)
