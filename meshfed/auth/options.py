"""The options of the control planes' API security (who is admin, the admin token file, HTTPS),
declared once for global and zone (the `ApiSecurity` group), and the checks across them made
before starting."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from meshfed.config import ConfigError, Option, parse_bool, parse_optional_path

log = logging.getLogger("meshfed.auth")


@dataclass(frozen=True)
class ApiSecurity:
    """Who is admin on the API, the admin token file and HTTPS: a group of options of both
    control planes."""

    api_localhost_is_admin: Annotated[
        bool,
        Option(
            parse_bool,
            False,
            "Treat every API caller on a loopback address as an admin (Kuma's default). Off: "
            "callers without an admin user token may only read non-secret resources, even from "
            "localhost",
        ),
    ]
    admin_token_file: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "Write the bootstrap admin user token to this file (mode 0600) at every start, e.g. "
            "for meshctl; the token itself is the GlobalSecret 'admin-user-token', made on the "
            "first start",
            metavar="FILE",
        ),
    ]
    api_tls_cert: Annotated[
        Path | None,
        Option(
            parse_optional_path,
            "",
            "Serve the API over HTTPS (TLS 1.2 or later) with this PEM certificate (chain); "
            "needs --api-tls-key. Unset: plain HTTP",
            metavar="FILE",
        ),
    ]
    api_tls_key: Annotated[
        Path | None,
        Option(parse_optional_path, "", "The PEM private key of --api-tls-cert", metavar="FILE"),
    ]


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
