"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from meshctl.errors import EXIT_USAGE, CliError
from meshfed.resources.descriptors import Scope, TypeDescriptor

DEFAULT_MESH = "default"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def mesh_for(desc: TypeDescriptor, mesh: str | None) -> str:
    """The mesh a command acts in: kumactl's default for mesh-scoped types, none otherwise."""
    if desc.scope is Scope.MESH:
        return mesh or DEFAULT_MESH
    if mesh:
        raise CliError(f"{desc.name} is not scoped to a mesh; drop --mesh", EXIT_USAGE)
    return ""


def display(desc: TypeDescriptor, name: str) -> str:
    return f'{desc.name} "{name}"'


def shows_usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace, Any], int]:
    """The `func` of a command group run without its action: its help, exit 2."""

    def run(args: argparse.Namespace, ctx: Any) -> int:
        parser.print_help(ctx.stderr)
        return EXIT_USAGE

    return run
