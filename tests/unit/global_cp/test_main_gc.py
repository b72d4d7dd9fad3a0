"""global-cp runs with zone-cp's rarer garbage collections (decisions 180, 183)."""

from __future__ import annotations

import gc

import pytest

from global_cp import main as global_main
from zone_cp import main as zone_main


def test_global_cp_runs_with_the_zones_gc_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(global_main, "load_settings", lambda *a, **k: object())
    monkeypatch.setattr(
        global_main, "run_program", lambda prog, run: seen.append((*gc.get_threshold(),))
    )
    try:
        global_main.main([])
    finally:
        gc.set_threshold(*saved)
    assert seen == [zone_main.GC_THRESHOLDS]
