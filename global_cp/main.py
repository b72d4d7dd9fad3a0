"""Entry point of `global-cp` (`global-cp run`, or plain `global-cp`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from global_cp.app import run
from global_cp.settings import CONFIG, GlobalSettings
from meshfed.config import configure_logging


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the optional speed-up), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> None:
    parser = CONFIG.parser()
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run"],
        default="run",
        help="run: start the global control plane (the default)",
    )
    _, values = CONFIG.load(argv, parser=parser)
    settings = GlobalSettings(**values)
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code = runner.run(run(settings))
    sys.exit(code)
