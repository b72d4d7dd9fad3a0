"""The one exception commands raise to end with a message instead of a traceback."""

from __future__ import annotations

from collections.abc import Sequence

# Exit codes: 1 for a failed operation (server said no, not reachable, bad input file),
# 2 for a command line that cannot be acted on (as argparse does for bad flags).
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as text; `details` are printed indented below the message."""

    def __init__(
        self, message: str, exit_code: int = EXIT_FAILED, details: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = list(details)
