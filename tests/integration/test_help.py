"""`--help` of every program and every meshctl subcommand, run as real processes: each exits 0
and documents its options (a `%` in one help string used to crash zone-cp's --help)."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from global_cp.settings import CONFIG as GLOBAL_CONFIG
from mesh_dp.settings import CONFIG as SIDECAR_CONFIG
from meshctl.main import build_parser
from meshfed.config import Config
from tests.support import REPO, VENV_BIN
from zone_cp.settings import CONFIG as ZONE_CONFIG
from zone_egress.settings import CONFIG as EGRESS_CONFIG
from zone_ingress.settings import CONFIG as INGRESS_CONFIG

PROGRAMS: dict[str, Config[Any]] = {
    "global-cp": GLOBAL_CONFIG,
    "zone-cp": ZONE_CONFIG,
    "zone-ingress": INGRESS_CONFIG,
    "zone-egress": EGRESS_CONFIG,
    "mesh-dp": SIDECAR_CONFIG,
}


def _help(argv: list[str]) -> str:
    result = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stdout.split())  # argparse wraps lines


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and action.help != argparse.SUPPRESS
    ]


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (sub)command path of meshctl with its parser, the root included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*path, name))


MESHCTL = dict(_subcommands(build_parser()))


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_program_help_documents_every_option(program: str) -> None:
    out = _help([program])
    for opt in PROGRAMS[program].options:
        assert f"--{opt.name}" in out
        assert opt.env_var in out
    assert "--config" in out
    assert "run" in out


def test_every_meshctl_subcommand_is_listed() -> None:
    paths = set(MESHCTL)
    for expected in [("apply",), ("get",), ("up",), ("up", "restart"), ("up", "stop")]:
        assert expected in paths
    assert ("up", "status") in paths and ("inspect", "zones") in paths


@pytest.mark.parametrize("path", sorted(MESHCTL), ids=lambda p: " ".join(("meshctl", *p)))
def test_meshctl_help_documents_every_option(path: tuple[str, ...]) -> None:
    out = _help(["meshctl", *path])
    assert out.startswith("usage: meshctl")
    for flag in _long_options(MESHCTL[path]):
        assert flag in out
