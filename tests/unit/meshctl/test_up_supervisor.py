"""The supervisor with small real child processes standing in for the control planes: output
prefixed, a death reported with its last lines while the others keep running, restart and stop
through the real control socket, state file kept current, everything stopped at the end."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from meshctl.up import control, procs
from meshctl.up.console import Console
from meshctl.up.state import EXITED, RUNNING, ComponentRecord, read_state
from meshctl.up.supervisor import Supervisor, SupervisorConfig
from tests.support import async_wait_until, free_port

SLEEPER = "import sys, time; print('hello from', sys.argv[1], flush=True); time.sleep(60)"
# A control plane stand-in that is ready: answers 200 on every path (its /ready) on argv[2].
READY = (
    "import http.server, sys; print('hello from', sys.argv[1], flush=True)\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self): self.send_response(200); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[2])), H).serve_forever()"
)
CRASHER = "print('boom 1'); print('boom 2'); raise SystemExit(3)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(60)"
)


def _component(
    tmp_path: Path, name: str, role: str, code: str, *args: str, api: str = ""
) -> ComponentRecord:
    return ComponentRecord(
        name=name,
        role=role,
        argv=[sys.executable, "-c", code, *args],
        api=api,  # its /ready says when a start or restart succeeded; none: running is enough
        data_dir=str(tmp_path / name),
        log=str(tmp_path / "logs" / f"{name}.log"),
    )


async def test_supervision_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    port = free_port()
    components = [
        _component(
            tmp_path, "global", "global", READY, "global", str(port), api=f"http://127.0.0.1:{port}"
        ),
        _component(tmp_path, "zone-1", "zone", CRASHER, api=f"http://127.0.0.1:{free_port()}"),
        _component(tmp_path, "zone-2", "zone", STUBBORN),
    ]
    config = SupervisorConfig(
        state_file=tmp_path / "state.json",
        control_path=control.socket_path(tmp_path),
        show_status=False,
        stop_timeout=0.5,
    )
    console = Console(out, [c.name for c in components], tty=False, color=False)
    sup = Supervisor(config, components, console, tmp_path)
    runner = asyncio.create_task(sup.run())

    async def output_has(text: str, times: int = 1) -> bool:
        return out.getvalue().count(text) >= times

    async def ask(command: str, component: str) -> control.Reply:
        request = control.Request(command, component)
        return await asyncio.to_thread(control.send, str(config.control_path), request, 10.0)

    def state() -> dict[str, ComponentRecord]:
        return {c.name: c for c in read_state(config.state_file).components}

    await async_wait_until(lambda: output_has("global | hello from global"), what="global says hi")
    await async_wait_until(lambda: output_has("zone-1 exited with code 3 unexpectedly"))
    text = out.getvalue()
    assert "zone-1 | boom 1\nzone-1 | boom 2\n" in text
    assert "up     |   boom 1\nup     |   boom 2\n" in text  # the last lines, with the report
    assert "`meshctl up restart zone-1` starts it again" in text

    async def crash_recorded() -> bool:
        return state()["zone-1"].state == EXITED and state()["zone-1"].exit_code == 3

    await async_wait_until(crash_recorded)
    current = state()
    assert current["global"].state == RUNNING
    first_global = current["global"].pid
    assert first_global is not None and procs.runs(first_global, components[0].argv)
    assert read_state(config.state_file).control == str(config.control_path)
    log_text = await asyncio.to_thread(Path(components[1].log).read_text)
    assert log_text.count("\nboom 1\n") == 1

    # Restart the crashed zone: it runs (and crashes) again, with the same argv; the restart
    # fails with its exit status and last lines.
    reply = await ask("restart", "zone-1")
    assert not reply.ok
    assert reply.message.splitlines() == [
        f"zone-1 did not start: exited with code 3; its last lines (all in {components[1].log}):",
        "boom 1",
        "boom 2",
    ]
    await async_wait_until(lambda: output_has("zone-1 | boom 2", times=2))
    assert (await ask("restart", "nope")) == control.Reply(
        False, "no component 'nope'; known: global, zone-1, zone-2"
    )

    # Stop the global: the others are untouched; stopping again is harmless.
    assert await ask("stop", "global") == control.Reply(True, "global stopped")
    assert not procs.pid_alive(first_global)
    assert state()["global"].state == EXITED and state()["global"].pid is None
    assert await ask("stop", "global") == control.Reply(True, "global is not running")
    stubborn_pid = state()["zone-2"].pid
    assert stubborn_pid is not None and procs.pid_alive(stubborn_pid)
    assert "global unexpectedly" not in out.getvalue()

    # Bring it back: a new process with the same command line, ready when the reply says so.
    reply = await ask("start", "global")
    assert reply.ok and reply.message.startswith("global started and ready (pid "), reply
    assert (await ask("start", "global")).message.startswith("global is already running")
    second_global = state()["global"].pid
    assert second_global not in (None, first_global)
    await async_wait_until(lambda: output_has("global | hello from", times=2))

    # Shut down: the SIGTERM-ignoring child is killed after the stop timeout.
    sup.stop()
    assert await asyncio.wait_for(runner, 15) == 0
    assert "zone-2 did not stop within 0.5s; killing it" in out.getvalue()
    assert out.getvalue().rstrip().endswith("all components stopped")
    assert second_global is not None
    for pid in (second_global, stubborn_pid):
        assert not procs.pid_alive(pid)
    assert all(c.state == EXITED and c.pid is None for c in state().values())
    assert not config.control_path.exists()


async def test_a_program_that_cannot_start_is_reported(tmp_path: Path) -> None:
    out = io.StringIO()
    broken = _component(tmp_path, "global", "global", "")
    broken.argv = [str(tmp_path / "no-such-program")]
    config = SupervisorConfig(
        state_file=tmp_path / "state.json",
        control_path=control.socket_path(tmp_path),
        show_status=False,
    )
    sup = Supervisor(config, [broken], Console(out, ["global"], tty=False, color=False), tmp_path)
    runner = asyncio.create_task(sup.run())

    async def reported() -> bool:
        return "cannot start global" in out.getvalue()

    await async_wait_until(reported)
    reply = await asyncio.to_thread(
        control.send, str(config.control_path), control.Request("restart", "global"), 10.0
    )
    assert reply == control.Reply(
        False, f"global did not start: not running; its last lines (all in {broken.log}):"
    )
    sup.stop()
    assert await asyncio.wait_for(runner, 10) == 0
