"""How the long-running programs (global-cp, zone-cp, zone-ingress, mesh-dp) live as processes:
settings from the command line, the event loop, SIGTERM/SIGINT as a request to stop, and the
exit status. What really differs between them (the ingress's drain, a sidecar's config source,
leader election) stays in each program.

Exit statuses: 0 after a clean stop; 1 when a control plane could not start (a port taken, a
store unreachable: logged as "cannot start: ..."); 2 for a setting that makes starting
impossible (printed as "<program>: ..." on stderr, like argparse's own errors).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import NoReturn, Protocol, TypeVar

from meshfed.config import Config, ConfigError, configure_logging

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_BAD_SETTING = 2


class HasLogLevel(Protocol):
    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...


S = TypeVar("S", bound=HasLogLevel)


def load_settings(
    config: Config[S],
    starts: str,
    argv: Sequence[str] | None = None,
    check: Callable[[S], None] | None = None,
) -> S:
    """The program's settings from flags, environment and file (exit 2 on a bad value), with
    logging set up at their level. `starts` says what `run` starts, for `--help`; `check`
    refuses combinations of values (ConfigError: exit 2, as a bad value)."""
    parser = config.parser()
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run"],
        default="run",
        help=f"run: start {starts} (the default)",
    )
    _, settings = config.load(argv, parser=parser)
    if check is not None:
        try:
            check(settings)
        except ConfigError as exc:
            parser.error(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (faster sockets and TLS), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def install_signals(stop: asyncio.Event, reload: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT set `stop` (the program then shuts down in its own order); SIGHUP
    calls `reload` when given. Must run on the program's loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


class Service(Protocol):
    """A composition root started and stopped as a whole (GlobalControlPlane, ZoneControlPlane)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(service: Service, log: logging.Logger) -> int:
    """Starts `service`, runs until SIGTERM or SIGINT, then stops it: EXIT_OK after a clean
    shutdown, EXIT_START_FAILED (logged) if it could not start. Signals are handled from the
    beginning, so a stop asked for during start-up is honoured once start-up is done."""
    stop = asyncio.Event()
    install_signals(stop)
    try:
        await service.start()
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        with suppress(Exception):  # the first error is the one worth reporting
            await service.stop()
        return EXIT_START_FAILED
    await stop.wait()
    log.info("shutting down")
    await service.stop()
    log.info("stopped")
    return EXIT_OK


def run_program(
    prog: str,
    main: Callable[[], Awaitable[int]],
    start_errors: tuple[type[Exception], ...] = (),
) -> NoReturn:
    """Runs `main()` on the program's loop and exits with its status. An exception of
    `start_errors` (raised while starting) becomes one line "<prog>: <message>" on stderr and
    EXIT_BAD_SETTING, instead of a traceback."""

    async def call() -> int:
        return await main()  # called on the loop: `main` may build objects that need it

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            code = runner.run(call())
    except start_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = EXIT_BAD_SETTING
    sys.exit(code)
