"""Entry point of `zone-cp` (`zone-cp run`, or plain `zone-cp`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from global_cp.main import _loop_factory
from meshfed.config import configure_logging
from zone_cp.app import run
from zone_cp.settings import CONFIG, ZoneSettings


def main(argv: Sequence[str] | None = None) -> None:
    parser = CONFIG.parser()
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run"],
        default="run",
        help="run: start the zone control plane (the default)",
    )
    _, values = CONFIG.load(argv, parser=parser)
    settings = ZoneSettings(**values)
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(run(settings))
    sys.exit(code)
