"""mesh_dp/malloc.py: one glibc arena, and the heap's free pages given back at most once
every TRIM_SECONDS whichever exporter thread asks (decisions 161, 178)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from mesh_dp import malloc


def test_trim_runs_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(pad: int) -> int:
        calls.append(pad)
        return 1

    monkeypatch.setattr(malloc, "_trim", fake)
    monkeypatch.setattr(malloc, "_next_trim", 0.0)
    assert malloc.trim(100.0)
    assert not malloc.trim(100.5)
    assert malloc.trim(100.0 + malloc.TRIM_SECONDS)
    assert calls == [0, 0]


def test_no_glibc_no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "_trim", None)
    monkeypatch.setattr(malloc, "_next_trim", 0.0)
    assert not malloc.trim(100.0)


def test_the_sidecars_start_finds_glibcs_trim() -> None:
    """On glibc: one arena, a trim, then none within TRIM_SECONDS; elsewhere (macOS, musl)
    neither, and the sidecar runs on as it is."""
    code = "from mesh_dp import malloc; print(malloc.one_arena(), malloc.trim(), malloc.trim())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == (["True", "True", "False"] if glibc else ["False"] * 3)


def test_the_heap_is_trimmed_after_each_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision 185: App._apply gives the heap's free pages back once the config is in."""
    import asyncio
    from types import SimpleNamespace

    from mesh_dp import app

    done: list[str] = []

    async def step(*_: object) -> None:
        done.append("applied")

    def trim() -> bool:
        done.append("trim")
        return True

    monkeypatch.setattr(app, "trim", trim)
    stub = SimpleNamespace(
        sidecar=SimpleNamespace(apply=step),
        metrics=SimpleNamespace(update=step),
        pushes=SimpleNamespace(update=step),
        passthrough=None,
    )
    asyncio.run(app.App._apply(stub, SimpleNamespace(metrics=None)))  # type: ignore[arg-type]
    assert done == ["applied", "applied", "applied", "trim"]
