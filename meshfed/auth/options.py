"""The options of the control planes' API security (who is admin, the admin token file, HTTPS),
declared once for global and zone, and the checks across them made before starting."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from meshfed.config import ConfigError, Option, parse_bool, parse_optional_path

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


API_TLS_CERT = Option(
    "api-tls-cert",
    parse_optional_path,
    "",
    "Serve the API over HTTPS (TLS 1.2 or later) with this PEM certificate (chain); needs "
    "--api-tls-key. Unset: plain HTTP",
    metavar="FILE",
)

API_TLS_KEY = Option(
    "api-tls-key",
    parse_optional_path,
    "",
    "The PEM private key of --api-tls-cert",
    metavar="FILE",
)

API_OPTIONS = (API_LOCALHOST_IS_ADMIN, ADMIN_TOKEN_FILE, API_TLS_CERT, API_TLS_KEY)


def check_api_tls(cert: Path | None, key: Path | None) -> None:
    """Both or neither: a certificate without its key (or the reverse) cannot serve HTTPS,
    and silently serving plain HTTP instead would expose tokens. Raises ConfigError."""
    if (cert is None) != (key is None):
        given, missing = ("cert", "key") if key is None else ("key", "cert")
        raise ConfigError(f"--api-tls-{given} needs --api-tls-{missing} too (both or neither)")


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
