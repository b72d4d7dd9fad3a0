"""Entry point of `mesh-dp` (`mesh-dp run ...`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from mesh_dp.app import App, StartError
from mesh_dp.runtime import loop_factory
from mesh_dp.settings import CONFIG, SidecarSettings
from meshfed.config import configure_logging


def main(argv: Sequence[str] | None = None) -> None:
    parser = CONFIG.parser()
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run"],
        default="run",
        help="run: start the sidecar (the default)",
    )
    _, values = CONFIG.load(argv, parser=parser)
    settings = SidecarSettings(**values)
    configure_logging(settings.log_level)

    async def run() -> int:
        return await App(settings).run()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            code = runner.run(run())
    except StartError as exc:
        print(f"mesh-dp: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
