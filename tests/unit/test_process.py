"""meshfed.process in a real child process: signals stop it cleanly, start-up errors give one
clear line and the documented exit status."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Proc, Procs, wait_until

CHILD = """
import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Annotated

from meshfed.config import Config, LogFormat, LogLevel, Option, parse_str
from meshfed.process import load_settings, run_program, run_until_stopped

log = logging.getLogger("demo")


@dataclass(frozen=True)
class Settings:
    log_level: LogLevel
    log_format: LogFormat
    fail: Annotated[str, Option(parse_str, "", "")]


CONFIG = Config("demo", "a program for the tests", Settings)


class StartError(Exception):
    pass


class Service:
    def __init__(self, fail: str) -> None:
        self.fail = fail

    async def start(self) -> None:
        log.info("loop from %s", type(asyncio.get_running_loop()).__module__)
        if self.fail == "start":
            raise OSError("cannot listen on 127.0.0.1:1: address already in use")
        if self.fail == "signal-while-starting":
            os.kill(os.getpid(), signal.SIGTERM)
        log.info("started")

    async def stop(self) -> None:
        log.info("service stopped")


async def main(settings: Settings) -> int:
    if settings.fail == "setting":
        raise StartError("give --thing")
    return await run_until_stopped(Service(settings.fail), log)


settings = load_settings(CONFIG, "the demo", sys.argv[1:])
run_program("demo", lambda: main(settings), start_errors=(StartError,))
"""


@pytest.fixture
def child(tmp_path: Path) -> Path:
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def start(procs: Procs, child: Path, *args: str) -> Proc:
    return procs.start("demo", [sys.executable, str(child), *args])


def run(child: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(child), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_service_cleanly(procs: Procs, child: Path, sig: int) -> None:
    proc = start(procs, child, "run")
    wait_until(lambda: "started" in proc.log(), what="the child's start")
    proc.signal(sig)
    assert proc.popen.wait(10) == 0, proc.log()
    log = proc.log()
    assert log.index("shutting down") < log.index("service stopped") < log.index("stopped\n")


def test_a_stop_asked_while_starting_is_honoured_after_start(procs: Procs, child: Path) -> None:
    proc = start(procs, child, "--fail", "signal-while-starting")
    assert proc.popen.wait(10) == 0, proc.log()  # not killed by the signal's default action
    assert "started" in proc.log() and "service stopped" in proc.log()


def test_the_loop_is_uvloop_when_installed(procs: Procs, child: Path) -> None:
    proc = start(procs, child)
    wait_until(lambda: "started" in proc.log(), what="the child's start")
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert f"loop from {expected}" in proc.log()


def test_a_service_that_cannot_start_is_logged_and_exits_1(child: Path) -> None:
    result = run(child, "--fail", "start")
    assert result.returncode == 1, result
    assert "cannot start: cannot listen on 127.0.0.1:1: address already in use" in result.stderr
    assert "service stopped" in result.stderr  # what had started is released
    assert "Traceback" not in result.stderr


def test_a_start_error_is_one_line_on_stderr_and_exits_2(child: Path) -> None:
    result = run(child, "--fail", "setting")
    assert result.returncode == 2, result
    assert result.stderr == "demo: give --thing\n"


def test_a_bad_option_value_exits_2_and_help_documents_run(child: Path) -> None:
    result = run(child, "--log-level", "loud")
    assert result.returncode == 2, result
    assert "invalid value 'loud' for --log-level" in result.stderr
    result = run(child, "--help")
    assert result.returncode == 0, result
    assert "run: start the demo (the default)" in " ".join(result.stdout.split())


def test_log_format_json_writes_one_object_per_line(child: Path) -> None:
    result = run(child, "--log-format", "json", "--fail", "start")
    assert result.returncode == 1, result
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    failed = [line for line in lines if line["message"].startswith("cannot start")]
    assert failed and failed[0]["level"] == "error" and failed[0]["logger"] == "demo"


@pytest.mark.parametrize("columns", ["", "0", "x", "57"])
def test_help_width_follows_shutils_rule(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The help formatter takes the terminal width without importing shutil (decision 184),
    by shutil.get_terminal_size's rule."""
    import shutil

    from meshfed.config import _columns

    monkeypatch.setenv("COLUMNS", columns)
    assert _columns() == shutil.get_terminal_size().columns
