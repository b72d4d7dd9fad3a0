"""The options of the control planes' API authentication, declared once for global and zone."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from meshfed.config import Option, parse_bool, parse_optional_path

log = logging.getLogger("meshfed.auth")

API_LOCALHOST_IS_ADMIN = Option(
    "api-localhost-is-admin",
    parse_bool,
    False,
    "Treat every API caller on a loopback address as an admin (Kuma's default). Off: callers "
    "without an admin user token may only read non-secret resources, even from localhost",
)

ADMIN_TOKEN_FILE = Option(
    "admin-token-file",
    parse_optional_path,
    "",
    "Write the bootstrap admin user token to this file (mode 0600) at every start, e.g. for "
    "meshctl; the token itself is the GlobalSecret 'admin-user-token', made on the first start",
    metavar="FILE",
)


def write_secret_file(path: Path, text: str) -> None:
    """Writes `text` readable by this user only, atomically (no window with looser modes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
