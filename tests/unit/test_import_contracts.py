"""The dependency rule is enforced: the import contracts in pyproject.toml hold on this tree,
and each one breaks when a scratch copy of the tree gets the import it forbids (so a contract
that silently checks nothing would fail here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("meshfed", "global_cp", "zone_cp", "zone_ingress", "mesh_dp", "meshctl")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages under `root` (first on the path, before the installed tree)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("zone_ingress/app.py", "import mesh_dp.sidecar", "a product imports no other product"),
        ("meshctl/up/plan.py", "import zone_cp.vipbook", "a product imports no other product"),
        ("meshfed/config.py", "import global_cp.settings", "the core imports no product"),
        ("meshfed/store/base.py", "import meshfed.kds.messages", "the core's layers"),
        ("meshfed/resources/model.py", "import meshfed.store.base", "the core's layers"),
        ("meshfed/proxy/admin.py", "import meshfed.store.base", "the proxy runtime stays off"),
        ("meshfed/proxy/admin.py", "import grpc", "the proxies load none"),
        ("zone_ingress/server.py", "import prometheus_client", "the proxies load none"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    # (An import low in the core may break other contracts too, through what it pulls in.)
    broken = [row for row in out.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), out.stdout
