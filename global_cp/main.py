"""Entry point of `global-cp` (`global-cp run`, or plain `global-cp`)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Final

from global_cp.app import GlobalControlPlane, log
from global_cp.settings import CONFIG, check_settings
from meshfed.process import load_settings, run_program, run_until_stopped

# As zone-cp's (decision 180): a global holding every zone's Dataplanes and insights has
# millions of objects, which CPython's default thresholds scan whole every ten middle
# collections; measured with benchmarks/scale.py (decision 183).
GC_THRESHOLDS: Final = (7_000, 10, 100)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the global control plane", argv, check=check_settings)
    gc.set_threshold(*GC_THRESHOLDS)
    run_program("global-cp", lambda: run_until_stopped(GlobalControlPlane(settings), log))
