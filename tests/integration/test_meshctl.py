"""The real `meshctl` executable against a real `global-cp` process on a free loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.auth_support import ADMIN_TOKEN_FILE, read_token
from tests.support import VENV_BIN, Procs, free_port, wait_until

pytestmark = pytest.mark.integration

POLICIES = """\
type: Mesh
name: prod
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: MeshTrafficPermission
name: allow-all
mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Allow
---
type: MeshTimeout
name: timeout-global
mesh: prod
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      idleTimeout: 20s
      connectionTimeout: 2s
"""

RETRY = """\
type: MeshRetry
name: retry-{n}
mesh: default
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      tcp:
        maxConnectAttempt: {n}
"""

INVALID = """\
type: MeshTrafficPermission
name: bad
mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      action: Permit
"""


@dataclass
class Ctl:
    """Runs the installed `meshctl` against one control plane."""

    exe: str
    api: str
    server_log: Callable[[], str] = str
    token: str = ""  # the admin token, sent via MESHFED_API_TOKEN
    config: str = ""  # MESHCTL_CONFIG: a file of this test, never the user's

    def __call__(self, *args: str, stdin: str = "", api: str | None = None) -> Result:
        proc = subprocess.run(
            [self.exe, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "MESHFED_API": api or self.api,
                "MESHFED_API_TOKEN": self.token,
                **({"MESHCTL_CONFIG": self.config} if self.config else {}),
            },
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, stdin: str = "") -> str:
        res = self(*args, stdin=stdin)
        assert res.code == 0, f"meshctl {' '.join(args)} failed: {res}"
        assert "Traceback" not in res.err
        return res.out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


@dataclass
class Result:
    code: int
    out: str
    err: str


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of an aligned table, keyed by header; cells are cut at the headers' columns."""
    header, *lines = text.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    return [
        {n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines
    ]


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url + "/ready", timeout=2) as resp:
        return bool(resp.status == 200)


@pytest.fixture
def ctl(procs: Procs, tmp_path: Path) -> Iterator[Ctl]:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    cp = procs.start(
        "global-cp",
        [
            procs.script("global-cp"),
            "--api-address",
            f"127.0.0.1:{port}",
            "--kds-address",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            "--admin-token-file",
            str(tmp_path / ADMIN_TOKEN_FILE),
        ],
    )

    def ready() -> bool:
        assert cp.alive(), f"global-cp exited:\n{cp.log()}"
        return _ready(api)

    wait_until(ready, timeout=20, what="global-cp /ready")
    token = read_token(tmp_path / ADMIN_TOKEN_FILE)
    yield Ctl(procs.script("meshctl"), api, cp.log, token, str(tmp_path / "meshctl.yaml"))


