"""`meshctl apply` against a zone API: the server judges every document, even unchanged ones."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.federation_support import Cluster, mt_path, timeout_policy
from tests.support import VENV_BIN, Procs, wait_until

pytestmark = pytest.mark.integration


def test_applying_a_synced_policy_to_a_zone_says_where_to_apply_it(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    cluster.start()
    policy = timeout_policy("synced")
    cluster.glob.http.put(mt_path("synced"), policy)
    zone = cluster.zones["zone-1"]
    wait_until(lambda: zone.http.call("GET", mt_path("synced"))[0] == 200, what="policy in zone")

    # The zone's copy equals the document, so there is nothing to write; a user must still be
    # told that policies are applied at the global, not "unchanged".
    doc = tmp_path / "p.yaml"
    doc.write_text(
        "type: MeshTimeout\nname: synced\nmesh: default\nspec:\n"
        "  targetRef: {kind: Mesh}\n"
        "  to:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 20s}\n"
    )
    assert cluster.glob.http.get(mt_path("synced"))["spec"] == policy["spec"]
    run = subprocess.run(
        [str(VENV_BIN / "meshctl"), "--api", zone.url, "apply", "-f", str(doc)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **zone.http.meshctl_env()},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "unchanged" not in run.stdout
    assert "global" in run.stderr.lower(), run.stderr
