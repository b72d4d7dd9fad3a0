"""Chaos: a zone whose store cannot be written (issue 16, "a zone whose store cannot write").

zone-1 runs in a mount namespace of its own (`unshare --mount`) with its data directory on a
small tmpfs, which the test then fills: SQLite's writes fail with "database or disk is full"
while its reads work, as on a full or failing disk. Nothing of the host is touched; the tmpfs
goes with the process. (A read-only bind remount is refused while SQLite holds the database
open for writing, so a full filesystem is how a running zone loses its writes.)

While full: the zone stays up; its API answers writes 503 naming the cause and serves reads;
the global's policies wait. Once there is room again: writes succeed, what the global sent
meanwhile arrives, and every write acknowledged before, during or after is there.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.federation_support import (
    Cluster,
    Http,
    dataplane,
    eventually,
    mt_path,
    timeout_policy,
)
from tests.support import Procs

pytestmark = pytest.mark.integration

TMPFS_SIZE = "16m"
CHUNK = b"\0" * (256 * 1024)


def _can_unshare() -> bool:
    """A private mount namespace needs unshare(1) and CAP_SYS_ADMIN (CI runs as root)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


if not _can_unshare():  # pragma: no cover - CI has both
    pytest.skip("needs a private mount namespace (unshare --mount)", allow_module_level=True)


def in_own_tmpfs(argv: list[str], data_dir: Path) -> list[str]:
    """`argv` exec'd (same PID) in a private mount namespace with `data_dir` on a tmpfs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o size={TMPFS_SIZE} meshfed-test "$0" && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(data_dir),
        *argv,
    ]


def fill(path: Path) -> None:
    """Writes `path` until its filesystem is full."""
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(CHUNK)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # The last bytes too: a small write may still fit where a chunk did not.
    with path.open("ab", buffering=0) as f:
        for size in (4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


def at_global(g: Http, name: str) -> bool:
    """The zone's Dataplane `name` reached the global (which names it after its zone)."""
    return {d["labels"]["kuma.io/display-name"] for d in g.items("/dataplanes")} >= {name}


def test_a_zone_whose_store_is_full_refuses_writes_clearly_serves_reads_and_recovers(
    procs: Procs, tmp_path: Path
) -> None:
    cluster = Cluster.create(procs, tmp_path, zone_names=("zone-1",))
    zone = cluster.zones["zone-1"]
    zone.argv = in_own_tmpfs(zone.argv, zone.data_dir)
    cluster.start()
    cluster.wait_online("zone-1")
    g, z = cluster.glob.http, zone.http
    eventually(z.accepts_admin, what="the global's user-token keys in the zone")
    assert z.call("PUT", "/meshes/default/dataplanes/before", dataplane("before"))[0] == 201
    eventually(lambda: at_global(g, "before"), what="before at the global")

    assert zone.proc is not None
    # The zone's view of its data directory: the tmpfs in its namespace, not the host's dir.
    filler = Path(f"/proc/{zone.proc.pid}/root") / zone.data_dir.relative_to("/") / "filler"
    fill(filler)
    acknowledged = ["before"]
    refused: list[tuple[str, int, str]] = []

    def refused_now() -> bool:
        name = f"during-{len(acknowledged) + len(refused)}"
        code, body = z.call("PUT", f"/meshes/default/dataplanes/{name}", dataplane(name))
        if code in (200, 201):  # room the database file still had
            acknowledged.append(name)
            return False
        refused.append((name, code, str(body)))
        return True

    eventually(refused_now, timeout=20, what="a write refused")
    _, code, body = refused[-1]
    assert code == 503, body
    assert "disk is full" in body, body
    # Reads keep serving; the global's writes wait; the zone stays up.
    assert z.call("GET", "/meshes/default/dataplanes/before")[0] == 200
    assert {d["name"] for d in z.items("/meshes/default/dataplanes")} >= set(acknowledged)
    # A policy from the global cannot be stored either: the zone's KDS session ends naming
    # why (`/_kds` lastError) and starts again with backoff, the process staying up.
    g.put(mt_path("while-full"), timeout_policy("while-full"))
    eventually(
        lambda: "disk is full" in str(z.get("/_kds")["lastError"]),
        what="the KDS apply refused, named in /_kds",
    )
    assert z.call("GET", mt_path("while-full"))[0] == 404
    assert zone.alive()

    filler.unlink()  # room again
    eventually(
        lambda: (
            z.call("PUT", "/meshes/default/dataplanes/after", dataplane("after"))[0] in (200, 201)
        ),
        what="a write once there is room",
    )
    acknowledged.append("after")
    eventually(lambda: z.call("GET", mt_path("while-full"))[0] == 200, what="the global's policy")
    for name in acknowledged:
        eventually(
            lambda n=name: at_global(g, n),
            what=f"{name} at the global",
        )
    assert zone.alive()
    # A refused write was not applied: it is not half there.
    stored = {d["name"] for d in z.items("/meshes/default/dataplanes")}
    assert stored >= set(acknowledged) and not stored & {name for name, _, _ in refused}
