"""Credentials of a local federation: where the global's admin token lands, and the tokens the
demo's proxies connect with (meshctl/up/demo.py).

The global writes its bootstrap admin user token to `<up dir>/global/admin-token`
(`--admin-token-file`). With it the demo issues, through the global's API:

- a dataplane token per sidecar (`POST /tokens/dataplane`, bound to its service and name);
- a zone token of scope `ingress` per zone ingress (`POST /tokens/zone`).

Each lands in `<up dir>/demo/tokens/<name>.token` (mode 0600); the proxies read their file at
every connection attempt, so they may start before it exists.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

import aiohttp

from meshctl.up.credentials import admin_token_path
from meshfed.auth.options import write_secret_file

GLOBAL_DIR: Final = "global"
DEMO_VALIDITY: Final = "8760h"  # a year: the demo re-issues them at every `up`
RETRY: Final = 0.2


def admin_token_file(data_dir: Path) -> Path:
    return admin_token_path(data_dir / GLOBAL_DIR)


def proxy_token_file(data_dir: Path, name: str) -> Path:
    return data_dir / "demo" / "tokens" / f"{name}.token"


class TokenIssueError(Exception):
    """The global refused to issue (the message says what it answered)."""


async def read_admin_token(data_dir: Path, deadline: float) -> str | None:
    """The admin token, once the global has written it (None at the deadline)."""
    path = admin_token_file(data_dir)
    loop = asyncio.get_running_loop()
    while True:
        try:
            token = path.read_text().strip()
        except OSError:
            token = ""
        if token:
            return token
        if loop.time() > deadline:
            return None
        await asyncio.sleep(RETRY)


def auth_headers(admin: str | None) -> dict[str, str]:
    return {} if admin is None else {"Authorization": f"Bearer {admin}"}


async def dataplane_token(
    session: aiohttp.ClientSession,
    api: str,
    admin: str | None,
    body: dict[str, Any],
    deadline: float,
) -> str:
    """A token from `POST /tokens/dataplane`, retried while the mesh's key is not made yet."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            async with session.post(
                f"{api}/tokens/dataplane", json=body, headers=auth_headers(admin)
            ) as resp:
                text = await resp.text()
                if resp.status == 200:
                    return text.strip()
                # The Mesh or its key may not exist yet (the leader makes the key).
                waiting = resp.status == 404 or (resp.status == 400 and "key yet" in text)
                if not waiting:
                    raise TokenIssueError(f"HTTP {resp.status} {text}")
        except (aiohttp.ClientError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise TokenIssueError(f"no dataplane token for {body.get('name')} in time")
        await asyncio.sleep(RETRY)


async def zone_ingress_token(
    session: aiohttp.ClientSession, api: str, admin: str | None, zone: str
) -> str:
    """A zone token of scope ingress only for `zone` (`POST /tokens/zone`)."""
    body = {"zone": zone, "scope": ["ingress"], "validFor": DEMO_VALIDITY}
    async with session.post(f"{api}/tokens/zone", json=body, headers=auth_headers(admin)) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise TokenIssueError(f"POST /tokens/zone for {zone}: HTTP {resp.status} {text[:200]}")
        return text.strip()


def save(path: Path, token: str) -> None:
    write_secret_file(path, token + "\n")
