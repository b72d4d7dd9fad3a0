"""What every command gets: where the API is, the type registry and the three streams."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from meshctl.client import ApiClient
from meshfed.resources.descriptors import Registry


@dataclass
class Context:
    api_url: str
    timeout: float
    registry: Registry
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    token: str | None = None  # sent as `Authorization: Bearer` when set
    ca_file: str | None = None  # verifies an https API (else the system's CAs)
    config_path: Path = Path()  # meshctl's configuration file (meshctl/config.py)

    def client(self) -> ApiClient:
        return ApiClient(self.api_url, self.timeout, token=self.token, ca_file=self.ca_file)

    def now(self) -> datetime:
        return datetime.now(UTC)
