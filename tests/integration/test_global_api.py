"""A real `global-cp` process: CRUD over HTTP, persistence across restarts, shutdown, options."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.auth_support import ADMIN_TOKEN_FILE, bearer, read_token
from tests.support import Proc, Procs, free_port, wait_until

pytestmark = pytest.mark.integration

POLICY: dict[str, Any] = {
    "type": "MeshTrafficPermission",
    "name": "allow-all",
    "mesh": "default",
    "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
    },
}
MTP = "/meshes/default/meshtrafficpermissions"


class Http:
    """Calls carry the admin token when given one (a header of the call overrides it)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in {**(bearer(self.token) if self.token else {}), **(headers or {})}.items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            raw, status, hdrs = err.read(), err.code, dict(err.headers)
        ctype = hdrs.get("Content-Type", "")
        return status, hdrs, json.loads(raw) if ctype.startswith("application/json") else raw


def start(procs: Procs, name: str, port: int, data_dir: Path, *extra: str) -> tuple[Proc, Http]:
    argv = [procs.script("global-cp"), "run", "--api-address", f"127.0.0.1:{port}"]
    argv += ["--kds-address", "127.0.0.1:0"]
    token_file = data_dir / ADMIN_TOKEN_FILE
    argv += ["--admin-token-file", str(token_file)]
    proc = procs.start(name, [*argv, "--data-dir", str(data_dir), *extra])
    http = Http(port)

    def ready() -> bool:
        assert proc.alive(), proc.log()
        return http.call("GET", "/ready")[0] == 200

    wait_until(ready, timeout=20, what=f"{name} /ready")
    http.token = read_token(token_file)  # written before the API listens
    return proc, http


def stop(proc: Proc, sig: int = signal.SIGTERM) -> None:
    proc.signal(sig)
    proc.popen.wait(15)
    assert proc.popen.returncode == 0, proc.log()
    assert "stopped" in proc.log()


def test_crud_and_sqlite_data_survive_a_restart(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc, http = start(procs, "global-1", port, data)

    status, _, info = http.call("GET", "/")
    assert status == 200 and info["mode"] == "global" and info["product"] == "meshfed"

    status, _, body = http.call("PUT", f"{MTP}/allow-all", POLICY)
    assert status == 201, body
    status, headers, created = http.call("GET", f"{MTP}/allow-all")
    assert status == 200
    etag = headers["ETag"]
    status, _, listing = http.call("GET", "/meshtrafficpermissions")
    assert status == 200 and listing["total"] == 1 and listing["next"] is None

    # A bad write is refused and stores nothing.
    status, _, body = http.call("PUT", f"{MTP}/other", {**POLICY, "name": "another"})
    assert status == 400 and body["invalid_parameters"][0]["field"] == "name"
    assert http.call("GET", f"{MTP}/other")[0] == 404

    stop(proc)
    proc2, http2 = start(procs, "global-2", port, data)
    status, headers, after = http2.call("GET", f"{MTP}/allow-all")
    assert status == 200
    assert after == created
    assert headers["ETag"] == etag  # same version: a stale If-Match still fails after restart
    status, _, body = http2.call(
        "PUT", f"{MTP}/allow-all", POLICY, {"If-Match": '"' + "1" * 8 + '"'}
    )
    assert status == 409, body
    status, headers, body = http2.call("PUT", f"{MTP}/allow-all", POLICY, {"If-Match": etag})
    assert status == 200 and headers["ETag"] != etag

    status, _, body = http2.call("DELETE", f"{MTP}/allow-all")
    assert status == 200
    assert http2.call("DELETE", f"{MTP}/allow-all")[0] == 404
    stop(proc2, signal.SIGINT)


def test_default_mesh_created_on_first_start_only(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc, http = start(procs, "first", port, data)
    status, _, meshes = http.call("GET", "/meshes")
    assert status == 200
    assert [m["name"] for m in meshes["items"]] == ["default"]
    assert meshes["items"][0]["labels"] == {"kuma.io/origin": "global"}
    assert http.call("DELETE", "/meshes/default")[0] == 200
    stop(proc)

    proc, http = start(procs, "second", port, data)
    assert http.call("GET", "/meshes")[2]["total"] == 0
    stop(proc)

    proc, http = start(procs, "disabled", free_port(), tmp_path / "fresh", "--default-mesh=false")
    assert http.call("GET", "/meshes")[2]["total"] == 0
    stop(proc)


def test_openapi_metrics_and_env_configuration(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    proc = procs.start(
        "global-env",
        [procs.script("global-cp")],  # plain `global-cp` means `run`
        env={
            "MESHFED_API_ADDRESS": f"127.0.0.1:{port}",
            # Never the default KDS port: another meshfed on this host may hold it.
            "MESHFED_KDS_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESHFED_STORE": "memory",
            "MESHFED_MAX_BODY_BYTES": "2KiB",
            "MESHFED_ADMIN_TOKEN_FILE": str(tmp_path / ADMIN_TOKEN_FILE),
        },
    )
    http = Http(port)
    wait_until(lambda: proc.alive() and http.call("GET", "/ready")[0] == 200, timeout=20)
    http.token = read_token(tmp_path / ADMIN_TOKEN_FILE)

    status, _, doc = http.call("GET", "/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert "put" in doc["paths"]["/meshes/{mesh}/meshtrafficpermissions/{name}"]

    big = {**POLICY, "spec": {**POLICY["spec"], "pad": "x" * 4096}}
    status, _, body = http.call("PUT", f"{MTP}/allow-all", big)
    assert status == 413 and body["type"] == "/std-errors"

    status, _, text = http.call("GET", "/metrics")
    assert status == 200
    metrics = text.decode()
    assert 'route="/meshes/{mesh}/meshtrafficpermissions/{name}",status="413"' in metrics
    assert 'meshfed_resources{type="Mesh"} 1.0' in metrics
    stop(proc)
    assert "/openapi.json" in proc.log()  # access log: one line per request


def test_bad_option_exits_2(procs: Procs) -> None:
    proc = procs.start("bad", [procs.script("global-cp"), "--api-address", "nonsense"])
    assert proc.popen.wait(15) == 2
    assert "expected HOST:PORT" in proc.log()


def test_unusable_address_or_data_dir_exits_1_with_a_reason(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    first, _ = start(procs, "holder", port, data)
    # Same port: cannot listen.
    busy = procs.start(
        "busy",
        [
            procs.script("global-cp"),
            "--api-address",
            f"127.0.0.1:{port}",
            "--kds-address",
            f"127.0.0.1:{free_port()}",
            "--store",
            "memory",
        ],
    )
    assert busy.popen.wait(15) == 1
    assert "cannot start" in busy.log()
    # Same data directory: the store is locked by the first process.
    locked = procs.start(
        "locked",
        [
            procs.script("global-cp"),
            "--api-address",
            f"127.0.0.1:{free_port()}",
            "--kds-address",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(data),
        ],
    )
    assert locked.popen.wait(15) == 1
    assert "cannot start" in locked.log()
    assert first.alive()
    stop(first)
