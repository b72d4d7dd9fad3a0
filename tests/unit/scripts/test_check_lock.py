"""The lock check (`make lock-check`, run by `make test`) catches every way a lock goes stale."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "check_lock.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lock", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_lock = _load()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scratch copy of pyproject.toml and the locks, to make stale on purpose."""
    (tmp_path / "requirements").mkdir()
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for lock in ("main.txt", "dev.txt"):
        shutil.copy(REPO / "requirements" / lock, tmp_path / "requirements" / lock)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_committed_locks_agree_with_pyproject() -> None:
    assert check_lock.check(REPO) == []


def test_a_new_dependency_not_in_the_lock(repo: Path) -> None:
    _edit(repo / "pyproject.toml", "dependencies = [\n", 'dependencies = [\n    "left-pad>=1",\n')
    problems = check_lock.check(repo)
    assert any("does not pin left-pad" in p and "main.txt" in p for p in problems)
    assert any("does not pin left-pad" in p and "dev.txt" in p for p in problems)


def test_a_new_dev_dependency_not_in_the_dev_lock(repo: Path) -> None:
    _edit(repo / "pyproject.toml", "dev = [\n", 'dev = [\n    "left-pad>=1",\n')
    problems = check_lock.check(repo)
    assert problems == ["requirements/dev.txt does not pin left-pad (left-pad>=1)"]


def test_a_range_that_excludes_the_pinned_version(repo: Path) -> None:
    _edit(repo / "pyproject.toml", '"grpcio>=1.70,<2"', '"grpcio>=99"')
    problems = check_lock.check(repo)
    assert any("pins grpcio==" in p and "outside pyproject's grpcio>=99" in p for p in problems)


def test_a_build_backend_not_in_the_lock(repo: Path) -> None:
    _edit(repo / "pyproject.toml", 'requires = ["setuptools>=68"]', 'requires = ["flit-core>=3"]')
    assert any("does not pin flit-core" in p for p in check_lock.check(repo))


def test_a_pin_without_hash_or_a_range_in_the_lock(repo: Path) -> None:
    dev = repo / "requirements" / "dev.txt"
    dev.write_text(dev.read_text() + "left-pad==1.0\nright-pad>=2\n")
    problems = check_lock.check(repo)
    assert "requirements/dev.txt: left-pad==1.0 has no hash" in problems
    assert any("is not an exact pin: 'right-pad>=2'" in p for p in problems)


def test_main_and_dev_disagreeing_on_a_version(repo: Path) -> None:
    main = repo / "requirements" / "main.txt"
    version = check_lock.read_pins(main.read_text())[0]["pyyaml"]
    _edit(main, f"pyyaml=={version}", "pyyaml==6.0.0")
    assert any(p.startswith("pyyaml is 6.0.0 in main.txt but") for p in check_lock.check(repo))


def test_a_missing_lock(repo: Path) -> None:
    (repo / "requirements" / "main.txt").unlink()
    assert "requirements/main.txt is missing" in check_lock.check(repo)


def test_the_command_exits_non_zero_and_names_the_fix(repo: Path) -> None:
    _edit(repo / "pyproject.toml", '"grpcio>=1.70,<2"', '"grpcio>=99"')
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(repo)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "run 'make lock'" in run.stderr
    ok = subprocess.run([sys.executable, str(SCRIPT), str(REPO)], capture_output=True, check=False)
    assert ok.returncode == 0
