"""Credentials for tests: the admin user token the control planes bootstrap, sent as a bearer.

Tests authenticate for real (no bypass): an in-process API gets its admin token from
`ensure_admin_token` on its store, a real global-cp process writes it to `--admin-token-file`.
"""

from __future__ import annotations

from pathlib import Path

from meshfed.auth.credentials import ensure_admin_token
from meshfed.store.base import ResourceStore
from tests.support import wait_until

ADMIN_TOKEN_FILE = "admin-token"  # the file name tests give --admin-token-file in a data dir


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin_headers(store: ResourceStore) -> dict[str, str]:
    """The Authorization header of the store's bootstrap admin token (made if absent)."""
    return bearer(await ensure_admin_token(store))


def read_token(path: Path, timeout: float = 30.0) -> str:
    """The token a control plane writes at start (waits for the file, up to `timeout`)."""
    text: str = wait_until(
        lambda: path.read_text().strip(), timeout=timeout, what=f"a token in {path}"
    )
    return text