def test_apply_file_then_get_as_table_yaml_and_json(ctl: Ctl, tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    assert ctl.ok("apply", "-f", str(path)).splitlines() == [
        'Mesh "prod" created',
        'MeshTrafficPermission "allow-all" created',
        'MeshTimeout "timeout-global" created',
    ]

    rows = parse_table(ctl.ok("get", "meshtrafficpermissions"))
    assert len(rows) == 1
    assert (rows[0]["MESH"], rows[0]["NAME"]) == ("default", "allow-all")
    assert rows[0]["AGE"].endswith(("s", "m"))

    meshes = parse_table(ctl.ok("get", "meshes"))
    assert [row["NAME"] for row in meshes] == ["default", "prod"]
    assert "MESH" not in meshes[0]  # Mesh is not mesh-scoped

    one = ctl.json("get", "mt", "timeout-global", "--mesh", "prod")
    assert one["type"] == "MeshTimeout"
    assert (one["mesh"], one["name"]) == ("prod", "timeout-global")
    assert one["spec"]["to"][0]["default"] == {"idleTimeout": "20s", "connectionTimeout": "2s"}
    assert one["creationTime"]

    listed = yaml.safe_load(ctl.ok("get", "MeshTimeout", "-m", "prod", "-o", "yaml"))
    assert listed == [one]
    assert ctl.json("get", "mt") == []  # the default mesh has none
    assert ctl.json("get", "mtp", "--all-meshes")[0]["name"] == "allow-all"


def test_apply_from_stdin_reports_created_unchanged_configured(ctl: Ctl) -> None:
    doc = RETRY.format(n=3)
    assert ctl.ok("apply", "-f", "-", stdin=doc) == 'MeshRetry "retry-3" created\n'
    assert ctl.ok("apply", "-f", "-", stdin=doc) == 'MeshRetry "retry-3" unchanged\n'
    changed = doc.replace("maxConnectAttempt: 3", "maxConnectAttempt: 7")
    assert ctl.ok("apply", "-f", "-", stdin=changed) == 'MeshRetry "retry-3" configured\n'
    stored = ctl.json("get", "meshretry", "retry-3")
    assert stored["spec"]["to"][0]["default"]["tcp"]["maxConnectAttempt"] == 7


def test_json_input_and_variables(ctl: Ctl) -> None:
    docs = [yaml.safe_load(RETRY.format(n=n)) for n in (1, 2)]
    docs[1]["mesh"] = "{{ mesh }}"
    out = ctl.ok("apply", "-f", "-", "-v", "mesh=default", stdin=json.dumps(docs))
    assert out.splitlines() == ['MeshRetry "retry-1" created', 'MeshRetry "retry-2" created']
    assert [r["name"] for r in ctl.json("get", "mr")] == ["retry-1", "retry-2"]


def test_get_yaml_applies_back_unchanged(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", "-", stdin=POLICIES)
    before = ctl.json("get", "mtp", "allow-all")
    exported = ctl.ok("get", "mtp", "allow-all", "-o", "yaml")
    assert yaml.safe_load(exported) == before
    assert ctl.ok("apply", "-f", "-", stdin=exported) == (
        'MeshTrafficPermission "allow-all" unchanged\n'
    )
    assert ctl.json("get", "mtp", "allow-all") == before  # not even modificationTime moved

    mesh_yaml = ctl.ok("get", "mesh", "prod", "-o", "yaml")
    assert ctl.ok("apply", "-f", "-", stdin=mesh_yaml) == 'Mesh "prod" unchanged\n'


def test_delete(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", "-", stdin=RETRY.format(n=1))
    assert ctl.ok("delete", "meshretries", "retry-1") == (
        'MeshRetry "retry-1" deleted from mesh "default"\n'
    )
    gone = ctl("get", "mr", "retry-1")
    assert gone.code == 1
    assert gone.err.startswith("Error: ")
    assert "Traceback" not in gone.err
    again = ctl("delete", "mr", "retry-1")
    assert again.code == 1
    assert again.err.startswith("Error: ")
    assert ctl.json("get", "mr") == []


def test_dry_run_validates_and_stores_nothing(ctl: Ctl) -> None:
    mesh_and_policy = POLICIES.rsplit("---", 1)[0]  # the MeshTimeout would need mesh "prod"
    out = ctl.ok("apply", "--dry-run", "-f", "-", stdin=mesh_and_policy)
    assert out.splitlines() == [
        'Mesh "prod" created (dry run)',
        'MeshTrafficPermission "allow-all" created (dry run)',
    ]
    assert ctl.json("get", "mtp") == []
    assert [m["name"] for m in ctl.json("get", "meshes")] == ["default"]

    ctl.ok("apply", "-f", "-", stdin=RETRY.format(n=1))
    before = ctl.json("get", "mr", "retry-1")
    changed = RETRY.format(n=1).replace("maxConnectAttempt: 1", "maxConnectAttempt: 9")
    out = ctl.ok("apply", "--dry-run", "-f", "-", stdin=changed)
    assert out == 'MeshRetry "retry-1" configured (dry run)\n'
    assert ctl.json("get", "mr", "retry-1") == before

    bad = ctl("apply", "--dry-run", "-f", "-", stdin=INVALID)
    assert bad.code == 1
    assert any(x.startswith("  spec.from[0].default.action: ") for x in bad.err.splitlines())


def test_invalid_policy_prints_field_paths_and_stores_nothing(ctl: Ctl) -> None:
    valid = RETRY.format(n=2)
    bad_kind = INVALID.replace("name: bad", "name: bad-kind").replace(
        "targetRef:\n    kind: Mesh", "targetRef:\n    kind: Galaxy", 1
    )
    res = ctl("apply", "-f", "-", stdin="---\n".join([INVALID, valid, bad_kind]))
    assert res.code == 1
    assert res.out == 'MeshRetry "retry-2" created\n'  # valid documents still apply
    assert "Traceback" not in res.err
    lines = res.err.splitlines()
    first = lines.index(next(x for x in lines if 'MeshTrafficPermission "bad" ' in x))
    assert lines[first].startswith('Error: MeshTrafficPermission "bad" (document 1 of <stdin>)')
    assert any(x.startswith("  spec.from[0].default.action: ") for x in lines)
    assert any(x.startswith("  spec.targetRef.kind: ") for x in lines)
    assert any('MeshTrafficPermission "bad-kind" (document 3 of <stdin>)' in x for x in lines)
    assert ctl.json("get", "mtp") == []
    # The summary says what went through and what did not (nothing is rolled back).
    assert lines[-3:] == [
        "1 of 3 documents applied (2 failed; apply goes on past a failing document and rolls "
        "nothing back)",
        '  applied: MeshRetry "retry-2" created',
        '  not applied: MeshTrafficPermission "bad" (document 1 of <stdin>), '
        'MeshTrafficPermission "bad-kind" (document 3 of <stdin>)',
    ]


def test_unknown_type_in_a_document_and_on_the_command_line(ctl: Ctl) -> None:
    res = ctl("apply", "-f", "-", stdin="type: MeshBanana\nname: x\nmesh: default\n")
    assert res.code == 1
    assert "unknown type 'MeshBanana'" in res.err
    res = ctl("get", "meshbananas")
    assert res.code == 2
    assert "MeshTrafficPermission (meshtrafficpermissions, mtp)" in res.err


def test_lists_follow_next_across_pages(ctl: Ctl) -> None:
    count = 105  # more than the server's default page of 100
    ctl.ok("apply", "-f", "-", stdin="---\n".join(RETRY.format(n=n) for n in range(1, count + 1)))
    names = [r["name"] for r in ctl.json("get", "meshretries")]
    assert "GET /meshes/default/meshretries?" in ctl.server_log()  # a `next` link was followed
    assert sorted(names) == sorted(f"retry-{n}" for n in range(1, count + 1))
    assert len(parse_table(ctl.ok("get", "mr"))) == count

    first = ctl("get", "mr", "--size", "10", "-o", "json")
    assert first.code == 0
    assert len(json.loads(first.out)) == 10
    assert f"showing 10 of {count}" in first.err


def test_version_reports_the_server(ctl: Ctl) -> None:
    lines = ctl.ok("version").splitlines()
    assert lines[0].startswith("Client: meshctl")
    assert lines[1].startswith("Server: meshfed ")
    assert "mode: global" in lines[1]


def test_unreachable_api_is_one_clear_line() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    ctl = Ctl(str(VENV_BIN / "meshctl"), dead)
    res = ctl("get", "meshes", api=dead)
    assert res.code == 1
    assert res.out == ""
    assert res.err.splitlines() == [
        f"Error: cannot reach the meshfed API at {dead}: connection refused "
        "(is the control plane running?)"
    ]
    res = ctl("apply", "-f", "-", stdin=RETRY.format(n=1), api=dead)
    assert (res.code, len(res.err.splitlines())) == (1, 1)
