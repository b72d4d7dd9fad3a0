"""The credentials of a local federation: where the global writes its admin token and KDS CA,
and each zone's token, issued through the global's API once it answers.

Every `meshctl up` issues fresh zone tokens (scope kds and ingress, the default), so a zone
restarted with `meshctl up restart` finds a valid one in its file; the global's store keeps
the signing keys and the KDS CA across runs, so nothing else changes between runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from meshfed.auth.options import write_secret_file

ADMIN_TOKEN = "admin-token"
KDS_CA = "kds-ca.crt"
ZONE_TOKEN = "zone-token"


def admin_token_path(global_dir: Path) -> Path:
    return global_dir / ADMIN_TOKEN


def kds_ca_path(global_dir: Path) -> Path:
    return global_dir / KDS_CA


def zone_token_path(zone_dir: Path) -> Path:
    return zone_dir / ZONE_TOKEN


class TokenIssueError(Exception):
    """The zone tokens could not be issued; the message says why."""


async def issue_zone_tokens(
    api: str,
    admin_token_file: Path,
    zones: Mapping[str, Path],
    *,
    timeout: float = 30.0,
) -> None:
    """Waits (up to `timeout`) for the global's API and its admin token file, then writes a
    token for each zone to its path (mode 0600)."""
    deadline = time.monotonic() + timeout
    last = "the global's API did not answer"
    client_timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while time.monotonic() < deadline:
            try:
                admin = (await asyncio.to_thread(admin_token_file.read_text)).strip()
                for zone, path in zones.items():
                    body = {"zone": zone, "scope": ["kds", "ingress"]}
                    headers = {"Authorization": f"Bearer {admin}"}
                    async with session.post(
                        f"{api}/tokens/zone", json=body, headers=headers
                    ) as resp:
                        text = await resp.text()
                        if resp.status != 200:
                            raise TokenIssueError(
                                f"POST /tokens/zone for {zone}: HTTP {resp.status} {text[:200]}"
                            )
                    await asyncio.to_thread(write_secret_file, path, text.strip() + "\n")
                return
            except TokenIssueError:
                raise
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.1)
    raise TokenIssueError(f"could not issue zone tokens within {timeout:g}s: {last}")
