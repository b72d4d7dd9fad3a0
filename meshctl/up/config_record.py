"""meshctl's configuration pointing at a local federation, with its admin token.

`meshctl up` starts the global with `--admin-token-file` in the global's data directory. Once
the global has written the token (at its start, before its API listens), `up` records the
federation in meshctl's configuration (meshctl/config.py): a control plane named after the
data directory (`up` for the default `.meshfed/up`) for the global, made current, and one
per zone (`up-zone-1`, ...), so every meshctl command after `make up` (`meshctl apply`,
`meshctl --api <zone> apply`) authenticates with no extra step. Another `--data-dir` gets its
own names; the last `up` started is current.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from meshctl import config
from meshctl.errors import CliError
from meshctl.up.state import ROLE_GLOBAL, ROLE_ZONE, ComponentRecord

POLL_SECONDS = 0.2


def read_token(path: Path) -> str:
    """The token in `path`, "" while the global has not written it."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def plane_name(data_dir: Path) -> str:
    """The control plane name of an `up` data directory: its last part, as a valid name."""
    name = re.sub(r"[^a-z0-9.-]+", "-", data_dir.name.lower()).strip("-.")[:40]
    return name or "up"


def planes(
    data_dir: Path, components: Sequence[ComponentRecord], token: str
) -> list[config.ControlPlane]:
    """The global first (named after the data directory), then each zone."""
    base = plane_name(data_dir)
    out: list[config.ControlPlane] = []
    for comp in components:
        if comp.role == ROLE_GLOBAL:
            out.insert(0, config.ControlPlane(base, comp.api, token))
        elif comp.role == ROLE_ZONE and comp.zone:
            out.append(config.ControlPlane(f"{base}-{comp.zone}", comp.api, token))
    return out


def record(path: Path, data_dir: Path, components: Sequence[ComponentRecord], token: str) -> str:
    """Writes the control planes of this federation into the configuration at `path`, the
    global current. Returns the global's control plane name."""
    cfg = config.load(path)
    found = planes(data_dir, components, token)
    for cp in found:
        cfg = cfg.with_plane(cp, overwrite=True, make_current=False)
    config.save(path, cfg.using(found[0].name))
    return found[0].name


async def record_when_written(
    path: Path,
    data_dir: Path,
    components: Sequence[ComponentRecord],
    token_file: Path,
    notice: Callable[[str], None],
) -> None:
    """Waits for the global's admin token, then records the federation in the configuration
    (reported, never fatal: the federation runs either way)."""
    while True:
        token = read_token(token_file)
        if token:
            break
        await asyncio.sleep(POLL_SECONDS)  # the global writes it at its start
    try:
        name = record(path, data_dir, components, token)
    except CliError as exc:
        notice(f"meshctl config not updated: {exc.message}")
        return
    notice(
        f"meshctl config {path}: control plane {name!r} (the global, admin token) is current; "
        f"zones are {name}-<zone>"
    )
