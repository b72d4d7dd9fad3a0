"""The command line itself, run in-process: usage errors and an API that is not there."""

from __future__ import annotations

import io
import os

import pytest

from meshctl.main import run
from tests.support import free_port


def _run(*argv: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    # The session's meshctl config (tests/conftest.py), never the user's.
    environ = {"MESHCTL_CONFIG": os.environ["MESHCTL_CONFIG"], **(env or {})}
    code = run(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err, environ=environ)
    return code, out.getvalue(), err.getvalue()


def _dead_api() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_unknown_type_lists_known_types_and_exits_2() -> None:
    code, out, err = _run("get", "bananas", "--api", _dead_api())
    assert code == 2
    assert out == ""
    assert err.startswith("Error: unknown resource type 'bananas'")
    assert "  MeshTimeout (meshtimeouts, mt)" in err.splitlines()


def test_unreachable_api_is_one_clear_line_naming_the_url() -> None:
    api = _dead_api()
    code, out, err = _run("get", "meshes", env={"MESHFED_API": api})
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"Error: cannot reach the meshfed API at {api}: connection refused "
        "(is the control plane running?)"
    ]


def test_global_option_after_the_subcommand_wins_over_env() -> None:
    api = _dead_api()
    code, _, err = _run("delete", "mtp", "x", "--api", api, env={"MESHFED_API": "http://h:1"})
    assert code == 1
    assert api in err


def test_scope_flags_are_checked_before_any_request() -> None:
    assert _run("get", "zones", "--mesh", "m")[0] == 2
    assert _run("get", "zones", "--all-meshes")[0] == 2
    assert _run("get", "mtp", "x", "--all-meshes")[0] == 2
    assert _run("delete", "mesh", "m", "--mesh", "m")[0] == 2


def test_apply_input_errors_apply_nothing() -> None:
    api = _dead_api()  # never contacted: the input is rejected first
    code, _, err = _run("apply", "-f", "-", "--api", api, stdin="type: [\n")
    assert code == 1
    assert err.startswith("Error: <stdin>: not valid YAML or JSON")
    code, _, err = _run("apply", "-f", "-", "--api", api, stdin="---\n")
    assert (code, err) == (1, "Error: no resources found in -\n")
    code, _, err = _run("apply", "-f", "/nonexistent/x.yaml", "--api", api)
    assert (code, err) == (1, "Error: cannot read /nonexistent/x.yaml: No such file or directory\n")
    code, _, err = _run("apply", "-f", "-", "-v", "oops", "--api", api, stdin="a: b")
    assert code == 2


def test_bad_command_lines_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run()[0] == 2
    assert _run("get")[0] == 2
    assert _run("get", "mtp", "--size", "0")[0] == 2
    assert _run("get", "mtp", "-o", "xml")[0] == 2
    assert _run("--api", "ftp://x", "get", "mtp")[0] == 2
    assert _run("--timeout", "-1", "get", "mtp")[0] == 2
    assert _run("get", "mtp", "--timeout", "nan")[0] == 2


def test_version_without_a_server_is_not_an_error() -> None:
    code, out, _ = _run("version", "--api", _dead_api())
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Client: meshctl")
    assert lines[1].startswith("Server: unavailable (cannot reach the meshfed API")
