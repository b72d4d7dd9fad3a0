"""The admin credentials of a local federation: where the global writes its admin token.

`meshctl up` starts the global with `--admin-token-file` in the global's data directory, so
the demo's writes and meshctl (through its config, meshctl/config.py) act as the admin.
"""

from __future__ import annotations

from pathlib import Path

ADMIN_TOKEN_NAME = "admin-token"


def admin_token_file(global_data_dir: Path) -> Path:
    """Where the global of `up` writes its admin token (0600, rewritten at every start)."""
    return global_data_dir / ADMIN_TOKEN_NAME
