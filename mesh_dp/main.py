"""Entry point of `mesh-dp` (`mesh-dp run ...`)."""

from __future__ import annotations

from collections.abc import Sequence

from mesh_dp.app import App, StartError
from mesh_dp.malloc import one_arena
from mesh_dp.settings import CONFIG
from meshfed.process import load_settings, run_program


def main(argv: Sequence[str] | None = None) -> None:
    one_arena()  # before any thread allocates
    settings = load_settings(CONFIG, "the sidecar", argv)
    run_program("mesh-dp", lambda: App(settings).run(), start_errors=(StartError,))
