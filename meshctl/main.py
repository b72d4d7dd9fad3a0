"""Entry point of `meshctl`: the argparse root, dispatching to meshctl/commands/<cmd>.py.

Every failure ends as one `Error: ...` line (plus indented reasons) and an exit code; a
traceback is shown only with MESHCTL_DEBUG=1, for bugs in meshctl itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import TextIO

from meshctl.client import API_ENV, DEFAULT_API, DEFAULT_TIMEOUT, TOKEN_ENV
from meshctl.commands import COMMANDS
from meshctl.commands.common import positive_float
from meshctl.config import CONFIG_ENV, DEFAULT_CONFIG, config_path, resolve_target
from meshctl.config import load as load_config
from meshctl.context import Context
from meshctl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from meshctl.output import error_lines
from meshfed.config import HelpSafeParser
from meshfed.resources.types import default_registry


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (SUPPRESS: a later default would
    otherwise overwrite a value given before the subcommand)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"control plane API (env {API_ENV}; default: the current control plane of the "
        f"configuration, else {DEFAULT_API})",
    )
    common.add_argument(
        "--config-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"meshctl's configuration (env {CONFIG_ENV}; default {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--timeout",
        type=positive_float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"per-request timeout (default {DEFAULT_TIMEOUT:g})",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = HelpSafeParser(
        prog="meshctl",
        parents=[common],
        description="Command line client of the meshfed control plane API.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub, common)
    return parser


def run(
    argv: Sequence[str],
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    environ: Mapping[str, str],
) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a bad command line (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(stderr)
        return EXIT_USAGE
    ctx = Context(
        api_url=DEFAULT_API,
        timeout=getattr(args, "timeout", DEFAULT_TIMEOUT),
        registry=default_registry(),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        config_path=config_path(getattr(args, "config_file", None), environ),
    )
    try:
        target = resolve_target(
            getattr(args, "api", None),
            environ,
            load_config(ctx.config_path),
            api_env=API_ENV,
            token_env=TOKEN_ENV,
            default_api=DEFAULT_API,
        )
        ctx.api_url, ctx.token, ctx.ca_file = target.url, target.token, target.ca_file
        return int(args.func(args, ctx))
    except CliError as exc:
        for line in error_lines(exc):
            print(line, file=stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug in meshctl: say so in one line, not a traceback
        if environ.get("MESHCTL_DEBUG"):
            traceback.print_exc(file=stderr)
        print(
            f"Error: internal error in meshctl: {type(exc).__name__}: {exc} "
            "(set MESHCTL_DEBUG=1 for a traceback)",
            file=stderr,
        )
        return EXIT_FAILED


def main() -> None:
    try:
        code = run(
            sys.argv[1:], stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, environ=os.environ
        )
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`meshctl get ... | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    sys.exit(code)
