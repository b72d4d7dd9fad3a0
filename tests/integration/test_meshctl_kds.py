"""`meshctl generate zone-token` and `meshctl delete zone` against a real global and zones.

The global runs with --api-localhost-is-admin, so meshctl on loopback is an admin without a
token (meshctl's own token handling is another change's).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.federation_support import (
    FAST_ZONE,
    Cluster,
    Http,
    Node,
    TokenHttp,
    _wait_ready,
    dataplane,
    eventually,
    kds_ca_path,
    read_admin_token,
)
from tests.support import VENV_BIN, Procs, free_port

pytestmark = pytest.mark.integration


def meshctl(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "meshctl"), "--api", api, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_generated_zone_token_lets_a_new_zone_join_and_bad_flags_are_refused(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(
        procs, tmp_path, zone_names=(), global_args=("--api-localhost-is-admin",)
    )
    cluster.start()
    run = meshctl(cluster.glob.url, "generate", "zone-token", "--zone", "zone-9", "--scope", "kds")
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert run.stdout == token + "\n" and token.count(".") == 2  # the token alone
    token_file = tmp_path / "zone-9.token"
    token_file.write_text(run.stdout)
    port = free_port()
    argv = [
        procs.script("zone-cp"),
        "run",
        "--zone",
        "zone-9",
        "--global-kds",
        f"grpcs://127.0.0.1:{cluster.glob.kds_port}",
        "--api-address",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(tmp_path / "zone-9"),
        "--zone-token-file",
        str(token_file),
        "--kds-ca-file",
        str(kds_ca_path(tmp_path)),
        *FAST_ZONE,
    ]
    node = Node("zone-9", argv, Http(port), tmp_path / "zone-9")
    node.proc = procs.start("zone-9", argv)
    _wait_ready(node)
    eventually(lambda: node.http.get("/_kds")["state"] == "connected", what="zone-9 joins")

    for flags, fragment in (
        (["--zone", "Bad Zone!"], "--zone"),
        (["--zone", "z", "--scope", "kds,root"], "--scope"),
        (["--zone", "z", "--valid-for", "forever"], "--valid-for"),
    ):
        run = meshctl(cluster.glob.url, "generate", "zone-token", *flags)
        assert run.returncode == 2 and fragment in run.stderr, run.stderr
    run = meshctl(cluster.glob.url, "generate")
    assert run.returncode == 2 and "zone-token" in run.stderr
    # A zone's API issues no zone tokens.
    run = meshctl(node.url, "generate", "zone-token", "--zone", "zone-9")
    assert run.returncode == 1, run.stdout


def test_deleting_a_zone_is_refused_while_connected_then_removes_its_inventory(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(
        procs, tmp_path, zone_names=("zone-1",), global_args=("--api-localhost-is-admin",)
    )
    cluster.start()
    cluster.wait_online("zone-1")
    zone = cluster.zones["zone-1"]
    zone_admin = TokenHttp(zone.http.port, read_admin_token(tmp_path))
    eventually(
        lambda: (
            zone_admin.call("PUT", "/meshes/default/dataplanes/web-1", dataplane("web-1"))[0]
            in (200, 201)
        ),
        what="a dataplane in zone-1",
    )
    eventually(lambda: cluster.glob.http.get("/dataplanes")["total"] == 1, what="at the global")

    run = meshctl(cluster.glob.url, "delete", "zone", "zone-1")
    assert run.returncode == 1
    assert "zone zone-1 is still connected" in run.stderr and "offline" in run.stderr
    assert cluster.glob.http.get("/dataplanes")["total"] == 1

    cluster.stop(zone)
    eventually(lambda: cluster.zone_state("zone-1")["state"] == "offline", what="offline")
    run = meshctl(cluster.glob.url, "delete", "zone", "zone-1")
    assert run.returncode == 0, run.stderr
    assert cluster.glob.http.call("GET", "/zones/zone-1")[0] == 404
    eventually(lambda: cluster.glob.http.get("/dataplanes")["total"] == 0, what="inventory gone")
