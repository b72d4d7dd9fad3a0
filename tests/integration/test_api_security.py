"""The REST attacks of issue 11 against a real `global-cp` process, user tokens issued and used
through the real `meshctl`, and the API over HTTPS."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from meshfed.pki.ca import create_mesh_ca
from tests.auth_support import ADMIN_TOKEN_FILE, read_token
from tests.integration.test_global_api import MTP, POLICY, Http, start
from tests.support import VENV_BIN, Procs, free_port, wait_until
from tests.unit.store.etcd_server import make_tls_files

pytestmark = pytest.mark.integration

MESHCTL = str(VENV_BIN / "meshctl")
CA_CERT = "/meshes/default/secrets/default.ca-builtin-cert-ca-1"
CA_KEY = "/meshes/default/secrets/default.ca-builtin-key-ca-1"
MTLS_MESH = {
    "type": "Mesh",
    "name": "default",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}


def anonymous(http: Http) -> Http:
    return Http(int(http.base.rpartition(":")[2]))


def test_rest_attacks_on_a_real_global_are_refused(procs: Procs, tmp_path: Path) -> None:
    _, admin = start(procs, "global", free_port(), tmp_path / "data")
    anon = anonymous(admin)
    status, _, body = admin.call("PUT", "/meshes/default", MTLS_MESH)
    assert status == 200, body
    ca = wait_until(
        lambda: (s := admin.call("GET", CA_KEY))[0] == 200 and s[2],
        timeout=20,
        what="the mesh CA",
    )
    key_data = ca["data"]
    cert_before = admin.call("GET", CA_CERT)[2]

    # Anonymous read of the mesh's secrets: 401, and no key in the answer.
    for path in ("/meshes/default/secrets", CA_KEY, "/secrets", "/global-secrets"):
        status, _, body = anon.call("GET", path)
        assert status == 401, (path, body)
        assert key_data not in json.dumps(body)
    # Anonymous allow-all permission: refused, not stored.
    status, _, body = anon.call("PUT", f"{MTP}/allow-all", POLICY)
    assert status == 401 and "admin user token" in body["detail"]
    assert admin.call("GET", f"{MTP}/allow-all")[0] == 404
    # Anonymous replacement of the CA key by one the attacker holds: refused, unchanged.
    mine = create_mesh_ca("default")
    forged = {
        "type": "Secret",
        "mesh": "default",
        "name": "default.ca-builtin-key-ca-1",
        "data": base64.b64encode(mine.key_pem).decode(),
    }
    assert anon.call("PUT", CA_KEY, forged)[0] == 401
    assert admin.call("GET", CA_KEY)[2]["data"] == key_data
    # Anonymous delete of the CA certificate: refused, still there.
    assert anon.call("DELETE", CA_CERT)[0] == 401
    assert admin.call("GET", CA_CERT)[2] == cert_before
    # Even the admin cannot store a key that does not match the stored certificate.
    status, _, body = admin.call("PUT", CA_KEY, forged)
    assert status == 400 and body["invalid_parameters"][0]["field"] == "data"
    assert "does not match" in body["invalid_parameters"][0]["reason"]
    assert admin.call("GET", CA_KEY)[2]["data"] == key_data
    # A forged or garbage token is refused the same way.
    for header in ("Bearer eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "Basic YWRtaW46YWRtaW4="):
        status, _, body = anon.call("GET", "/secrets", headers={"Authorization": header})
        assert status == 401, body


def meshctl(
    *args: str, token: str = "", config: Path | None = None, api: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_API")}
    if token:
        env["MESHFED_API_TOKEN"] = token
    if api:
        env["MESHFED_API"] = api
    if config is not None:
        env["MESHCTL_CONFIG"] = str(config)
    return subprocess.run(
        [MESHCTL, *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_user_tokens_issued_with_meshctl(procs: Procs, tmp_path: Path) -> None:
    _, admin = start(procs, "global", free_port(), tmp_path / "data")
    assert admin.token
    api = admin.base
    made = meshctl(
        "generate", "user-token", "--name", "jane", "--group", "team-a", "--valid-for", "1h",
        token=admin.token, api=api,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    jane = made.stdout.strip()
    assert jane.count(".") == 2

    # Jane reads, is refused writes (403), and nothing is stored.
    cfg = tmp_path / "jane.yaml"
    added = meshctl(
        "config", "control-planes", "add", "--name", "prod", "--address", api,
        "--auth-type", "tokens", "--auth-conf", f"token={jane}", config=cfg,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert meshctl("get", "meshes", config=cfg).returncode == 0
    doc = tmp_path / "p.yaml"
    doc.write_text(json.dumps(POLICY))
    refused = meshctl("apply", "-f", str(doc), config=cfg)
    assert refused.returncode == 1
    assert "Forbidden" in refused.stderr and "not in group 'mesh-system:admin'" in refused.stderr
    assert admin.call("GET", f"{MTP}/allow-all")[0] == 404
    secrets = meshctl("get", "secrets", config=cfg)
    assert secrets.returncode == 1 and "Forbidden" in secrets.stderr

    # Jane cannot issue tokens; an anonymous caller is told how to authenticate.
    denied = meshctl("generate", "user-token", "--name", "x", "--valid-for", "1h", config=cfg)
    assert denied.returncode == 1 and "Forbidden" in denied.stderr
    anon = meshctl("apply", "-f", str(doc), api=api, config=tmp_path / "none.yaml")
    assert anon.returncode == 1 and "no user token was sent" in anon.stderr
    bad = meshctl(
        "generate", "user-token", "--name", "x", "--valid-for", "1 day", token=admin.token,
        api=api,
    )  # fmt: skip
    assert bad.returncode == 1 and "validFor" in bad.stderr


def _https_ready(url: str, ca: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url + "/ready", timeout=2, context=ctx) as resp:
        return bool(resp.status == 200)


def test_the_api_over_https_with_meshctl_verifying_the_ca(procs: Procs, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    token_file = tmp_path / ADMIN_TOKEN_FILE
    argv = [procs.script("global-cp"), "--api-address", f"127.0.0.1:{port}"]
    argv += ["--kds-address", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")]
    argv += ["--admin-token-file", str(token_file)]
    argv += ["--api-tls-cert", str(tls.server_cert), "--api-tls-key", str(tls.server_key)]
    proc = procs.start("global-https", argv)
    url = f"https://127.0.0.1:{port}"
    wait_until(lambda: proc.alive() and _https_ready(url, tls.ca), timeout=20, what="https")
    assert f"API listening on {url} " in proc.log()
    token = read_token(token_file)

    # Plain HTTP is not served on the port.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)

    cfg = tmp_path / "meshctl.yaml"
    add = ("config", "control-planes", "add", "--name", "tls", "--address", url)
    auth = ("--auth-type", "tokens", "--auth-conf", f"token={token}")
    untrusted = tmp_path / "untrusted.yaml"
    assert meshctl(*add, *auth, config=untrusted).returncode == 0
    refused = meshctl("get", "meshes", config=untrusted)
    assert refused.returncode == 1 and "TLS certificate is not trusted" in refused.stderr
    done = meshctl(*add, *auth, "--ca-cert-file", str(tls.ca), config=cfg)
    assert done.returncode == 0, done.stderr
    got = meshctl("get", "secrets", "-o", "json", config=cfg)
    assert got.returncode == 0, got.stderr
    listed: Any = json.loads(meshctl("get", "meshes", "-o", "json", config=cfg).stdout)
    assert [m["name"] for m in listed] == ["default"]


@pytest.mark.parametrize("flag", ["--api-tls-cert", "--api-tls-key"])
def test_half_a_tls_setting_is_refused_at_start(procs: Procs, tmp_path: Path, flag: str) -> None:
    for program in ("global-cp", "zone-cp"):
        argv = [procs.script(program), "--api-address", f"127.0.0.1:{free_port()}"]
        argv += ["--data-dir", str(tmp_path / program), flag, str(tmp_path / "x.pem")]
        if program == "zone-cp":
            argv += ["--zone", "zone-1"]
        proc = procs.start(f"{program}{flag}", argv)
        assert proc.popen.wait(15) == 2
        other = "key" if flag.endswith("cert") else "cert"
        assert f"needs --api-tls-{other} too (both or neither)" in proc.log()
        assert not (tmp_path / program / "meshfed.db").exists()  # refused before starting


def test_a_federated_zone_refuses_an_admin_token_file(procs: Procs, tmp_path: Path) -> None:
    argv = [procs.script("zone-cp"), "--zone", "zone-1", "--global-kds", "grpc://127.0.0.1:1"]
    argv += ["--admin-token-file", str(tmp_path / "t"), "--data-dir", str(tmp_path / "z")]
    proc = procs.start("zone", argv)
    assert proc.popen.wait(15) == 2
    assert "a federated zone has no admin token of its own" in proc.log()
    assert not (tmp_path / "t").exists()


def test_api_localhost_is_admin_makes_loopback_callers_admins(procs: Procs, tmp_path: Path) -> None:
    _, http = start(procs, "global", free_port(), tmp_path / "data", "--api-localhost-is-admin")
    anon = anonymous(http)
    status, _, body = anon.call("PUT", f"{MTP}/allow-all", POLICY)
    assert status == 201, body
    assert anon.call("GET", "/global-secrets")[0] == 200
    # A token that is sent is still checked, flag or not.
    status, _, _ = anon.call("GET", "/meshes", headers={"Authorization": "Bearer nope"})
    assert status == 401
