"""Tokens for the proxies of the integration tests, obtained the way an operator does: with
the global's admin user token (written by `--admin-token-file`), a dataplane token from
`POST /tokens/dataplane`, a zone token (scope ingress) from `POST /tokens/zone`. Tokens go to
files (0600)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.support import wait_until

VALIDITY = "1h"


def _call(
    base: str, method: str, path: str, admin: str | None, body: object = None
) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if admin is not None:
        req.add_header("Authorization", f"Bearer {admin}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def dataplane_token(
    api: str,
    admin: str | None,
    services: Sequence[str],
    *,
    mesh: str = "default",
    name: str = "",
    timeout: float = 20,
) -> str:
    """A dataplane token from `api` (global or zone), waiting while the mesh's key is not
    there yet (made by the global's leader, synced to zones)."""
    body: dict[str, object] = {
        "mesh": mesh,
        "tags": {"kuma.io/service": list(services)},
        "validFor": VALIDITY,
    }
    if name:
        body["name"] = name

    def attempt() -> str | None:
        status, text = _call(api, "POST", "/tokens/dataplane", admin, body)
        if status == 200:
            return text.strip()
        assert status in (400, 404) and ("signing key yet" in text or "not found" in text), (
            status,
            text,
        )
        return None

    return str(wait_until(attempt, timeout=timeout, interval=0.1, what=f"a token for {services}"))


def zone_token(global_api: str, admin: str | None, zone: str, *scopes: str) -> str:
    """A zone token from the global (`POST /tokens/zone`), scope ingress unless named."""
    body = {"zone": zone, "scope": list(scopes or ("ingress",)), "validFor": VALIDITY}
    status, text = _call(global_api, "POST", "/tokens/zone", admin, body)
    assert status == 200, (status, text)
    return text.strip()


def write_token(path: Path, token: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path
