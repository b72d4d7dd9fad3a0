"""`meshctl up` and `meshctl inspect` command lines, run in-process: refusals happen before
anything starts, and the helper actions explain what is missing."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshctl.commands.up import answers_ready
from meshctl.main import run
from meshctl.up import procs
from meshctl.up.state import EXITED, RUNNING, ComponentRecord, UpState, write_state
from tests.support import free_port


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(
        argv,
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
        environ={"MESHCTL_CONFIG": os.environ["MESHCTL_CONFIG"]},
    )
    return code, out.getvalue(), err.getvalue()


def _dead_pid() -> int:
    return 2**22 + 12345  # above the default pid_max on most systems


def test_bad_flags_are_usage_errors() -> None:
    assert _run("up", "--zones", "0")[0] == 2
    assert _run("up", "--zones", "65")[0] == 2
    assert _run("up", "--base-port", "80")[0] == 2
    assert _run("up", "--base-port", "x")[0] == 2
    assert _run("up", "restart")[0] == 2
    assert _run("inspect")[0] == 2
    assert _run("inspect", "zones", "-o", "xml")[0] == 2


def test_second_up_on_the_same_data_dir_is_refused_before_starting_anything(
    tmp_path: Path,
) -> None:
    lock = procs.DataDirLock(tmp_path / procs.LOCK_NAME)
    assert lock.acquire()
    try:
        code, out, err = _run("up", "--data-dir", str(tmp_path))
    finally:
        lock.release()
    assert code == 1
    assert out == ""
    assert err.splitlines()[0].startswith(f"Error: meshctl up is already running on {tmp_path}")
    assert "(pid " in err and "another --data-dir" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [procs.LOCK_NAME]


def test_base_port_in_use_is_refused_and_releases_the_lock(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for _ in range(2):  # the second run gets the same answer, not "already running"
            code, _, err = _run("up", "--data-dir", str(tmp_path), "--base-port", str(port))
            assert code == 1
            assert f"port {port} (global API) is in use" in err
    assert not (tmp_path / "state.json").exists()
    assert not procs.is_locked(tmp_path)


def test_actions_without_a_state_file_say_where_they_looked(tmp_path: Path) -> None:
    for action in (["stop", "global"], ["restart", "zone-1"], ["status"]):
        code, _, err = _run("up", *action, "--data-dir", str(tmp_path))
        assert code == 1
        assert f"no state file at {tmp_path / 'state.json'}" in err
        assert "--data-dir or --state-file" in err


def _write(tmp_path: Path, state_file: Path) -> None:
    write_state(
        state_file,
        UpState(
            pid=_dead_pid(),
            data_dir=str(tmp_path),
            control=str(tmp_path / "up.sock"),
            demo_network="127.200.0.0/16",
            components=[
                ComponentRecord(
                    name="global",
                    role="global",
                    argv=["global-cp", "run"],
                    api="http://127.0.0.1:1",
                    kds="grpc://127.0.0.1:2",
                    data_dir="",
                    log="",
                    pid=_dead_pid(),
                    state=RUNNING,
                ),
                ComponentRecord(
                    name="zone-1",
                    role="zone",
                    zone="zone-1",
                    argv=["zone-cp", "run"],
                    api="http://127.0.0.1:3",
                    dns="127.0.0.1:4",
                    dp="grpc://127.0.0.1:5",
                    data_dir="",
                    log="",
                    state=EXITED,
                    exit_code=-9,
                ),
                ComponentRecord(
                    name="web-1",
                    role="demo",
                    zone="zone-1",
                    argv=["mesh-dp", "run"],
                    api="",
                    admin="http://127.200.0.2:9901",
                    data_dir="",
                    log="",
                    state=EXITED,
                    exit_code=1,
                ),
            ],
        ),
    )


def test_status_of_a_dead_up_shows_what_is_gone(tmp_path: Path) -> None:
    state_file = tmp_path / "elsewhere.json"
    _write(tmp_path, state_file)
    code, out, _ = _run("up", "status", "--state-file", str(state_file))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"meshctl up is not running (last pid {_dead_pid()}) on {tmp_path}"
    assert lines[1] == "demo addresses and VIPs in 127.200.0.0/16"
    headers = ["NAME", "ROLE", "STATE", "PID", "API", "KDS", "DNS", "DP", "SERVER", "ADMIN"]
    assert lines[2].split() == headers
    assert lines[3].split() == [
        "global",
        "global",
        "gone",
        str(_dead_pid()),
        "http://127.0.0.1:1",
        "grpc://127.0.0.1:2",
        *["-"] * 3,
    ]
    assert lines[4].split() == [
        "zone-1",
        "zone",
        *["killed", "by", "SIGKILL"],
        "-",
        "http://127.0.0.1:3",
        "-",
        "127.0.0.1:4",
        "grpc://127.0.0.1:5",
        "-",
    ]
    assert lines[5].split() == [
        *["web-1", "demo", "exited", "with", "code", "1", "-"],
        *["-"] * 4,
        "http://127.200.0.2:9901",
    ]


def test_actions_on_a_dead_up_say_it_is_not_running(tmp_path: Path) -> None:
    _write(tmp_path, tmp_path / "state.json")
    code, _, err = _run("up", "--data-dir", str(tmp_path), "stop", "global")
    assert code == 1
    assert err.strip() == f"Error: meshctl up is not running on {tmp_path}"


def test_inspect_zones_against_no_api() -> None:
    api = f"http://127.0.0.1:{free_port()}"
    code, out, err = _run("inspect", "zones", "--api", api)
    assert (code, out) == (1, "")
    assert f"cannot reach the meshfed API at {api}" in err


class _Ready(BaseHTTPRequestHandler):
    """Answers /ready with the status the test sets (200 ready, 503 still starting)."""

    status = 200
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_status_asks_each_component_whether_it_is_ready(ready_server: str) -> None:
    rec = ComponentRecord(
        name="zone-1",
        role="zone",
        zone="zone-1",
        argv=["zone-cp", "run"],
        api=ready_server,
        data_dir="",
        log="",
        state=RUNNING,
    )
    _Ready.status = 200
    assert answers_ready(rec)
    assert _Ready.seen[-1] == "/ready?by=meshctl-up"  # marked, so logs can leave it out
    _Ready.status = 503
    assert not answers_ready(rec)
    closed = ComponentRecord(
        name="zone-2",
        role="zone",
        zone="zone-2",
        argv=["zone-cp", "run"],
        api=f"http://127.0.0.1:{free_port()}",
        data_dir="",
        log="",
        state=RUNNING,
    )
    assert not answers_ready(closed, timeout=2)
    app = ComponentRecord(
        name="app",
        role="demo",
        zone="zone-1",
        argv=["app"],
        api="",
        data_dir="",
        log="",
        state=RUNNING,
    )
    assert answers_ready(app)  # nothing to ask: running is all there is
