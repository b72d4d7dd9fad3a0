"""Entry point of `zone-cp` (`zone-cp run`, or plain `zone-cp`)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Final

from meshfed.process import load_settings, run_program, run_until_stopped
from zone_cp.app import ZoneControlPlane, log
from zone_cp.settings import CONFIG, check_settings

# CPython collects its youngest generation every 700 net allocations of container objects and
# scans the whole heap every 10 collections of the middle one (once it grew by a quarter). A
# zone holding thousands of Dataplanes, sessions and their configs has millions of objects:
# under registration churn, full scans were 15-20 % of its CPU (decision 180). These make
# young collections 10x and full ones 100x rarer in allocations; garbage without cycles is
# still freed at once by reference counting.
GC_THRESHOLDS: Final = (7_000, 10, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the zone control plane", argv, check=check_settings)
    tune_gc()
    run_program("zone-cp", lambda: run_until_stopped(ZoneControlPlane(settings), log))
