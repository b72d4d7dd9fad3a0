"""Entry point of `zone-cp` (`zone-cp run`, or plain `zone-cp`)."""

from __future__ import annotations

from collections.abc import Sequence

from meshfed.process import load_settings, run_program, run_until_stopped
from zone_cp.app import ZoneControlPlane, log
from zone_cp.settings import CONFIG, check_settings


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the zone control plane", argv, check=check_settings)
    run_program("zone-cp", lambda: run_until_stopped(ZoneControlPlane(settings), log))
