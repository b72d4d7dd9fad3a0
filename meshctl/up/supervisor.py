"""The running `meshctl up`: child processes, their output, status polling, control socket.

This is the I/O edge; what to print, which ports, which argv and what the state file says are
decided by the pure modules beside it. Children run in their own process group so that Ctrl-C
in the terminal reaches only `up`, which then stops them in order (zones, then the global)
instead of all of them racing to exit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.parse
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp

from meshctl.errors import CliError
from meshctl.up import control
from meshctl.up.console import Console, LineBuffer
from meshctl.up.credentials import TokenIssueError, issue_zone_tokens
from meshctl.up.state import (
    EXITED,
    ROLE_GLOBAL,
    ROLE_ZONE,
    RUNNING,
    ComponentRecord,
    UpState,
    write_state,
)
from meshctl.up.status import (
    ComponentProbe,
    exit_text,
    last_line,
    ready_url,
    status_lines,
    zone_state,
)

TAIL_LINES = 10
# How long a `--demo` workload has to become ready at startup before `up` says so (sidecars
# wait for their zone, its mesh CA and their token, so this is generous).
WORKLOAD_START_TIMEOUT = 120.0
# A component whose API has not answered since it started is "starting" for this long, then
# "not answering": a slow first start (SQLite, imports) is not worth an alarm.
STARTUP_GRACE = 15.0
# Up's own status polls carry this marker so their access-log lines can be kept off the screen
# (they still go to the log files); otherwise every poll would print a line per component.
POLL_MARKER = "by=meshctl-up"


@dataclass(frozen=True)
class SupervisorConfig:
    state_file: Path
    control_path: Path
    show_status: bool = True
    stop_timeout: float = 10.0
    poll_interval: float = 1.0
    # Issued through the global once it answers, before any zone starts: the admin token
    # file the global writes, and each zone's token file (meshctl/up/credentials.py).
    admin_token_file: Path | None = None
    zone_tokens: Mapping[str, Path] = field(default_factory=dict)


class Child:
    def __init__(self, record: ComponentRecord) -> None:
        self.record = record
        self.proc: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.expected_exit = False
        self.started_at = 0.0  # monotonic time of the last spawn
        self.answered = False  # its API answered since the last spawn
        self.lock = asyncio.Lock()  # one restart/stop at a time per component

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(
        self,
        config: SupervisorConfig,
        components: list[ComponentRecord],
        console: Console,
        data_dir: Path,
        demo_network: str | None = None,
    ) -> None:
        self.config = config
        self.console = console
        self.children = [Child(c) for c in components]
        self.state = UpState(
            pid=os.getpid(),
            data_dir=str(data_dir),
            control=str(config.control_path),
            components=components,
            demo_network=demo_network,
        )
        self._failed: str | None = None  # why `up` ends with exit code 1 (a demo that failed)
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # ---- lifecycle ---------------------------------------------------------------------

    async def run(self) -> int:
        """Runs until SIGINT/SIGTERM/SIGHUP; a second signal kills what is still running."""
        stop = self._stop_requested
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

        def on_signal() -> None:
            if stop.is_set():
                self.console.notice("second signal: killing what is still running")
                self._kill_all()
            self.stop()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
        server: asyncio.AbstractServer | None = None
        poller: asyncio.Task[None] | None = None
        watcher: asyncio.Task[None] | None = None
        try:
            self._save()
            try:
                server = await control.serve(self.config.control_path, self._handle)
            except OSError as exc:
                path = self.config.control_path
                raise CliError(f"cannot listen on the control socket {path}: {exc}") from None
            for child in self.children:
                await self._spawn(child)
                if child.record.role == ROLE_GLOBAL:
                    await self._wait_listening(child)
                    await self._issue_zone_tokens(child)
            workloads = [c for c in self.children if c.record.role not in (ROLE_GLOBAL, ROLE_ZONE)]
            if workloads:
                watcher = asyncio.create_task(self._watch_workloads_start(workloads))
            if self.config.show_status:
                poller = asyncio.create_task(self._poll_loop())
            await stop.wait()
        finally:
            self._stopping = True
            self.console.notice("stopping every component")
            for task in (poller, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if server is not None:
                server.close()
            await self._stop_all()
            self._save()
            with contextlib.suppress(OSError):
                self.config.control_path.unlink()
            for sig in signals:
                loop.remove_signal_handler(sig)
            self.console.notice("all components stopped")
            if self._failed is not None:
                self.console.notice(f"failed: {self._failed}")
            self.console.close()
        return 0 if self._failed is None else 1

    def stop(self) -> None:
        """Asks `run` to stop every component and return (what SIGINT/SIGTERM do)."""
        self._stop_requested.set()

    async def _stop_all(self) -> None:
        """Workloads first (`--demo`: sidecars, apps, ingresses), then zones (so their last
        log lines are not about losing the global), then the global; each group in parallel."""
        roles = (ROLE_ZONE, ROLE_GLOBAL)
        workloads = [c for c in self.children if c.record.role not in roles]
        zones = [c for c in self.children if c.record.role == ROLE_ZONE]
        rest = [c for c in self.children if c.record.role == ROLE_GLOBAL]
        for group in (workloads, zones, rest):
            await asyncio.gather(*(self._stop_locked(c) for c in group))

    async def _stop_locked(self, child: Child) -> None:
        # The lock waits out a restart in progress, which would otherwise spawn the child
        # again after it was stopped here (it checks `_stopping` before spawning).
        async with child.lock:
            await self._stop(child)

    def _kill_all(self) -> None:
        for child in self.children:
            if child.running and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()

    # ---- one child ---------------------------------------------------------------------

    async def _spawn(self, child: Child) -> None:
        rec = child.record
        log = _open_log(rec)
        child.expected_exit = False
        child.tail.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *rec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env,
                process_group=0,
            )
        except OSError as exc:
            log.close()
            rec.state, rec.pid, rec.exit_code = EXITED, None, None
            self._save()
            self.console.notice(f"cannot start {rec.name}: {exc}")
            return
        child.proc = proc
        child.started_at, child.answered = time.monotonic(), False
        rec.state, rec.pid, rec.exit_code = RUNNING, proc.pid, None
        self._save()
        self.console.notice(f"started {rec.name} (pid {proc.pid}), log in {rec.log}")
        child.pump = asyncio.create_task(self._pump(child, proc, log))

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        """Copies the child's output to its log file and the screen until it exits."""
        buffer = LineBuffer()
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(65536):
                log.write(chunk)
                log.flush()
                self._show(child, buffer.feed(chunk))
            self._show(child, buffer.flush())
            code = await proc.wait()
            log.write(f"==== meshctl up: {child.record.name} {exit_text(code)}\n".encode())
        finally:
            log.close()
        self._exited(child, code)

    def _show(self, child: Child, lines: list[str]) -> None:
        lines = [line for line in lines if POLL_MARKER not in line]
        child.tail.extend(lines)
        self.console.log(child.record.name, lines)

    def _exited(self, child: Child, code: int) -> None:
        rec = child.record
        rec.state, rec.pid, rec.exit_code = EXITED, None, code
        self._save()
        if child.expected_exit or self._stopping:
            self.console.notice(f"{rec.name} {exit_text(code)}")
            return
        others = "the other components keep running"
        self.console.notice(
            f"{rec.name} {exit_text(code)} unexpectedly; its last lines:",
            *(f"  {line}" for line in child.tail),
            f"{others}; `meshctl up restart {rec.name}` starts it again",
        )

    async def _wait_listening(self, child: Child) -> None:
        """Until the global accepts KDS connections (or exits, or STARTUP_GRACE passes), so
        zones started next connect at once instead of backing off from a refused dial."""
        url = urllib.parse.urlsplit(child.record.kds or "")
        if url.hostname is None or url.port is None:
            return
        deadline = time.monotonic() + STARTUP_GRACE
        while child.running and time.monotonic() < deadline and not self._stop_requested.is_set():
            try:
                _, writer = await asyncio.open_connection(url.hostname, url.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def _watch_workloads_start(self, workloads: list[Child]) -> None:
        """`--demo`: a workload that exits before it was ever ready cannot start (a taken
        address, a missing program): `up` says why in one line and stops with exit code 1,
        rather than leave a demo up that will not answer."""

        async def one(child: Child) -> None:
            deadline = time.monotonic() + WORKLOAD_START_TIMEOUT
            failure = await self._wait_ready(child, deadline)
            if failure is None or self._stopping or child.expected_exit:
                return
            if child.running:  # slow, not broken: said once, `up` goes on
                self.console.notice(f"{child.record.name} is not ready yet: {failure}")
                return
            line = last_line(child.tail) or exit_text(child.record.exit_code)
            self._failed = f"{child.record.name} could not start: {line}"
            self.console.notice(self._failed)
            self.stop()

        await asyncio.gather(*(one(c) for c in workloads))

    async def _wait_ready(self, child: Child, deadline: float) -> str | None:
        """None once `child` answers its readiness URL (meshctl/up/state.py: `ready_url`);
        else why not: it exited (its exit status) or the deadline passed."""
        url = ready_url(child.record)
        url += ("&" if "?" in url else "?") + POLL_MARKER if url else ""
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not child.running:
                    if child.pump is not None:  # its last lines and exit status, complete
                        await asyncio.wait({child.pump}, timeout=5)
                    return exit_text(child.record.exit_code)
                if not url:
                    return None
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return None
                        last = f"{url} answers HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last = f"{url}: {type(exc).__name__}"
                if time.monotonic() >= deadline:
                    return f"not ready ({last})"
                await asyncio.sleep(0.1)

    async def _issue_zone_tokens(self, glob: Child) -> None:
        """One zone token per zone, through the global's API with its admin token; a failure
        is shown (the zones will then say they cannot authenticate) and `up` goes on."""
        cfg = self.config
        if cfg.admin_token_file is None or not cfg.zone_tokens or not glob.running:
            return
        try:
            await issue_zone_tokens(glob.record.api, cfg.admin_token_file, cfg.zone_tokens)
        except TokenIssueError as exc:
            self.console.notice(f"cannot issue the zones' tokens: {exc}")
            return
        self.console.notice(f"issued zone tokens for {', '.join(cfg.zone_tokens)}")

    async def _stop(self, child: Child) -> None:
        """SIGTERM, then SIGKILL after the stop timeout; returns once the child is reaped."""
        proc, pump = child.proc, child.pump
        if proc is None or pump is None or pump.done():
            return
        child.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        done, _ = await asyncio.wait({pump}, timeout=self.config.stop_timeout)
        if not done:
            self.console.notice(
                f"{child.record.name} did not stop within {self.config.stop_timeout:g}s; killing it"
            )
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait({pump})

    # ---- control socket ----------------------------------------------------------------

    async def _handle(self, request: control.Request) -> control.Reply:
        if self._stopping:
            return control.Reply(False, "meshctl up is shutting down")
        child = next((c for c in self.children if c.record.name == request.component), None)
        if child is None:
            names = ", ".join(c.record.name for c in self.children)
            return control.Reply(False, f"no component {request.component!r}; known: {names}")
        name = child.record.name
        # Answer before the client gives up: it waits `request.timeout` in all.
        deadline = time.monotonic() + max(1.0, request.timeout - 1.0)
        async with child.lock:
            if request.command == "stop":
                if not child.running:
                    return control.Reply(True, f"{name} is not running")
                self.console.notice(f"stopping {name} (asked through the control socket)")
                await self._stop(child)
                return control.Reply(True, f"{name} stopped")
            if request.command == "start" and child.running:
                failure = await self._wait_ready(child, deadline)
                return self._ready_reply(child, failure, "is already running")
            self.console.notice(f"{request.command}ing {name} (asked through the control socket)")
            await self._stop(child)
            if self._stopping:
                return control.Reply(False, "meshctl up is shutting down")
            await self._spawn(child)
            failure = await self._wait_ready(child, deadline)
            done = "restarted" if request.command == "restart" else "started"
            return self._ready_reply(child, failure, done)

    def _ready_reply(self, child: Child, failure: str | None, done: str) -> control.Reply:
        """Success only for a running, ready component; else why, with its last lines."""
        rec = child.record
        if failure is None:
            return control.Reply(True, f"{rec.name} {done} and ready (pid {rec.pid})")
        head = f"{rec.name} {failure}" if child.running else f"{rec.name} did not start: {failure}"
        lines = [f"{head}; its last lines (all in {rec.log}):", *child.tail]
        return control.Reply(False, "\n".join(lines))

    # ---- status ------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(0.5, self.config.poll_interval))
        failing = False
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    global_probe, zones = await self._probe(session)
                    self.console.status(status_lines(global_probe, zones))
                    failing = False
                except Exception as exc:  # a bug here must not take the supervisor down
                    if not failing:
                        self.console.notice(f"status poll failed: {type(exc).__name__}: {exc}")
                    failing = True
                await asyncio.sleep(self.config.poll_interval)

    async def _probe(
        self, session: aiohttp.ClientSession
    ) -> tuple[ComponentProbe, list[ComponentProbe]]:
        glob = next(c for c in self.children if c.record.role == ROLE_GLOBAL)
        zones = [c for c in self.children if c.record.role == ROLE_ZONE]
        global_probe = await self._probe_one(session, glob, "/zones+insights?size=1000")
        if isinstance(global_probe.view, dict):
            global_probe = ComponentProbe(
                glob.record.name, True, view=global_probe.view.get("items")
            )
        known = {
            str(item.get("name")): item
            for item in (global_probe.view if isinstance(global_probe.view, list) else [])
            if isinstance(item, dict)
        }
        global_up = global_probe.running and global_probe.api_error is None

        async def zone_probe(child: Child) -> ComponentProbe:
            overview = known.get(child.record.name)
            if global_up and overview is not None and zone_state(overview)[0] != "offline":
                return ComponentProbe(child.record.name, child.running)
            return await self._probe_one(session, child, "/_kds")

        return global_probe, list(await asyncio.gather(*(zone_probe(z) for z in zones)))

    async def _probe_one(
        self, session: aiohttp.ClientSession, child: Child, path: str
    ) -> ComponentProbe:
        rec = child.record
        if not child.running:
            return ComponentProbe(rec.name, False, exit_code=rec.exit_code)
        sep = "&" if "?" in path else "?"
        starting = not child.answered and time.monotonic() - child.started_at < STARTUP_GRACE
        try:
            async with session.get(f"{rec.api}{path}{sep}{POLL_MARKER}") as resp:
                if resp.status != 200:
                    error = f"HTTP {resp.status} on {path}"
                    return ComponentProbe(rec.name, True, api_error=error, starting=starting)
                body: Any = await resp.json(content_type=None)
        except aiohttp.ClientConnectorError:
            error = "connection refused"
            return ComponentProbe(rec.name, True, api_error=error, starting=starting)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return ComponentProbe(rec.name, True, api_error=error or "error", starting=starting)
        child.answered = True
        return ComponentProbe(rec.name, True, view=body)

    def _save(self) -> None:
        try:
            write_state(self.config.state_file, self.state)
        except OSError as exc:
            self.console.notice(f"cannot write the state file {self.config.state_file}: {exc}")


def _open_log(rec: ComponentRecord) -> IO[bytes]:
    """Appends to the component's log (one file across restarts, each start marked)."""
    Path(rec.data_dir).mkdir(parents=True, exist_ok=True)
    Path(rec.log).parent.mkdir(parents=True, exist_ok=True)
    log = open(rec.log, "ab")  # noqa: SIM115 - closed by the pump when the child exits
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    log.write(f"==== meshctl up: starting {rec.name} at {stamp}: {rec.argv}\n".encode())
    log.flush()
    return log
