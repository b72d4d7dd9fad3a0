"""zone-cp runs with rarer garbage collections (decision 180)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from zone_cp import main as zone_main


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_zone_cp_starts_with_its_gc_thresholds(
    monkeypatch: pytest.MonkeyPatch, thresholds: None
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    seen: list[tuple[int, ...]] = []

    def run_program(prog: str, main: Any) -> None:
        seen.append(gc.get_threshold())

    monkeypatch.setattr(zone_main, "load_settings", lambda *a, **k: object())
    monkeypatch.setattr(zone_main, "run_program", run_program)
    zone_main.main([])
    assert seen == [zone_main.GC_THRESHOLDS]
    young, middle, full = zone_main.GC_THRESHOLDS
    assert young * middle * full >= 100 * 700 * 10 * 10  # full scans 100x rarer at least
