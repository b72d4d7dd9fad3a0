"""Entry point of `global-cp` (`global-cp run`, or plain `global-cp`)."""

from __future__ import annotations

from collections.abc import Sequence

from global_cp.app import GlobalControlPlane, log
from global_cp.settings import CONFIG, check_settings
from meshfed.process import load_settings, run_program, run_until_stopped


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(CONFIG, "the global control plane", argv, check=check_settings)
    run_program("global-cp", lambda: run_until_stopped(GlobalControlPlane(settings), log))
